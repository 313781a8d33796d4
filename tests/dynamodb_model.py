"""A model of DynamoDB's documented read semantics, for the requests the differential test of
``serve`` generates — the oracle where moto is not faithful to DynamoDB.

It models, from DynamoDB's developer guide ("Comparison operator and function reference",
"Key condition expressions", "Paginating table query results"):

- conditions on the generator's own trees (not on ``serve``'s parser): comparisons true only
  between values of one type (``N 1`` is not ``BOOL true``; ``<`` between types is false, not
  an error), ``<>`` true for a missing attribute, ``size`` of a missing attribute or of a
  number absent (so its comparison is false), ``contains`` on strings, sets and lists,
  ``begins_with`` on S and B (and ``contains`` of a B in a B, which DynamoDB answers as
  dynalite recorded, though the guide lists only strings, sets and lists);
- projections rebuilt around the paths found, list elements in index order;
- the order of reads: a partition's items by sort key (N numerically, S and B by unsigned
  bytes), index entries by the index's keys; a Scan and ties between index entries by the
  partition hash DynamoDB uses (as dynalite measured it; ``replayer.serve.keys``, whose
  order ``tests/test_serve_keys.py`` checks against dynalite's recordings of DynamoDB);
- pages: a page stops before evaluating an item once ``Limit`` items or 1 MB were evaluated
  (the 1 MB counted as dynalite measured it: ``replayer.serve.values.page_size``), and then
  carries the last evaluated item's key — also when nothing follows.

It cannot model what DynamoDB does not document: the exact message of every refusal (the
test compares error types) or the response order of ``BatchGetItem``.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from replayer.serve import keys
from replayer.serve.values import page_size

Item = dict[str, Any]
PAGE = 1024 * 1024


def order_value(value: Mapping[str, Any]) -> Any:
    kind, raw = next(iter(value.items()))
    if kind == "N":
        return Decimal(raw)
    if kind == "B":
        return base64.b64decode(raw)
    return str(raw).encode("utf-8")


def get_path(item: Mapping[str, Any], path: Sequence[str | int]) -> Any:
    value: Any = item.get(path[0])  # type: ignore[arg-type]
    for step in path[1:]:
        if value is None:
            return None
        if isinstance(step, int):
            elements = value.get("L")
            value = elements[step] if elements is not None and step < len(elements) else None
        else:
            value = (value.get("M") or {}).get(step) if "M" in value else None
    return value


def compare(op: str, left: Any, right: Any) -> bool:
    if op == "=":
        return left is not None and left == right
    if op == "<>":
        return left is None or right is None or left != right
    if left is None or right is None:
        return False
    kind = next(iter(left))
    if kind != next(iter(right)) or kind not in ("S", "N", "B"):
        return False
    a, b = order_value(left), order_value(right)
    return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]


def _size(value: Any) -> Any:
    if value is None:
        return None
    kind, raw = next(iter(value.items()))
    if kind == "S":
        return {"N": str(len(raw))}
    if kind == "B":
        return {"N": str(len(base64.b64decode(raw)))}
    if kind in ("SS", "NS", "BS", "L", "M"):
        return {"N": str(len(raw))}
    return None


def evaluate(condition: Any, item: Mapping[str, Any]) -> bool:
    """A condition tree of the differential test's generator, on one item."""
    kind = condition[0]
    if kind == "and":
        return all(evaluate(c, item) for c in condition[1])
    if kind == "or":
        return any(evaluate(c, item) for c in condition[1])
    if kind == "not":
        return not evaluate(condition[1], item)
    value = get_path(item, condition[2] if kind in ("cmp", "size") else condition[1])
    if kind == "cmp":
        return compare(condition[1], value, condition[3])
    if kind == "size":
        return compare(condition[1], _size(value), condition[3])
    if kind == "between":
        return compare(">=", value, condition[2]) and compare("<=", value, condition[3])
    if kind == "in":
        return value is not None and any(value == option for option in condition[2])
    if kind == "exists":
        return value is not None
    if kind == "not_exists":
        return value is None
    if kind == "type":
        return value is not None and next(iter(value)) == condition[2]
    if kind == "begins":
        if value is None or next(iter(value)) != next(iter(condition[2])):
            return False
        if "S" in value:
            return bool(value["S"].startswith(condition[2]["S"]))
        if "B" in value:
            return base64.b64decode(value["B"]).startswith(base64.b64decode(condition[2]["B"]))
        return False
    if kind == "contains":
        operand = condition[2]
        if value is None:
            return False
        tag, wanted = next(iter(value)), next(iter(operand))
        if tag == "S" and wanted == "S":
            return bool(operand["S"] in value["S"])
        if tag == "B" and wanted == "B":  # not documented; DynamoDB's answer, per dynalite
            return base64.b64decode(operand["B"]) in base64.b64decode(value["B"])
        if tag in ("SS", "NS", "BS") and wanted == tag[0]:
            if wanted == "N":
                return any(Decimal(m) == Decimal(operand["N"]) for m in value[tag])
            return operand[wanted] in value[tag]
        if tag == "L":
            return operand in value["L"]
        return False
    raise ValueError(condition)


