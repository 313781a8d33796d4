"""DynamoDB's PartiQL ``SELECT``: a tokenizer and a recursive-descent parser, to the trees the
expression evaluator already reads.

The subset DynamoDB documents for reads ("PartiQL select statements for DynamoDB", its
operators and functions)::

    statement := SELECT projection FROM source [WHERE or] [ORDER BY key [ASC|DESC] (, …)*] [;]
    projection:= '*' | path (',' path)*
    source    := name ['.' name]                  -- "table"."index"
    or        := and (OR and)*
    and       := not (AND not)*
    not       := NOT not | predicate
    predicate := '(' or ')'
               | operand comparator operand       -- = <> != < <= > >=
               | operand [NOT] BETWEEN operand AND operand
               | operand [NOT] IN ('[' | '(') operand (',' operand)* (']' | ')')
               | operand IS [NOT] (MISSING | NULL)
               | begins_with(path, operand) | contains(path, operand)
               | attribute_type(path, operand)
    operand   := '(' operand ')' | size(path) | literal | '?' | path
    literal   := 'string' | number | TRUE | FALSE | NULL
               | '[' operand, … ']' | '{' 'key': operand, … '}' | '<<' operand, … '>>'
    path      := name ('.' name | '[' digits ']' | '[' 'string' ']')*
    name      := identifier that is no keyword | "quoted identifier"

Keywords and function names are case-insensitive; quoted names are taken as written (a
table's ``@instant`` suffix needs the quotes). ``?`` stands for the request's ``Parameters``
in order; their number must match. The WHERE clause becomes the condition tree of
:mod:`replayer.serve.expression_syntax` with names and values resolved — so the endpoint
evaluates it with the one evaluator ``FilterExpression`` uses (DynamoDB's comparison rules: N
numerically, S and B by bytes, other type pairs never ordered). ``IS [NOT] MISSING`` is
``attribute_not_exists`` (``attribute_exists``); ``IS NULL`` is PartiQL's: true for a NULL and
for a missing attribute.

Refused with ``ValidationException``: anything that is not this grammar ("Statement wasn't
well formed, can't be processed: …", naming the token and where it is), and PartiQL DynamoDB
answers that this endpoint does not (arithmetic, ``EXISTS``, functions in the projection).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from replayer.serve import expression_syntax as syntax
from replayer.serve.dynamodb_errors import ValidationException
from replayer.serve.values import AttributeValue, check_value, type_of

KEYWORDS = frozenset(
    {
        "SELECT",
        "FROM",
        "WHERE",
        "AND",
        "OR",
        "NOT",
        "IN",
        "IS",
        "BETWEEN",
        "ORDER",
        "BY",
        "ASC",
        "DESC",
        "MISSING",
        "NULL",
        "TRUE",
        "FALSE",
    }
)
WRITE_KEYWORDS = frozenset({"INSERT", "UPDATE", "DELETE", "REPLACE", "UPSERT"})
_CONDITION_FUNCTIONS = {"begins_with": 2, "contains": 2, "attribute_type": 2}
_TYPE_NAMES = ("S", "N", "B", "NULL", "SS", "BOOL", "L", "BS", "NS", "M")
_COMPARATORS = {"=": "=", "<>": "<>", "!=": "<>", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
_WELL_FORMED = "Statement wasn't well formed, can't be processed: "

_TOKEN = re.compile(
    r"(?P<ws>\s+|--[^\n]*|/\*.*?\*/)"
    r"|(?P<name>[A-Za-z_][A-Za-z0-9_$]*)"
    r'|(?P<quoted>"(?:[^"]|"")*")'
    r"|(?P<string>'(?:[^']|'')*')"
    r"|(?P<number>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<op><<|>>|<>|!=|<=|>=|[=<>])"
    r"|(?P<punct>[()\[\]{},.*?:;+\-/%|])",
    re.DOTALL,
)


@dataclass(frozen=True)
class Token:
    kind: str  # name, quoted, string, number, op, punct, error, eof
    text: str
    start: int


def tokenize(text: str) -> list[Token]:
    """The significant tokens, ending with ``eof``; an unknown character is an ``error``."""
    tokens = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            tokens.append(Token("error", text[position], position))
            position += 1
            continue
        if match.lastgroup != "ws":
            tokens.append(Token(match.lastgroup or "error", match.group(), position))
        position = match.end()
    tokens.append(Token("eof", "<EOF>", len(text)))
    return tokens


def first_keyword(text: str) -> str:
    """The statement's first word, upper-cased ("" when it starts with no word)."""
    tokens = tokenize(text)
    return tokens[0].text.upper() if tokens[0].kind == "name" else ""


