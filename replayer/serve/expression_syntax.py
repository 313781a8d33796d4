"""DynamoDB's expression grammar: a tokenizer and a recursive-descent parser to an AST.

One grammar serves ``KeyConditionExpression``, ``FilterExpression`` (and condition
expressions); projections have their own, smaller one (:func:`parse_projection`)::

    or        := and (OR or)?
    and       := not (AND and)?
    not       := NOT parens | parens
    parens    := '(' '(' or ')' ')'          -- refused later: redundant parentheses
               | '(' '(' condition ')' ')'   -- likewise
               | condition
               | '(' or ')'
    condition := operand comparator operand
               | operand BETWEEN operand AND operand
               | operand IN '(' operand (',' operand)* ')'
               | function
    operand   := '(' '(' primary ')' ')' | '(' primary ')' | primary
    primary   := function | :value | path
    function  := name '(' operand (',' operand)* ')'
    path      := step ('[' digits ']' | '.' name)*
    step      := name | '(' '(' path ')' ')' | '(' path ')'
    name      := identifier that is not AND, OR, NOT, BETWEEN or IN | #name

Precedence follows from the rules: comparisons, IN and BETWEEN bind tighter than NOT, NOT
than AND, AND than OR; keywords are case-insensitive, function names are not. This is the
grammar the dynalite project wrote to match DynamoDB's answers (its suite passes against the
service), including which forms DynamoDB accepts and then refuses (redundant parentheses, a
misused function): the parser accepts them and marks them, and
:mod:`replayer.serve.expression_checks` refuses them with DynamoDB's messages and priorities.

Parsing is PEG-style — alternatives tried in order, with backtracking — memoised per rule
and position, so nested parentheses cost linear time. A syntax error names the token at the
furthest position any alternative reached, as DynamoDB does: ``Syntax error; token: "4",
near: "> 4"`` (``near`` is the source from the token before it to the token after it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from replayer.serve.values import AttributeValue

KEYWORDS = frozenset({"AND", "OR", "NOT", "BETWEEN", "IN"})
COMPARATORS = ("=", "<>", "<", "<=", ">", ">=")
MAX_EXPRESSION_BYTES = 4096

_TOKEN = re.compile(
    r"(?P<ws>[ \t\r\n]+)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<placeholder>#[A-Za-z0-9_]*)"
    r"|(?P<value>:[A-Za-z0-9_]*)"
    r"|(?P<number>[0-9]+)"
    r"|(?P<op><>|<=|>=|[=<>])"
    r"|(?P<punct>[()\[\],.])"
)


class ExpressionSyntaxError(Exception):
    """The text is not an expression; ``str()`` is DynamoDB's message after the prefix."""


@dataclass(frozen=True)
class Token:
    kind: str  # name, placeholder, value, number, op, punct, error, eof
    text: str
    start: int
    end: int


def tokenize(text: str) -> list[Token]:
    """The significant tokens of ``text``, ending with an ``eof`` token. A character that
    starts no token becomes an ``error`` token, which no rule accepts."""
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            tokens.append(Token("error", text[position], position, position + 1))
            position += 1
            continue
        kind = match.lastgroup or "error"
        if kind != "ws":
            tokens.append(Token(kind, match.group(), match.start(), match.end()))
        position = match.end()
    tokens.append(Token("eof", "<EOF>", len(text), len(text)))
    return tokens


# -- the tree ------------------------------------------------------------------------------


@dataclass
class Name:
    """One name in a path: written as it is (``status``) or as a placeholder (``#s``)."""

    text: str
    placeholder: bool
    resolved: str = ""  # the attribute name, once placeholders are substituted


@dataclass
class Path:
    steps: list[Name | int]
    redundant: bool = False  # written inside doubled parentheses

    def resolved(self) -> tuple[str | int, ...]:
        return tuple(s if isinstance(s, int) else s.resolved for s in self.steps)


@dataclass
class ValueRef:
    name: str  # ``:v``
    value: AttributeValue | None = None  # once looked up
    redundant: bool = False


@dataclass
class Call:
    """A function: ``size`` as an operand, the others as conditions."""

    name: str
    args: list[Operand]
    redundant: bool = False


Operand = Path | ValueRef | Call


@dataclass
class Comparison:
    op: str
    left: Operand
    right: Operand
    redundant: bool = False


@dataclass
class Between:
    subject: Operand
    low: Operand
    high: Operand
    redundant: bool = False


@dataclass
class In:
    subject: Operand
    options: list[Operand]
    redundant: bool = False


@dataclass
class FunctionCondition:
    call: Call
    redundant: bool = False


@dataclass
class Not:
    operand: Condition
    redundant: bool = False


@dataclass
class And:
    """``a AND b AND …``: a chain is one node (its depth would otherwise be its length)."""

    operands: list[Condition]
    redundant: bool = False


@dataclass
class Or:
    operands: list[Condition]
    redundant: bool = False