def project(item: Mapping[str, Any], paths: Sequence[Sequence[str | int]]) -> Item:
    """The parts of ``item`` at ``paths``, maps and lists rebuilt around them."""
    out: Item = {}
    for path in paths:
        found = get_path(item, path)
        if found is not None:
            _insert(out, list(path), found)
    return {name: _finish(value) for name, value in out.items()}


def _insert(attributes: Item, path: list[Any], found: Any) -> None:
    if len(path) == 1:
        attributes[path[0]] = found
        return
    if isinstance(path[1], int):
        node = attributes.setdefault(path[0], {"slots": {}})
        _insert_slot(node["slots"], path[1:], found)
    else:
        node = attributes.setdefault(path[0], {"M": {}})
        _insert(node["M"], path[1:], found)


def _insert_slot(slots: dict[int, Any], path: list[Any], found: Any) -> None:
    if len(path) == 1:
        slots[path[0]] = found
    elif isinstance(path[1], int):
        _insert_slot(slots.setdefault(path[0], {"slots": {}})["slots"], path[1:], found)
    else:
        _insert(slots.setdefault(path[0], {"M": {}})["M"], path[1:], found)


def _finish(value: Any) -> Any:
    if "slots" in value:
        return {"L": [_finish(v) for _, v in sorted(value["slots"].items())]}
    if "M" in value:
        return {"M": {k: _finish(v) for k, v in value["M"].items()}}
    return value


def scan_order(items: Sequence[Item], hash_key: str, range_key: str | None) -> list[Item]:
    return sorted(
        items,
        key=lambda i: keys.item_key(i[hash_key], i[range_key] if range_key else None),
    )


def index_order(
    entries: Sequence[Item],
    hash_key: str,
    range_key: str | None,
    table_keys: tuple[str, str | None],
) -> list[Item]:
    def key(entry: Item) -> Any:
        th, tr = table_keys
        return keys.item_key(entry[hash_key], entry[range_key] if range_key else None) + (
            keys.tie_breaker(entry[th], entry[tr] if tr else None)
        )

    return sorted(entries, key=key)


def pages(
    candidates: Sequence[Item],
    limit: int | None,
    passes: Sequence[bool],
    range_key: str | None,
    start_names: Sequence[str],
) -> list[dict[str, Any]]:
    """The pages DynamoDB answers over ``candidates`` (in read order); ``passes[i]``: whether
    candidate ``i`` passes the filter. Each page: its evaluated count, its matching
    positions, and its LastEvaluatedKey (or None)."""
    out = []
    position = 0
    while True:
        scanned = size = 0
        matching = []
        start = position
        while position < len(candidates):
            if (limit is not None and scanned >= limit) or size >= PAGE:
                break
            size += page_size(candidates[position], range_key)
            scanned += 1
            if passes[position]:
                matching.append(position)
            position += 1
        stopped = (limit is not None and scanned >= limit) or size >= PAGE
        last = (
            {n: candidates[position - 1][n] for n in start_names} if stopped and scanned else None
        )
        out.append({"scanned": scanned, "matching": matching, "last": last, "start": start})
        if last is None:
            return out