@dataclass
class OrderKey:
    name: str
    descending: bool


@dataclass
class Select:
    """A parsed ``SELECT``: ``projection`` None for ``*``."""

    projection: list[tuple[str | int, ...]] | None
    table: str
    index: str | None
    where: syntax.Condition | None
    order_by: list[OrderKey] = field(default_factory=list)


def _literal_ref(value: AttributeValue) -> syntax.ValueRef:
    return syntax.ValueRef(name=":literal", value=value)


def _path(steps: list[str | int]) -> syntax.Path:
    return syntax.Path(
        [s if isinstance(s, int) else syntax.Name(s, False, resolved=s) for s in steps]
    )


class _Parser:
    def __init__(self, text: str, parameters: list[AttributeValue]) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.pos = 0
        self.parameters = parameters
        self.used = 0

    # -- primitives ----------------------------------------------------------------------

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def error(self, expected: str) -> ValidationException:
        token = self.peek()
        line = self.text.count("\n", 0, token.start) + 1
        column = token.start - (self.text.rfind("\n", 0, token.start) + 1) + 1
        found = "end of statement" if token.kind == "eof" else f"'{token.text}'"
        return ValidationException(
            f"{_WELL_FORMED}Expected {expected}, found {found} at line {line}, column {column}"
        )

    def unsupported(self, what: str) -> ValidationException:
        return ValidationException(
            f"ddb-replayer serve does not answer {what} in a PartiQL SELECT; it answers "
            "comparisons, BETWEEN, IN, IS [NOT] MISSING/NULL, begins_with, contains, "
            "attribute_type and size"
        )

    def is_keyword(self, word: str, ahead: int = 0) -> bool:
        token = self.peek(ahead)
        return token.kind == "name" and token.text.upper() == word

    def keyword(self, word: str) -> bool:
        if self.is_keyword(word):
            self.pos += 1
            return True
        return False

    def expect_keyword(self, word: str) -> None:
        if not self.keyword(word):
            raise self.error(word)

    def punct(self, text: str, kind: str = "punct") -> bool:
        token = self.peek()
        if token.kind == kind and token.text == text:
            self.pos += 1
            return True
        return False

    def expect(self, text: str, kind: str = "punct") -> None:
        if not self.punct(text, kind):
            raise self.error(f"'{text}'")

    # -- the statement -------------------------------------------------------------------

    def statement(self) -> Select:
        self.expect_keyword("SELECT")
        projection: list[tuple[str | int, ...]] | None = None
        if not self.punct("*"):
            projection = [self.projected()]
            while self.punct(","):
                projection.append(self.projected())
        self.expect_keyword("FROM")
        table = self.name("a table name")
        index = self.name("an index name") if self.punct(".") else None
        where = self.or_() if self.keyword("WHERE") else None
        order_by: list[OrderKey] = []
        if self.keyword("ORDER"):
            self.expect_keyword("BY")
            order_by.append(self.order_key())
            while self.punct(","):
                order_by.append(self.order_key())
        self.punct(";")
        if self.peek().kind != "eof":
            raise self.error("end of statement")
        if self.used != len(self.parameters):
            raise ValidationException("Number of parameters in request and statement don't match.")
        return Select(projection, table, index, where, order_by)

    def projected(self) -> tuple[str | int, ...]:
        token = self.peek()
        if token.kind == "name" and self.peek(1).text == "(":
            raise self.unsupported(f"the function {token.text}() in the projection")
        path = self.path()
        if path is None:
            raise self.error("'*' or an attribute name")
        return path.resolved()

    def order_key(self) -> OrderKey:
        name = self.name("a key attribute name")
        descending = False
        if self.keyword("DESC"):
            descending = True
        else:
            self.keyword("ASC")
        return OrderKey(name, descending)

    def name(self, expected: str) -> str:
        token = self.peek()
        if token.kind == "quoted":
            self.pos += 1
            return token.text[1:-1].replace('""', '"')
        if token.kind == "name" and token.text.upper() not in KEYWORDS:
            self.pos += 1
            return token.text
        raise self.error(expected)

    # -- conditions ----------------------------------------------------------------------

    def or_(self) -> syntax.Condition:
        operands = [self.and_()]
        while self.keyword("OR"):
            operands.append(self.and_())
        return operands[0] if len(operands) == 1 else syntax.Or(operands)

    def and_(self) -> syntax.Condition:
        operands = [self.not_()]
        while self.keyword("AND"):
            operands.append(self.not_())
        return operands[0] if len(operands) == 1 else syntax.And(operands)

    def not_(self) -> syntax.Condition:
        if self.keyword("NOT"):
            return syntax.Not(self.not_())
        return self.predicate()

    def predicate(self) -> syntax.Condition:
        if self.peek().text == "(":
            start, used = self.pos, self.used
            self.pos += 1
            try:
                inner = self.or_()
                self.expect(")")
            except ValidationException:
                inner = None
            follows = self.peek()
            if inner is not None and not (
                follows.kind == "op" or follows.text.upper() in ("BETWEEN", "IN", "IS", "NOT")
            ):
                return inner
            self.pos, self.used = start, used  # a parenthesised operand
        token = self.peek()
        function = token.text.lower() if token.kind == "name" else ""
        if function in _CONDITION_FUNCTIONS and self.peek(1).text == "(":
            return syntax.FunctionCondition(self.call(function))
        if token.kind == "name" and token.text.upper() == "EXISTS":
            raise self.unsupported("EXISTS (a transaction's condition)")
        subject = self.operand()
        if self.peek().kind == "op" and self.peek().text in _COMPARATORS:
            op = _COMPARATORS[self.peek().text]
            self.pos += 1
            return syntax.Comparison(op, subject, self.operand())
        negated = self.keyword("NOT")
        if self.keyword("BETWEEN"):
            low = self.operand()
            self.expect_keyword("AND")
            found: syntax.Condition = syntax.Between(subject, low, self.operand())
        elif self.keyword("IN"):
            found = syntax.In(subject, self.in_list())
        elif not negated and self.keyword("IS"):
            return self.is_test(subject)
        else:
            raise self.error("a comparison, BETWEEN, IN or IS")
        return syntax.Not(found) if negated else found

    def in_list(self) -> list[syntax.Operand]:
        closing = "]" if self.punct("[") else ")"
        if closing == ")":
            self.expect("(")
        options = [self.operand()]
        while self.punct(","):
            options.append(self.operand())
        self.expect(closing)
        return options

    def is_test(self, subject: syntax.Operand) -> syntax.Condition:
        negated = self.keyword("NOT")
        if not isinstance(subject, syntax.Path):
            raise self.error("an attribute before IS")
        if self.keyword("MISSING"):
            exists = syntax.FunctionCondition(syntax.Call("attribute_exists", [subject]))
            missing = syntax.FunctionCondition(syntax.Call("attribute_not_exists", [subject]))
            return exists if negated else missing
        if self.keyword("NULL"):
            is_null = syntax.Or(
                [
                    syntax.FunctionCondition(syntax.Call("attribute_not_exists", [subject])),
                    syntax.FunctionCondition(
                        syntax.Call("attribute_type", [subject, _literal_ref({"S": "NULL"})])
                    ),
                ]
            )
            return syntax.Not(is_null) if negated else is_null
        raise self.error("MISSING or NULL")

    def call(self, function: str) -> syntax.Call:
        self.pos += 1
        self.expect("(")
        args = [self.operand()]
        while self.punct(","):
            args.append(self.operand())
        self.expect(")")
        arity = 1 if function == "size" else _CONDITION_FUNCTIONS[function]
        if len(args) != arity:
            raise ValidationException(
                f"{_WELL_FORMED}{function} takes {arity} argument{'s' if arity > 1 else ''}, "
                f"given {len(args)}"
            )
        if not isinstance(args[0], syntax.Path):
            raise ValidationException(
                f"{_WELL_FORMED}the first argument of {function} must be an attribute"
            )
        if function == "attribute_type":
            kind = args[1].value if isinstance(args[1], syntax.ValueRef) else None
            if kind is None or kind.get("S") not in _TYPE_NAMES:
                raise ValidationException(
                    f"{_WELL_FORMED}attribute_type takes one of the type names "
                    f"{', '.join(_TYPE_NAMES)}"
                )
        return syntax.Call(function, args)

    # -- operands ------------------------------------------------------------------------

    def operand(self) -> syntax.Operand:
        found = self.primary()
        if self.peek().kind == "punct" and self.peek().text in "+-*/%|":
            raise self.unsupported(f"the operator {self.peek().text}")
        return found

    def primary(self) -> syntax.Operand:
        token = self.peek()
        if token.text == "(" and token.kind == "punct":
            self.pos += 1
            inner = self.operand()
            self.expect(")")
            return inner
        if token.kind == "name" and self.peek(1).text == "(":
            if token.text.lower() == "size":
                return self.call("size")
            raise self.unsupported(f"the function {token.text}() as a value")
        if token.kind == "punct" and token.text == "?":
            self.pos += 1
            return _literal_ref(self.parameter())
        value = self.literal()
        if value is not None:
            return _literal_ref(value)
        path = self.path()
        if path is None:
            raise self.error("a value or an attribute name")
        return path

    def parameter(self) -> AttributeValue:
        self.used += 1
        if self.used > len(self.parameters):
            raise ValidationException("Number of parameters in request and statement don't match.")
        return self.parameters[self.used - 1]

    def literal(self) -> AttributeValue | None:
        token = self.peek()
        if token.kind == "string":
            self.pos += 1
            return {"S": token.text[1:-1].replace("''", "'")}
        negative = token.kind == "punct" and token.text == "-" and self.peek(1).kind == "number"
        if token.kind == "number" or negative:
            self.pos += 2 if negative else 1
            text = ("-" if negative else "") + self.tokens[self.pos - 1].text
            return check_value({"N": text}, "One or more parameter values were invalid: ")
        if token.kind == "name" and token.text.upper() in ("TRUE", "FALSE"):
            self.pos += 1
            return {"BOOL": token.text.upper() == "TRUE"}
        if token.kind == "name" and token.text.upper() == "NULL":
            self.pos += 1
            return {"NULL": True}
        if token.kind == "name" and token.text.upper() == "MISSING":
            raise self.unsupported("the MISSING literal (write IS MISSING)")
        if self.punct("["):
            return {"L": self.elements("]")}
        if self.punct("<<", "op"):
            return self.set_value(self.elements(">>", "op"))
        if self.punct("{"):
            return {"M": self.entries()}
        return None

    def elements(self, closing: str, kind: str = "punct") -> list[AttributeValue]:
        values: list[AttributeValue] = []
        if self.punct(closing, kind):
            return values
        while True:
            values.append(self.value())
            if self.punct(closing, kind):
                return values
            self.expect(",")

    def entries(self) -> dict[str, AttributeValue]:
        entries: dict[str, AttributeValue] = {}
        if self.punct("}"):
            return entries
        while True:
            key = self.peek()
            if key.kind != "string":
                raise self.error("a 'quoted' key")
            self.pos += 1
            self.expect(":")
            entries[key.text[1:-1].replace("''", "'")] = self.value()
            if self.punct("}"):
                return entries
            self.expect(",")

    def value(self) -> AttributeValue:
        if self.punct("?"):
            return self.parameter()
        found = self.literal()
        if found is None:
            raise self.error("a value")
        return found

    def set_value(self, members: list[AttributeValue]) -> AttributeValue:
        kinds = {type_of(member) for member in members}
        if len(kinds) != 1 or not kinds <= {"S", "N", "B"}:
            raise ValidationException(
                f"{_WELL_FORMED}a set <<…>> holds one or more strings, numbers or binaries, "
                "all of one type"
            )
        (kind,) = kinds
        value = {kind + "S": [member[kind] for member in members]}
        return check_value(value, "One or more parameter values were invalid: ")

    def path(self) -> syntax.Path | None:
        token = self.peek()
        if token.kind not in ("name", "quoted") or (
            token.kind == "name" and token.text.upper() in KEYWORDS
        ):
            return None
        steps: list[str | int] = [self.name("an attribute name")]
        while True:
            if self.punct("."):
                steps.append(self.name("an attribute name"))
            elif self.punct("["):
                inside = self.peek()
                if inside.kind == "number" and inside.text.isdigit():
                    steps.append(int(inside.text))
                elif inside.kind == "string":
                    steps.append(inside.text[1:-1].replace("''", "'"))
                else:
                    raise self.error("a list index or a 'quoted' name")
                self.pos += 1
                self.expect("]")
            else:
                return _path(steps)


def parse_select(text: str, parameters: list[AttributeValue]) -> Select:
    """Parse a ``SELECT`` with its (checked) parameters.

    Raises:
        ValidationException: not well formed, a parameter count that does not match, or a
            form this endpoint does not answer (the message says which).
    """
    return _Parser(text, parameters).statement()