@dataclass
class SizeCondition:
    """``size(x)`` where a condition belongs: parsed, then refused as a misused function."""

    call: Call
    redundant: bool = False


Condition = Comparison | Between | In | FunctionCondition | Not | And | Or | SizeCondition


@dataclass
class _Parser:
    text: str
    tokens: list[Token]
    furthest: int = 0
    memo: dict[tuple[str, int], tuple[Any, int]] = field(default_factory=dict)
    pos: int = 0

    # -- primitives ----------------------------------------------------------------------

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def fail_here(self) -> None:
        self.furthest = max(self.furthest, self.pos)

    def take(self, kind: str, text: str | None = None) -> Token | None:
        token = self.tokens[self.pos]
        if token.kind == kind and (text is None or token.text == text):
            self.pos += 1
            return token
        self.fail_here()
        return None

    def keyword(self, word: str) -> bool:
        token = self.tokens[self.pos]
        if token.kind == "name" and token.text.upper() == word:
            self.pos += 1
            return True
        self.fail_here()
        return False

    # The combinators return Any: mypy cannot follow a generic result through the lambdas
    # that call them, and every rule's own signature says what it returns.
    def attempt(self, rule: Callable[[], Any]) -> Any:
        start = self.pos
        result = rule()
        if result is None:
            self.pos = start
        return result

    def memoised(self, key: str, rule: Callable[[], Any]) -> Any:
        start = self.pos
        cached = self.memo.get((key, start))
        if cached is not None:
            result, end = cached
            self.pos = end if result is not None else start
            return result
        result = self.attempt(rule)
        self.memo[(key, start)] = (result, self.pos)
        return result

    def doubled(self, inner: Callable[[], Any]) -> Any:
        """``( ( inner ) )``."""
        if not (self.take("punct", "(") and self.take("punct", "(")):
            return None
        result = inner()
        if result is None or not (self.take("punct", ")") and self.take("punct", ")")):
            return None
        return result

    def single(self, inner: Callable[[], Any]) -> Any:
        """``( inner )``."""
        if not self.take("punct", "("):
            return None
        result = inner()
        if result is None or not self.take("punct", ")"):
            return None
        return result

    # -- conditions ----------------------------------------------------------------------

    def or_(self) -> Condition | None:
        return self.memoised("or", self._or)

    def _or(self) -> Condition | None:
        return self._chain("OR", self.and_, Or)

    def and_(self) -> Condition | None:
        return self._chain("AND", self.not_, And)

    def _chain(self, word: str, operand: Callable[[], Any], node: type[And | Or]) -> Any:
        """``operand (word operand)*``: one node for the chain, or the lone operand."""
        first = operand()
        if first is None:
            return None
        operands = [first]
        while True:
            start = self.pos
            if self.keyword(word):
                more = operand()
                if more is not None:
                    operands.append(more)
                    continue
            self.pos = start
            return first if len(operands) == 1 else node(operands)

    def not_(self) -> Condition | None:
        start = self.pos
        if self.keyword("NOT"):
            operand = self.parens()
            if operand is not None:
                return Not(operand)
        self.pos = start
        return self.parens()

    def parens(self) -> Condition | None:
        return self.memoised("parens", self._parens)

    def _parens(self) -> Condition | None:
        doubled = self.attempt(lambda: self.doubled(self.or_))
        if doubled is None:
            doubled = self.attempt(lambda: self.doubled(self.condition))
        if doubled is not None:
            return _mark_redundant(doubled)
        found = self.attempt(self.condition)
        if found is not None:
            return found
        return self.attempt(lambda: self.single(self.or_))

    def condition(self) -> Condition | None:
        return self.memoised("condition", self._condition)

    def _condition(self) -> Condition | None:
        for alternative in (self._comparison, self._between, self._in):
            found = self.attempt(alternative)
            if found is not None:
                return found
        call = self.attempt(self.function)
        if call is None:
            return None
        if call.name == "size":
            return SizeCondition(call)
        return FunctionCondition(call)

    def _comparison(self) -> Condition | None:
        left = self.operand()
        if left is None:
            return None
        token = self.take("op")
        if token is None:
            return None
        right = self.operand()
        return None if right is None else Comparison(token.text, left, right)

    def _between(self) -> Condition | None:
        subject = self.operand()
        if subject is None or not self.keyword("BETWEEN"):
            return None
        low = self.operand()
        if low is None or not self.keyword("AND"):
            return None
        high = self.operand()
        return None if high is None else Between(subject, low, high)

    def _in(self) -> Condition | None:
        subject = self.operand()
        if subject is None or not self.keyword("IN") or not self.take("punct", "("):
            return None
        options = self.arguments()
        if options is None or not self.take("punct", ")"):
            return None
        return In(subject, options)

    # -- operands ------------------------------------------------------------------------

    def operand(self) -> Operand | None:
        return self.memoised("operand", self._operand)

    def _operand(self) -> Operand | None:
        doubled = self.attempt(lambda: self.doubled(self.primary))
        if doubled is not None:
            # A copy: the memo may hand the same node to another alternative.
            return replace(doubled, redundant=True)
        found = self.attempt(lambda: self.single(self.primary))
        if found is not None:
            return found
        return self.attempt(self.primary)

    def primary(self) -> Operand | None:
        call = self.attempt(self.function)
        if call is not None:
            return call
        token = self.take("value")
        if token is not None:
            return ValueRef(token.text)
        return self.path()

    def function(self) -> Call | None:
        token = self.tokens[self.pos]
        if token.kind != "name" or token.text.upper() in KEYWORDS:
            self.fail_here()
            return None
        self.pos += 1
        if not self.take("punct", "("):
            return None
        args = self.arguments()
        if args is None or not self.take("punct", ")"):
            return None
        return Call(token.text, args)

    def arguments(self) -> list[Operand] | None:
        first = self.operand()
        if first is None:
            return None
        args = [first]
        while True:
            start = self.pos
            if not self.take("punct", ","):
                return args
            more = self.operand()
            if more is None:
                self.pos = start
                return args
            args.append(more)

    def path(self) -> Path | None:
        return self.memoised("path", self._path)

    def _path(self) -> Path | None:
        head = self.step()
        if head is None:
            return None
        steps: list[Name | int] = list(head.steps)
        while True:
            start = self.pos
            if self.take("punct", "["):
                number = self.take("number")
                if number is not None and self.take("punct", "]"):
                    steps.append(int(number.text))
                    continue
            elif self.take("punct", "."):
                name = self.name()
                if name is not None:
                    steps.append(name)
                    continue
            self.pos = start
            return Path(steps, head.redundant)

    def step(self) -> Path | None:
        name = self.name()
        if name is not None:
            return Path([name])
        doubled = self.attempt(lambda: self.doubled(self.path))
        if doubled is not None:
            return Path(doubled.steps, True)
        return self.attempt(lambda: self.single(self.path))

    def name(self) -> Name | None:
        token = self.tokens[self.pos]
        if token.kind == "name" and token.text.upper() not in KEYWORDS:
            self.pos += 1
            return Name(token.text, False)
        if token.kind == "placeholder":
            self.pos += 1
            return Name(token.text, True)
        self.fail_here()
        return None

    # -- errors --------------------------------------------------------------------------

    def syntax_error(self) -> ExpressionSyntaxError:
        index = min(self.furthest, len(self.tokens) - 1)
        token = self.tokens[index]
        start = self.tokens[index - 1].start if index > 0 else token.start
        end = self.tokens[index + 1].end if index + 1 < len(self.tokens) else token.end
        near = self.text[start:end]
        return ExpressionSyntaxError(f'Syntax error; token: "{token.text}", near: "{near}"')


