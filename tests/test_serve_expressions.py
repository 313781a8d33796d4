"""DynamoDB's expression grammar in ``serve``: one test per rule and per refusal.

The refusals and their exact messages are DynamoDB's as the dynalite project recorded them
from the service (its suite runs against DynamoDB itself); where DynamoDB reports one of
several problems, the test says which one wins. Parsing is also checked structurally — the
tree for ``a OR b AND NOT c`` is ``OR(a, AND(b, NOT c))`` — and, as a property, for random
expressions printed with random case, spacing and parentheses.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from replayer.serve import expression_syntax as syntax
from replayer.serve.dynamodb_errors import ValidationException
from replayer.serve.expression_checks import (
    Placeholders,
    compile_condition,
    compile_projection,
    expression_parameters,
)
from replayer.serve.expression_eval import evaluate, get_path, project
from replayer.serve.key_conditions import KeyTest, fit, key_conditions

FILTER = "Invalid FilterExpression: "


def condition(text: str, names: Any = None, values: Any = None, label: str = "FilterExpression"):
    return compile_condition(text, Placeholders.of_request(names, values), label)


def refusal(text: str, names: Any = None, values: Any = None, label: str = "FilterExpression"):
    with pytest.raises(ValidationException) as caught:
        condition(text, names, values, label)
    return caught.value.message


def shape(node: Any) -> Any:
    """A parsed condition as nested tuples (names and values by their text)."""
    if isinstance(node, syntax.Path):
        return ".".join(str(s) if isinstance(s, int) else s.text for s in node.steps)
    if isinstance(node, syntax.ValueRef):
        return node.name
    if isinstance(node, syntax.Call):
        return (node.name, *[shape(a) for a in node.args])
    if isinstance(node, syntax.Comparison):
        return (node.op, shape(node.left), shape(node.right))
    if isinstance(node, syntax.Between):
        return ("BETWEEN", shape(node.subject), shape(node.low), shape(node.high))
    if isinstance(node, syntax.In):
        return ("IN", shape(node.subject), *[shape(o) for o in node.options])
    if isinstance(node, syntax.FunctionCondition | syntax.SizeCondition):
        return shape(node.call)
    if isinstance(node, syntax.Not):
        return ("NOT", shape(node.operand))
    if isinstance(node, syntax.And):
        return ("AND", *[shape(o) for o in node.operands])
    assert isinstance(node, syntax.Or)
    return ("OR", *[shape(o) for o in node.operands])


# -- tokens and grammar --------------------------------------------------------------------


def test_tokens_carry_their_kind_and_place() -> None:
    tokens = syntax.tokenize("#a.b[10] <= :v_1")
    assert [(t.kind, t.text) for t in tokens] == [
        ("placeholder", "#a"),
        ("punct", "."),
        ("name", "b"),
        ("punct", "["),
        ("number", "10"),
        ("punct", "]"),
        ("op", "<="),
        ("value", ":v_1"),
        ("eof", "<EOF>"),
    ]
    assert tokens[-2].start == 12
    assert syntax.tokenize("a-b")[1] == syntax.Token("error", "-", 1, 2)


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("a = b", ("=", "a", "b")),
        ("a <> :v", ("<>", "a", ":v")),
        ("a<b", ("<", "a", "b")),
        ("a <= b", ("<=", "a", "b")),
        ("a > b", (">", "a", "b")),
        ("a >= b", (">=", "a", "b")),
        ("a BETWEEN :x AND :y", ("BETWEEN", "a", ":x", ":y")),
        ("a between :x and :y", ("BETWEEN", "a", ":x", ":y")),
        ("a IN (:x)", ("IN", "a", ":x")),
        ("a in (:x, b, :z)", ("IN", "a", ":x", "b", ":z")),
        ("attribute_exists(a.b[2].c)", ("attribute_exists", "a.b.2.c")),
        ("attribute_not_exists(#n)", ("attribute_not_exists", "#n")),
        ("attribute_type(a, :t)", ("attribute_type", "a", ":t")),
        ("begins_with(a, :p)", ("begins_with", "a", ":p")),
        ("contains(a, :v)", ("contains", "a", ":v")),
        ("size(a) > :n", (">", ("size", "a"), ":n")),
        ("(a = b)", ("=", "a", "b")),
        ("(a) = (b)", ("=", "a", "b")),
        ("NOT a = b", ("NOT", ("=", "a", "b"))),
        ("a = b AND c = d", ("AND", ("=", "a", "b"), ("=", "c", "d"))),
        ("a = b OR c = d", ("OR", ("=", "a", "b"), ("=", "c", "d"))),
        # AND binds tighter than OR, NOT tighter than AND
        (
            "a = b OR c = d AND NOT e = f",
            ("OR", ("=", "a", "b"), ("AND", ("=", "c", "d"), ("NOT", ("=", "e", "f")))),
        ),
        (
            "(a = b OR c = d) AND e = f",
            ("AND", ("OR", ("=", "a", "b"), ("=", "c", "d")), ("=", "e", "f")),
        ),
        ("NOT (a = b OR c = d)", ("NOT", ("OR", ("=", "a", "b"), ("=", "c", "d")))),
        # comparisons bind tighter than BETWEEN's AND
        (
            "a BETWEEN :x AND :y AND b = c",
            ("AND", ("BETWEEN", "a", ":x", ":y"), ("=", "b", "c")),
        ),
        ("\t a\n=\r\nb ", ("=", "a", "b")),
        ("a.b.c = x[0][1]", ("=", "a.b.c", "x.0.1")),
    ],
)
def test_each_rule_parses_to_its_tree(text: str, tree: Any) -> None:
    assert shape(syntax.parse_condition(text)) == tree


@pytest.mark.parametrize(
    ("text", "token", "near"),
    [
        ("a > 4", "4", "> 4"),  # numbers are not operands
        ("things are not gonna be ok", "are", "things are not"),
        ("attribute_exists(Pictures-RearView)", "-", "Pictures-RearView"),
        ("a in (b,c,)", ")", ",)"),
        ("a = b c", "c", "b c"),
        ("a =", "<EOF>", "="),
        ("ü > a", "ü", "ü >"),
        ("NOT NOT a = b", "NOT", "NOT NOT a"),
    ],
)
def test_syntax_errors_name_the_token_and_what_is_near(text: str, token: str, near: str) -> None:
    assert refusal(text) == f'{FILTER}Syntax error; token: "{token}", near: "{near}"'


@pytest.mark.parametrize(
    "text",
    [
        "a > between",
        'attribute_exists("Pictures.RearView")',
        "attribute_exists(Pictures..RearView)",
        "attribute_exists(Pi#ctures.RearView)",
        "attribute_exists(asdf[a])",
        "a in b, c",
        "a in b",
        "(a)between(b.(c.d))and(c)",
        "(a)between(b.c.d)and((c)",
        "#$.b > a",
        "a > :things.stuff",
        "b[:a] > a",
        "b[#_] > a",
        "(a)between(b.c[4.5].#d)and(:a)",
        "size(a).b > a",
        "(size(a)).b > a",
        "size(a)[0] > a",
        "(size(a))[0] > a",
    ],
)
def test_what_dynamodb_calls_a_syntax_error(text: str) -> None:
    assert refusal(text).startswith(f"{FILTER}Syntax error; ")


def test_long_chains_are_one_node() -> None:
    text = " AND ".join(["a = b"] * 300) + " OR c = d"
    tree = syntax.parse_condition(text)
    assert isinstance(tree, syntax.Or) and isinstance(tree.operands[0], syntax.And)
    assert len(tree.operands[0].operands) == 300


def test_empty_and_oversized_expressions() -> None:
    assert refusal("") == f"{FILTER}The expression can not be empty;"
    long = "a = b AND " * 500 + "a = b"
    assert refusal(long) == (
        f"{FILTER}Expression size has exceeded the maximum allowed size; expression size: "
        f"{len(long)}"
    )


def test_nested_parentheses_parse_in_linear_time() -> None:
    text = "(" * 40 + "a = b" + ")" * 40
    assert refusal(text) == f"{FILTER}The expression has redundant parentheses;"
    assert shape(syntax.parse_condition(text)) == ("=", "a", "b")
    # deeper than the parser can follow: refused, never a crash
    text = "(" * 2000 + "a = b" + ")" * 2000
    assert refusal(text).startswith(f"{FILTER}The expression is nested too deeply")


# -- checks, in DynamoDB's order -----------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "a=a and a > ((views))",
        "(a)between(((b.c)).d)and(c)",
        "a > whatever((:things), ((a)))",
        "a=a AND ((a=a AND a=a)) AND a=a",
        "a=a OR ((a=a OR a=a)) OR a=a",
        "a=a AND ((a=a AND (a=a AND a=a)))",
        "((a = b))",
        "((NOT a = b))",
    ],
)
def test_redundant_parentheses_are_refused_first(text: str) -> None:
    assert refusal(text) == f"{FILTER}The expression has redundant parentheses;"


@pytest.mark.parametrize(
    ("text", "function"),
    [
        ("a=a and whatever((:things)) > a", "whatever"),
        ("attRIbute_exIsts((views), #a)", "attRIbute_exIsts"),  # names are case-sensitive
    ],
)
def test_unknown_functions(text: str, function: str) -> None:
    assert refusal(text) == f"{FILTER}Invalid function name; function: {function}"


@pytest.mark.parametrize(
    ("text", "function"),
    [
        ("a=a and attribute_exists((views), (#a)) > b", "attribute_exists"),
        ("attribute_not_exists(things) > b", "attribute_not_exists"),
        ("attribute_type(things, :a) > b", "attribute_type"),
        ("begins_with(things, a) > b", "begins_with"),
        ("contains(:things, c) > b", "contains"),
        ("size(contains(a, b)) > a", "contains"),
        ("size(things)", "size"),
        ("a between b and attribute_exists(things)", "attribute_exists"),
        ("a in (b, attribute_exists(things))", "attribute_exists"),
        ("NOT size(a)", "size"),
    ],
)
def test_functions_where_they_do_not_belong(text: str, function: str) -> None:
    assert refusal(text) == (
        f"{FILTER}The function is not allowed to be used this way in an expression; "
        f"function: {function}"
    )


@pytest.mark.parametrize(
    ("text", "word"),
    [("attribute_exists(views, #a)", "views"), (":a < abOrT", "abOrT"), ("a.status = b", "status")],
)
def test_reserved_words(text: str, word: str) -> None:
    assert refusal(text) == (
        f"{FILTER}Attribute name is a reserved keyword; reserved keyword: {word}"
    )


def test_a_reserved_word_through_a_placeholder_is_fine() -> None:
    tree = condition("#s = :v", {"#s": "status"}, {":v": {"S": "x"}})
    assert evaluate(tree, {"status": {"S": "x"}})


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("attribute_exists(#Pictures.RearView, :a) and a=a", "#Pictures"),
        ("begins_with(Pictures.#RearView)", "#RearView"),
        ("(#P between :lo and :hi) and (#PC in (:cat1, :cat2))", "#P"),
        ("#4g > a", "#4g"),
        ("(a)between(b.c[45].#d)and(:a)", "#d"),
    ],
)
def test_undefined_names(text: str, name: str) -> None:
    assert refusal(text) == (
        f"{FILTER}An expression attribute name used in the document path is not defined; "
        f"attribute name: {name}"
    )


@pytest.mark.parametrize(
    ("text", "value"),
    [("begins_with(:hello, #a, #b)", ":hello"), (":a < :b", ":a"), (":_ > a", ":_")],
)
def test_undefined_values(text: str, value: str) -> None:
    assert refusal(text) == (
        f"{FILTER}An expression attribute value used in expression is not defined; "
        f"attribute value: {value}"
    )


@pytest.mark.parametrize(
    ("text", "function", "count"),
    [
        ("attribute_exists(things, a) and a=a", "attribute_exists", 2),
        ("attribute_not_exists(things, b)", "attribute_not_exists", 2),
        ("attribute_type(things)", "attribute_type", 1),
        ("begins_with(things)", "begins_with", 1),
        ("begins_with(things, size(a), b)", "begins_with", 3),
        ("contains(things)", "contains", 1),
        ("size(things, a) > b", "size", 2),
    ],
)
def test_wrong_number_of_operands(text: str, function: str, count: int) -> None:
    assert refusal(text) == (
        f"{FILTER}Incorrect number of operands for operator or function; operator or "
        f"function: {function}, number of operands: {count}"
    )


@pytest.mark.parametrize(
    ("text", "function", "value"),
    [
        ("attribute_type(a, size(a)) and a=a and a=:a", "attribute_type", {"N": "1"}),
        ("attribute_type(a, :a)", "attribute_type", {"N": "1"}),
        ("attribute_type(a, :a)", "attribute_type", {"BOOL": True}),
        ("attribute_type(a, :a)", "attribute_type", {"SS": ["1"]}),
        ("begins_with(a, size(a)) and a=:a", "begins_with", {"N": "1"}),
        ("begins_with(a, :a)", "begins_with", {"N": "1"}),
        ("begins_with(a, :a)", "begins_with", {"NULL": True}),
        ("begins_with(a, :a)", "begins_with", {"L": []}),
        ("begins_with(:a, a)", "begins_with", {"M": {}}),
        ("begins_with(:a, a)", "begins_with", {"BS": ["YQ=="]}),
        ("size(size(a)) > :a", "size", {"N": "1"}),
        ("attribute_not_exists(size(:a))", "size", {"N": "1"}),
        ("size(:a) > a", "size", {"BOOL": True}),
        ("size(:a) > a", "size", {"NULL": True}),
    ],
)
def test_wrong_operand_types(text: str, function: str, value: dict[str, Any]) -> None:
    kind = next(iter(value))
    assert refusal(text, values={":a": value}) == (
        f"{FILTER}Incorrect operand type for operator or function; operator or function: "
        f"{function}, operand type: {kind}"
    )


def test_attribute_type_names() -> None:
    assert refusal("attribute_type(a, :a)", values={":a": {"S": "1"}}) == (
        f"{FILTER}Invalid attribute type name found; type: 1, valid types: "
        "{B,NULL,SS,BOOL,L,BS,N,NS,S,M}"
    )
    assert refusal("attribute_type(a, b)").endswith("operand type: {NS,SS,L,BS,N,M,B,BOOL,NULL,S}")


@pytest.mark.parametrize(
    ("text", "function"),
    [
        ("attribute_exists(:a) and a=a", "attribute_exists"),
        ("attribute_not_exists(size(:a))", "attribute_not_exists"),
    ],
)
def test_functions_that_need_a_path(text: str, function: str) -> None:
    assert refusal(text, values={":a": {"S": "1"}}) == (
        f"{FILTER}Operator or function requires a document path; operator or function: {function}"
    )


@pytest.mark.parametrize(
    ("text", "operator", "path"),
    [
        ("a = a AND #a = b AND :views > a", "=", "[a]"),
        ("#a <> a", "<>", "[a]"),
        ("a > #a", ">", "[a]"),
        ("((a=a) OR (a=a))", "=", "[a]"),
        ("contains(ab.bc[1].a, ab.bc[1].#a)", "contains", "[ab, bc, [1], a]"),
        ("begins_with(ab.bc[1].a, ab.bc[1].#a)", "begins_with", "[ab, bc, [1], a]"),
    ],
)
def test_an_operand_compared_with_itself(text: str, operator: str, path: str) -> None:
    values = {":views": {"N": "1"}} if ":views" in text else None
    assert refusal(text, {"#a": "a"}, values) == (
        f"{FILTER}The first operand must be distinct from the remaining operands for this "
        f"operator or function; operator: {operator}, first operand: {path}"
    )


def test_values_may_repeat() -> None:
    assert evaluate(condition(":a = :a", values={":a": {"N": "1"}}), {})


def test_between_bounds() -> None:
    values = {":a": {"S": "a"}, ":b": {"N": "1"}}
    assert refusal("x between :b and :a", values=values) == (
        f"{FILTER}The BETWEEN operator requires same data type for lower and upper bounds; "
        "lower bound operand: AttributeValue: {N:1}, upper bound operand: AttributeValue: {S:a}"
    )
    values = {":a": {"S": "a"}, ":b": {"S": "b"}}
    assert refusal("x between :b and :a", values=values) == (
        f"{FILTER}The BETWEEN operator requires upper bound to be greater than or equal to "
        "lower bound; lower bound operand: AttributeValue: {S:b}, upper bound operand: "
        "AttributeValue: {S:a}"
    )


def test_which_problem_dynamodb_reports_first() -> None:
    # redundant parentheses before an unknown function, before a misused one, before a
    # reserved word, before the first condition's own problem
    assert refusal("whatever(a) AND ((b = c))").endswith("redundant parentheses;")
    assert "Invalid function name" in refusal("size(things) AND nope(a)")
    assert "not allowed to be used" in refusal("status = :undefined AND size(things)")
    assert "reserved keyword: status" in refusal("a = :undefined AND status = b")
    # within the first failing condition: undefined before operand count before distinct
    assert "not defined" in refusal("b = :undefined AND begins_with(a)")
    assert "number of operands" in refusal("begins_with(a) AND b = :undefined")
    assert "number of operands" in refusal("begins_with(a) AND b = b")


# -- placeholders --------------------------------------------------------------------------


def test_placeholder_maps_are_checked_before_parsing() -> None:
    with pytest.raises(ValidationException, match=r"^ExpressionAttributeNames must not be empty$"):
        Placeholders.of_request({}, None)
    with pytest.raises(ValidationException, match=r"^ExpressionAttributeValues must not be empty$"):
        Placeholders.of_request(None, {})
    with pytest.raises(ValidationException) as caught:
        Placeholders.of_request({"a": "a"}, None)
    assert (
        caught.value.message
        == 'ExpressionAttributeNames contains invalid key: Syntax error; key: "a"'
    )
    with pytest.raises(ValidationException) as caught:
        Placeholders.of_request(None, {":a": {"SS": []}})
    assert caught.value.message == (
        "ExpressionAttributeValues contains invalid value: One or more parameter values were "
        "invalid: An string set  may not be empty for key :a"
    )


def test_unused_placeholders_are_refused_names_first() -> None:
    placeholders = Placeholders.of_request(
        {"#a": "a", "#b": "b", "#c": "c"}, {":x": {"S": "1"}, ":y": {"S": "2"}}
    )
    compile_condition("#a = :x", placeholders, "FilterExpression")
    with pytest.raises(ValidationException) as caught:
        placeholders.check_unused()
    assert caught.value.message == (
        "Value provided in ExpressionAttributeNames unused in expressions: keys: {#b, #c}"
    )
    placeholders.unused_names.clear()
    with pytest.raises(ValidationException) as caught:
        placeholders.check_unused()
    assert caught.value.message == (
        "Value provided in ExpressionAttributeValues unused in expressions: keys: {:y}"
    )


def test_expression_and_legacy_parameters() -> None:
    with pytest.raises(ValidationException) as caught:
        expression_parameters(
            {"FilterExpression": "a = b", "ScanFilter": {}},
            ["ProjectionExpression", "FilterExpression"],
            ["AttributesToGet", "ScanFilter"],
        )
    assert caught.value.message == (
        "Can not use both expression and non-expression parameters in the same request: "
        "Non-expression parameters: {ScanFilter} Expression parameters: {FilterExpression}"
    )
    with pytest.raises(ValidationException, match="can only be specified when using"):
        expression_parameters({"ExpressionAttributeNames": {"#a": "a"}}, ["FilterExpression"], [])
    with pytest.raises(ValidationException) as caught:
        expression_parameters(
            {"ExpressionAttributeValues": {":a": {"S": "a"}}, "ProjectionExpression": "a"},
            ["ProjectionExpression", "FilterExpression"],
            [],
        )
    assert caught.value.message == (
        "ExpressionAttributeValues can only be specified when using expressions: "
        "FilterExpression is null"
    )


# -- projections ---------------------------------------------------------------------------


def test_projection_paths_and_their_refusals() -> None:
    placeholders = Placeholders.of_request({"#l": "list"}, None)
    assert compile_projection("a, #l[2].q, b.c", placeholders) == [
        ("a",),
        ("list", 2, "q"),
        ("b", "c"),
    ]
    cases = {
        "a, a.b": "Two document paths overlap with each other; must remove or rewrite one of "
        "these paths; path one: [a], path two: [a, b]",
        "a.b, a[0]": "Two document paths conflict with each other; must remove or rewrite one "
        "of these paths; path one: [a, b], path two: [a, [0]]",
        "a, a": "Two document paths overlap with each other; must remove or rewrite one of "
        "these paths; path one: [a], path two: [a]",
        "status": "Attribute name is a reserved keyword; reserved keyword: status",
        "#x": "An expression attribute name used in the document path is not defined; "
        "attribute name: #x",
        "a,,b": 'Syntax error; token: ",", near: ",,b"',
        "a.(b)": 'Syntax error; token: "(", near: ".(b"',
        "": "The expression can not be empty;",
    }
    for text, message in cases.items():
        with pytest.raises(ValidationException) as caught:
            compile_projection(text, Placeholders.of_request(None, None))
        assert caught.value.message == f"Invalid ProjectionExpression: {message}", text


def test_projection_rebuilds_maps_and_compacts_lists() -> None:
    item = {
        "a": {"N": "1"},
        "l": {"L": [{"S": "x"}, {"N": "2"}, {"M": {"q": {"S": "z"}, "r": {"S": "w"}}}]},
        "m": {"M": {"x": {"M": {"y": {"BOOL": True}}}}},
    }
    assert project(
        item, [("l", 2, "q"), ("l", 0), ("a",), ("nope",), ("l", 7), ("m", "x", "y")]
    ) == {
        "l": {"L": [{"S": "x"}, {"M": {"q": {"S": "z"}}}]},
        "a": {"N": "1"},
        "m": {"M": {"x": {"M": {"y": {"BOOL": True}}}}},
    }
    assert project(item, [("a", "b"), ("m", 0)]) == {}


# -- evaluation ----------------------------------------------------------------------------

ITEM = {
    "n": {"N": "5"},
    "s": {"S": "hello"},
    "b": {"B": "AAEC"},
    "t": {"BOOL": True},
    "z": {"NULL": True},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2.5"]},
    "bs": {"BS": ["AA==", "AQ=="]},
    "l": {"L": [{"S": "x"}, {"N": "2"}, {"M": {"q": {"S": "z"}}}]},
    "m": {"M": {"k": {"N": "7"}}},
}
VALUES = {
    ":five": {"N": "5"},
    ":one": {"N": "1"},
    ":two": {"N": "2"},
    ":he": {"S": "he"},
    ":x": {"S": "x"},
    ":a": {"S": "a"},
    ":true": {"BOOL": True},
    ":b01": {"B": "AAE="},
    ":b1": {"B": "AQ=="},
    ":num25": {"N": "2.5"},
    ":S": {"S": "S"},
    ":N": {"S": "N"},
    ":SS": {"S": "SS"},
    ":NULL": {"S": "NULL"},
    ":m": {"M": {"k": {"N": "7"}}},
    ":l2": {"N": "2"},
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n = :five", True),
        ("n = :one", False),
        ("n <> :one", True),
        ("missing_attr <> :one", True),
        ("t = :true", True),
        ("n = :true", False),  # N 5 is not BOOL true (moto says otherwise for N 1)
        ("n > :one AND n >= :five AND n < :five", False),
        ("n <= :five AND n > :two", True),
        ("s > :he", True),  # S by code points
        ("b > :b01", True),  # B by unsigned bytes
        ("s < :five", False),  # different types: false, never an error
        ("n BETWEEN :one AND :five", True),
        ("n BETWEEN :one AND :two", False),
        ("n IN (:one, :five)", True),
        ("missing_attr IN (:one)", False),
        ("attribute_exists(l[2].q)", True),
        ("attribute_exists(l[3])", False),
        ("attribute_not_exists(m.nope)", True),
        ("attribute_type(s, :S) AND attribute_type(n, :N) AND attribute_type(ss, :SS)", True),
        ("attribute_type(z, :NULL)", True),
        ("begins_with(s, :he)", True),
        ("begins_with(b, :b01)", True),
        ("begins_with(n, :he)", False),
        ("contains(s, :he)", True),
        ("contains(ss, :a)", True),
        ("contains(ns, :num25)", True),
        ("contains(bs, :b1)", True),
        ("contains(l, :x) AND contains(l, :l2)", True),
        ("contains(b, :b1)", True),
        ("contains(m, :a)", False),
        ("size(s) = :five AND size(ss) = :two AND size(l) > :two AND size(m) = :one", True),
        ("size(b) > :two", True),
        ("size(n) > :one", False),  # a number has no size
        ("size(nope) < :one", False),
        ("l[1] = :two AND m.k > :five AND l[2].q <> :x", True),
        ("m = :m", True),
        ("NOT n = :five OR s = :he", False),
        ("NOT (n = :five OR s = :he)", False),
    ],
)
def test_each_operator_and_function_evaluates_as_dynamodb_documents(
    text: str, expected: bool
) -> None:
    used = {k: v for k, v in VALUES.items() if re.search(re.escape(k) + r"\b", text)}
    assert evaluate(condition(text, values=used or None), ITEM) is expected


def test_paths_read_through_maps_and_lists_only() -> None:
    assert get_path(ITEM, ("l", 2, "q")) == {"S": "z"}
    assert get_path(ITEM, ("m", 0)) is None
    assert get_path(ITEM, ("l", "q")) is None
    assert get_path(ITEM, ("s", 0)) is None


# -- key conditions ------------------------------------------------------------------------


MULTIPLE = (
    "Invalid condition in KeyConditionExpression: Multiple attribute names used in one condition"
)


def key_refusal(text: str, values: Any = None) -> str:
    tree = condition(text, values=values, label="KeyConditionExpression")
    with pytest.raises(ValidationException) as caught:
        key_conditions(tree)
    return caught.value.message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a > b and size(b) > c or a > c", "Invalid operator used in KeyConditionExpression: OR"),
        ("a in (b, size(c), d)", "Invalid operator used in KeyConditionExpression: IN"),
        (
            "attribute_exists(a)",
            "Invalid operator used in KeyConditionExpression: attribute_exists",
        ),
        ("contains(a.d, b)", "Invalid operator used in KeyConditionExpression: contains"),
        ("not a > b", "Invalid operator used in KeyConditionExpression: NOT"),
        ("a <> b", "Invalid operator used in KeyConditionExpression: <>"),
        ("a > size(b.d)", "KeyConditionExpressions cannot contain nested operations"),
        (
            "b > a.b",
            MULTIPLE,
        ),
        (
            "begins_with(a, b)",
            MULTIPLE,
        ),
        ("a.d > c", "KeyConditionExpressions cannot have conditions on nested attributes"),
        ("b[0] > a", "KeyConditionExpressions cannot have conditions on nested attributes"),
    ],
)
def test_key_condition_shapes_dynamodb_refuses(text: str, message: str) -> None:
    assert key_refusal(text) == message


def test_key_condition_operands() -> None:
    values = {":a": {"S": "1"}, ":b": {"S": "1"}}
    assert key_refusal("begins_with(:a, b) and a > :b", values) == (
        "Invalid condition in KeyConditionExpression: begins_with operator must have the key "
        "attribute as its first operand"
    )
    assert key_refusal(":b > :a AND a < :b", values) == (
        "Invalid condition in KeyConditionExpression: No key attribute specified"
    )
    assert key_refusal("a = :a AND a > :b", values) == (
        "KeyConditionExpressions must only contain one condition per key"
    )


def test_key_conditions_flip_and_fit_the_keys() -> None:
    values = {":p": {"S": "x"}, ":s": {"N": "3"}}
    tests = key_conditions(
        condition(":p = pk AND :s > sk", values=values, label="KeyConditionExpression")
    )
    assert tests == {"pk": KeyTest("EQ", ({"S": "x"},)), "sk": KeyTest("LT", ({"N": "3"},))}
    found = fit(tests, ("pk", "S"), ("sk", "N"))
    assert found.hash_value == {"S": "x"} and found.range_test == KeyTest("LT", ({"N": "3"},))
    refusals = [
        (tests, ("pk", "S"), None, "Query key condition not supported"),
        (
            {"sk": tests["sk"]},
            ("pk", "S"),
            ("sk", "N"),
            "Query condition missed key schema element: pk",
        ),
        (
            tests,
            ("pk", "N"),
            ("sk", "N"),
            "One or more parameter values were invalid: Condition parameter type does not match "
            "schema type",
        ),
        (
            {"pk": KeyTest("GT", ({"S": "x"},))},
            ("pk", "S"),
            None,
            "Query key condition not supported",
        ),
        (
            {**tests, "other": KeyTest("EQ", ({"S": "x"},))},
            ("pk", "S"),
            ("sk", "N"),
            "Conditions can be of length 1 or 2 only",
        ),
        (
            {"pk": tests["pk"], "other": tests["sk"]},
            ("pk", "S"),
            ("sk", "N"),
            "Query condition missed key schema element: sk",
        ),
    ]
    for given_tests, hash_key, range_key, message in refusals:
        with pytest.raises(ValidationException) as caught:
            fit(given_tests, hash_key, range_key)
        assert caught.value.message == message


# -- the grammar, as a property ------------------------------------------------------------

_leaf = st.sampled_from(["a", "b.c", "d[1]", "#n"]).map(lambda p: ("path", p)) | st.sampled_from(
    [":v", ":w"]
).map(lambda v: ("value", v))


def _comparison(draw: st.DrawFn) -> Any:
    left, right = draw(_leaf), draw(_leaf)
    kind = draw(st.sampled_from(["cmp", "between", "in", "fn"]))
    if kind == "cmp":
        return ("cmp", draw(st.sampled_from(syntax.COMPARATORS)), left, right)
    if kind == "between":
        return ("between", left, right, draw(_leaf))
    if kind == "in":
        return ("in", left, draw(st.lists(_leaf, min_size=1, max_size=3)))
    return ("fn", draw(st.sampled_from(["begins_with", "contains"])), left, right)


@st.composite
def _conditions(draw: st.DrawFn, depth: int = 0) -> Any:
    if depth > 3 or draw(st.booleans()):
        return _comparison(draw)
    kind = draw(st.sampled_from(["and", "or", "not"]))
    if kind == "not":
        return ("not", draw(_conditions(depth + 1)))
    return (kind, draw(_conditions(depth + 1)), draw(_conditions(depth + 1)))


def _render(node: Any, draw: st.DrawFn, parent: int = 0) -> str:
    space = draw(st.sampled_from([" ", "  ", "\n", "\t "]))

    def word(text: str) -> str:
        return draw(st.sampled_from([text.upper(), text.lower(), text.capitalize()]))

    def leaf(operand: Any) -> str:
        return operand[1]

    kind = node[0]
    if kind == "cmp":
        text = f"{leaf(node[2])}{space}{node[1]}{space}{leaf(node[3])}"
        level = 3
    elif kind == "between":
        text = f"{leaf(node[1])} {word('between')} {leaf(node[2])} {word('and')} {leaf(node[3])}"
        level = 3
    elif kind == "in":
        text = f"{leaf(node[1])} {word('in')} (" + ",".join(leaf(o) for o in node[2]) + ")"
        level = 3
    elif kind == "fn":
        text = f"{node[1]}({leaf(node[2])},{space}{leaf(node[3])})"
        level = 3
    elif kind == "not":
        text = f"{word('not')} {_render(node[1], draw, 3)}"
        level = 2
    else:
        level = 1 if kind == "and" else 0
        text = f"{_render(node[1], draw, level + 1)} {word(kind)} {_render(node[2], draw, level)}"
    needs = level < parent or (kind in ("not", "and", "or") and parent == 3)
    if needs or (level > 0 and kind not in ("not",) and draw(st.integers(0, 5)) == 0):
        return f"({text})"
    return text


def _expected(node: Any) -> Any:
    def leaf(operand: Any) -> str:
        return str(operand[1]).replace("[", ".").replace("]", "")

    kind = node[0]
    if kind == "cmp":
        return (node[1], leaf(node[2]), leaf(node[3]))
    if kind == "between":
        return ("BETWEEN", leaf(node[1]), leaf(node[2]), leaf(node[3]))
    if kind == "in":
        return ("IN", leaf(node[1]), *[leaf(o) for o in node[2]])
    if kind == "fn":
        return (node[1], leaf(node[2]), leaf(node[3]))
    if kind == "not":
        return ("NOT", _expected(node[1]))
    return (kind.upper(), _expected(node[1]), _expected(node[2]))


@st.composite
def _texts(draw: st.DrawFn) -> tuple[str, Any]:
    node = draw(_conditions())
    return _render(node, draw), _expected(node)


def _flatten(tree: Any) -> Any:
    """AND and OR are associative: compare their operand lists, not their nesting."""
    if isinstance(tree, tuple) and tree and tree[0] in ("AND", "OR"):
        out: list[Any] = []
        for child in tree[1:]:
            child = _flatten(child)
            if isinstance(child, tuple) and child[0] == tree[0]:
                out.extend(child[1])
            else:
                out.append(child)
        return (tree[0], out)
    if isinstance(tree, tuple):
        return tuple(_flatten(t) for t in tree)
    return tree


@settings(max_examples=200, deadline=None)
@given(_texts())
def test_random_expressions_parse_with_dynamodbs_precedence(case: tuple[str, Any]) -> None:
    text, expected = case
    assert _flatten(shape(syntax.parse_condition(text))) == _flatten(expected), text
