"""A randomized workload against a live (moto) table, recorded at chosen instants.

:class:`Workload` writes random puts, updates and deletes over a small key space (so keys are
deleted, re-inserted and rewritten), with every DynamoDB type in the items — binary at the top
level and nested in maps and lists, sets of each kind, numbers that are not in normal form
(``1.50``, ``007``, 38 digits), empty strings, NULL, BOOL. It works in *phases*; between two
phases :meth:`Workload.instant` picks a whole second ``T`` strictly after every write of the
phase, records the table's exact state at ``T`` (a strongly consistent scan, as canonical
JSON) and waits until ``T`` has passed, so every write of the next phase is later than ``T``.
DynamoDB reports stream event times in whole seconds; restoring to such a ``T`` must give
exactly the recorded state.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from archiver.format.codec import canonical_json, key_of
from archiver.format.timefmt import iso_ms

NUMBERS = ("1.50", "007", "-0.250", "100", "12345678901234567890123456789012345678", "0.000001")


@dataclass(frozen=True)
class Instant:
    """The table's state at a whole second ``at`` (canonical keys → canonical item)."""

    at: datetime
    state: dict[str, str]

    @property
    def iso(self) -> str:
        return iso_ms(self.at)


def scan_state(ddb: Any, table: str) -> dict[str, str]:
    """Every item of ``table`` (strongly consistent scan) as canonical keys → canonical item."""
    desc = ddb.describe_table(TableName=table)["Table"]
    names = [k["AttributeName"] for k in sorted(desc["KeySchema"], key=lambda k: k["KeyType"])]
    state: dict[str, str] = {}
    kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
    while True:
        page = ddb.scan(**kwargs)
        for item in page["Items"]:
            state[canonical_json(key_of(item, names))] = canonical_json(item)
        if "LastEvaluatedKey" not in page:
            return state
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


class Workload:
    """Random writes to ``table`` in phases.

    Args:
        ddb: a boto3 DynamoDB client.
        table: the table (``pk`` hash key, optional ``sk`` range key, as tests/conftest.py's
            ``create_table`` makes them).
        key_types: attribute types of ``pk`` and ``sk`` (``S``, ``N`` or ``B``).
        range_key: whether the table has the ``sk`` range key.
        keys: size of the key space.
        seed: the random seed (a failing run is reproducible from it).
        extra: attributes every item gets (e.g. a GSI's key: ``{"gsi_pk": "S"}``).
    """

    def __init__(
        self,
        ddb: Any,
        table: str,
        *,
        key_types: tuple[str, str] = ("S", "S"),
        range_key: bool = False,
        keys: int = 12,
        seed: int = 0,
        extra: dict[str, str] | None = None,
    ) -> None:
        self.ddb = ddb
        self.table = table
        self.key_types = key_types
        self.range_key = range_key
        self.keys = keys
        self.rng = random.Random(seed)
        self.extra = extra or {}
        self.writes = 0

    # -- values -------------------------------------------------------------------------------

    def _key_value(self, kind: str, i: int) -> dict[str, Any]:
        if kind == "N":
            return {"N": str(i * 10)}
        if kind == "B":
            return {"B": bytes([i % 256, 0, 255 - i % 256])}
        return {"S": f"key-{i:03d}"}

    def key(self, i: int) -> dict[str, Any]:
        """The key of slot ``i`` (two range-key values per hash key when there is one)."""
        if not self.range_key:
            return {"pk": self._key_value(self.key_types[0], i)}
        return {
            "pk": self._key_value(self.key_types[0], i // 2),
            "sk": self._key_value(self.key_types[1], i % 2 + 1),
        }

    def _number(self) -> str:
        return self.rng.choice((*NUMBERS, str(self.rng.randint(-(10**6), 10**6))))

    def _bytes(self) -> bytes:
        return bytes(self.rng.randrange(256) for _ in range(self.rng.randint(1, 8)))

    def value(self, depth: int = 0) -> dict[str, Any]:
        """A random attribute value of any type (maps and lists nest up to 2 levels)."""
        kinds = ["S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS"]
        if depth < 2:
            kinds += ["M", "L"]
        kind = self.rng.choice(kinds)
        if kind == "S":
            texts = ["", "plain", "ünïcødé ✓", 'quote"back\\slash', "x" * 40]
            return {"S": self.rng.choice(texts)}
        if kind == "N":
            return {"N": self._number()}
        if kind == "B":
            return {"B": self._bytes()}
        if kind == "BOOL":
            return {"BOOL": self.rng.random() < 0.5}
        if kind == "NULL":
            return {"NULL": True}
        if kind == "SS":
            return {"SS": list({self.rng.choice("abcdef") * self.rng.randint(1, 3) for _ in "xyz"})}
        if kind == "NS":
            return {"NS": list({str(self.rng.randint(-99, 99)) for _ in range(3)} | {"1.50"})}
        if kind == "BS":
            return {"BS": list({self._bytes() for _ in range(3)})}
        if kind == "M":
            return {"M": {f"f{i}": self.value(depth + 1) for i in range(self.rng.randint(0, 3))}}
        return {"L": [self.value(depth + 1) for _ in range(self.rng.randint(0, 3))]}

    def item(self, i: int) -> dict[str, Any]:
        """A random full item for slot ``i``."""
        item: dict[str, Any] = dict(self.key(i))
        item["bin"] = {"B": self._bytes()}
        item["nested"] = {"M": {"list": {"L": [{"B": self._bytes()}, {"N": self._number()}]}}}
        for n in range(self.rng.randint(0, 3)):
            item[f"a{n}"] = self.value()
        for name, kind in self.extra.items():
            item[name] = {kind: f"g{self.rng.randint(0, 2)}"} if kind == "S" else {"N": "1"}
        return item

    # -- writes -------------------------------------------------------------------------------

    def put(self, i: int) -> None:
        self.ddb.put_item(TableName=self.table, Item=self.item(i))
        self.writes += 1

    def delete(self, i: int) -> None:
        self.ddb.delete_item(TableName=self.table, Key=self.key(i))
        self.writes += 1

    def update(self, i: int) -> None:
        """SET one attribute and REMOVE another (creates the item when absent, like AWS)."""
        self.ddb.update_item(
            TableName=self.table,
            Key=self.key(i),
            UpdateExpression="SET #s = :v REMOVE #r",
            ExpressionAttributeNames={"#s": f"u{self.rng.randint(0, 2)}", "#r": "a0"},
            ExpressionAttributeValues={":v": self.value()},
        )
        self.writes += 1

    def phase(self, ops: int = 20, *, slots: Sequence[int] | None = None) -> None:
        """``ops`` random writes (half puts, a quarter updates, a quarter deletes)."""
        choices = list(slots) if slots is not None else list(range(self.keys))
        for _ in range(ops):
            i = self.rng.choice(choices)
            roll = self.rng.random()
            if roll < 0.5:
                self.put(i)
            elif roll < 0.75:
                self.update(i)
            else:
                self.delete(i)

    # -- instants -----------------------------------------------------------------------------

    def instant(self) -> Instant:
        """Record the state at the next whole second and wait until that second has passed."""
        now = time.time()
        at = math.floor(now) + 1  # strictly after every write so far
        state = scan_state(self.ddb, self.table)
        pause = at - time.time() + 0.02
        if pause > 0:
            time.sleep(pause)
        return Instant(datetime.fromtimestamp(at, UTC), state)