def _mark_redundant(condition: Condition) -> Condition:
    """A copy of ``condition`` marked as written inside doubled parentheses."""
    return replace(condition, redundant=True)


def _check_size(text: str) -> None:
    if not text:
        raise ExpressionSyntaxError("The expression can not be empty;")
    size = len(text.encode("utf-8"))
    if size > MAX_EXPRESSION_BYTES:
        raise ExpressionSyntaxError(
            f"Expression size has exceeded the maximum allowed size; expression size: {size}"
        )


def parse_condition(text: str) -> Condition:
    """Parse a key condition or filter expression.

    Raises:
        ExpressionSyntaxError: empty, too long, or not in the grammar.
    """
    _check_size(text)
    parser = _Parser(text, tokenize(text))
    try:
        tree = parser.or_()
    except RecursionError:
        raise ExpressionSyntaxError(
            "The expression is nested too deeply; reduce its parentheses"
        ) from None
    if tree is None or parser.peek().kind != "eof":
        parser.fail_here()
        raise parser.syntax_error()
    return tree


def parse_projection(text: str) -> list[Path]:
    """Parse a projection expression: paths separated by commas (no parentheses, and
    keywords allowed as names — they are refused as reserved words afterwards)."""
    _check_size(text)
    tokens = tokenize(text)
    parser = _Parser(text, tokens)
    paths = []
    while True:
        steps: list[Name | int] = []
        token = parser.peek()
        if token.kind in ("name", "placeholder"):
            parser.pos += 1
            steps.append(Name(token.text, token.kind == "placeholder"))
        else:
            parser.fail_here()
            raise parser.syntax_error()
        while True:
            if parser.take("punct", "["):
                number = parser.take("number")
                if number is None or not parser.take("punct", "]"):
                    raise parser.syntax_error()
                steps.append(int(number.text))
            elif parser.take("punct", "."):
                token = parser.peek()
                if token.kind not in ("name", "placeholder"):
                    parser.fail_here()
                    raise parser.syntax_error()
                parser.pos += 1
                steps.append(Name(token.text, token.kind == "placeholder"))
            else:
                break
        paths.append(Path(steps))
        if parser.take("punct", ","):
            continue
        if parser.peek().kind != "eof":
            parser.fail_here()
            raise parser.syntax_error()
        return paths
