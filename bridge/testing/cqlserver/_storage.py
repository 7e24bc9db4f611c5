"""In-memory table data: partitions in token order, rows in clustering order.

Values are kept as Python values (see ``_types``); every cell remembers its
write timestamp (last write wins) and when its TTL runs out.
"""

from __future__ import annotations

import bisect
import functools
import operator
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, cast

from ._murmur3 import murmur3_token, partition_key_bytes
from ._schema import Column, Table


class Cell:
    """A value and its write timestamp (microseconds, as in Cassandra); it never expires.

    Most cells have no TTL, so the expiry lives in the subclass: two slots, not four.
    """

    __slots__ = ("timestamp", "value")
    expires: float | None = None  # clock() seconds at which the TTL runs out
    ttl: int | None = None

    def __init__(self, value: object, timestamp: int) -> None:
        self.value = value
        self.timestamp = timestamp

    def alive(self, now: float) -> bool:
        return True

    def __repr__(self) -> str:
        return f"Cell({self.value!r}, {self.timestamp})"


class ExpiringCell(Cell):
    """A cell written with a TTL."""

    __slots__ = ("expires", "ttl")

    def __init__(self, value: object, timestamp: int, expires: float, ttl: int) -> None:
        super().__init__(value, timestamp)
        self.expires = expires
        self.ttl = ttl

    def alive(self, now: float) -> bool:
        return now < self.expires  # type: ignore[operator]


def make_cell(value: object, timestamp: int, expires: float | None, ttl: int | None) -> Cell:
    if expires is None:
        return Cell(value, timestamp)
    return ExpiringCell(value, timestamp, expires, ttl or 0)


# A partition with no static cells shares this; writing one replaces it with its
# own dict (``Partition.static_cells``). Read-only, so a missed write fails loudly.
_NO_STATIC: Final = cast(dict[str, "Cell"], MappingProxyType({}))


@functools.total_ordering
class _Descending:
    """Wraps a sort key so that it orders backwards (a DESC clustering column)."""

    __slots__ = ("key",)

    def __init__(self, key: Any) -> None:
        self.key = key

    def __lt__(self, other: object) -> bool:
        assert isinstance(other, _Descending)
        result: bool = other.key < self.key
        return result

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.key == other.key

    def __hash__(self) -> int:
        return hash(self.key)


def clustering_sort_key(columns: list[Column], values: tuple[object, ...]) -> tuple[Any, ...]:
    """The key rows of a partition are sorted by; a prefix sorts before its extensions."""
    key: list[Any] = []
    for column, value in zip(columns, values, strict=False):
        part = column.type.sort_key(value)
        key.append(_Descending(part) if column.clustering_order == "desc" else part)
    return tuple(key)


@dataclass(slots=True)
class Row:
    clustering: tuple[object, ...]
    sort_key: tuple[Any, ...]
    marker: Cell | None = None  # set by INSERT: the row exists even with no values
    cells: dict[str, Cell] = field(default_factory=dict)

    def alive(self, now: float) -> bool:
        if self.marker is not None and self.marker.alive(now):
            return True
        return any(cell.alive(now) for cell in self.cells.values())


@dataclass(slots=True)
class Partition:
    key: tuple[object, ...]
    key_bytes: bytes
    token: int
    static: dict[str, Cell] = field(default_factory=lambda: _NO_STATIC)  # see static_cells()
    rows: list[Row] = field(default_factory=list)  # sorted by sort_key (bisect with key=)

    def static_cells(self) -> dict[str, Cell]:
        """The static cells, to write to."""
        if self.static is _NO_STATIC:
            self.static = {}
        return self.static

    def get_row(self, sort_key: tuple[Any, ...]) -> Row | None:
        rows = self.rows
        index = bisect.bisect_left(rows, sort_key, key=_sort_key)
        if index < len(rows) and rows[index].sort_key == sort_key:
            return rows[index]
        return None

    def row(self, clustering: tuple[object, ...], sort_key: tuple[Any, ...]) -> Row:
        """The row with this clustering key, created if missing."""
        rows = self.rows
        index = bisect.bisect_left(rows, sort_key, key=_sort_key) if rows else 0
        if index < len(rows) and rows[index].sort_key == sort_key:
            return rows[index]
        row = Row(clustering, sort_key)
        rows.insert(index, row)
        return row

    def remove_rows(self, keep: list[bool]) -> None:
        self.rows = [row for row, kept in zip(self.rows, keep, strict=True) if kept]

    def rows_after(self, sort_key: tuple[Any, ...] | None, reverse: bool) -> Iterator[Row]:
        """Rows in clustering order (or reversed), strictly after ``sort_key`` when given."""
        if not reverse:
            start = (
                0 if sort_key is None else bisect.bisect_right(self.rows, sort_key, key=_sort_key)
            )
            for index in range(start, len(self.rows)):
                yield self.rows[index]
        else:
            stop = (
                len(self.rows)
                if sort_key is None
                else bisect.bisect_left(self.rows, sort_key, key=_sort_key)
            )
            for index in range(stop - 1, -1, -1):
                yield self.rows[index]

    def alive(self, now: float) -> bool:
        if any(cell.alive(now) for cell in self.static.values()):
            return True
        return any(row.alive(now) for row in self.rows)


_sort_key = operator.attrgetter("sort_key")


def bound_key_bytes(values: list[bytes | None], indexes: tuple[int, ...]) -> bytes:
    """A partition key's bytes from its bound values, which are already its serialized parts.

    Only for canonical key types (see ``CQLType.canonical``): then these are the bytes
    ``TableData.key_bytes`` would make from the decoded values.
    """
    if len(indexes) == 1:
        raw = values[indexes[0]] or b""
        return raw if type(raw) is bytes else bytes(raw)
    return partition_key_bytes([bytes(values[i] or b"") for i in indexes])


class TableData:
    """The partitions of one table, kept in token order as a Murmur3 ring orders them."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self._partitions: dict[bytes, Partition] = {}
        # Ring order, (token, key bytes) ascending, in two parallel lists: a list of
        # pairs would cost a tuple per partition.
        self._tokens: list[int] = []
        self._raws: list[bytes] = []

    def __len__(self) -> int:
        return len(self._partitions)

    def key_bytes(self, key: tuple[object, ...]) -> bytes:
        parts = [c.type.serialize(v) for c, v in zip(self.table.partition_key, key, strict=True)]
        return partition_key_bytes(parts)

    def get(self, key: tuple[object, ...]) -> Partition | None:
        return self._partitions.get(self.key_bytes(key))

    def get_by_bytes(self, key_bytes: bytes) -> Partition | None:
        return self._partitions.get(key_bytes)

    def partition(self, key: tuple[object, ...]) -> Partition:
        """The partition with this key, created if missing."""
        return self.partition_by_bytes(self.key_bytes(key), key)

    def partition_by_bytes(self, raw: bytes, key: tuple[object, ...]) -> Partition:
        """The partition whose serialized key is ``raw`` (``key`` decoded), created if missing."""
        found = self._partitions.get(raw)
        if found is None:
            found = Partition(key, raw, murmur3_token(raw))
            self._partitions[raw] = found
            index = self._position(found.token, raw)
            self._tokens.insert(index, found.token)
            self._raws.insert(index, raw)
        return found

    def _position(self, token: int, raw: bytes) -> int:
        """Where (token, raw) is or would go in ring order."""
        tokens, raws = self._tokens, self._raws
        index = bisect.bisect_left(tokens, token)
        while index < len(tokens) and tokens[index] == token and raws[index] < raw:
            index += 1  # a token collision: ordered by key bytes
        return index

    def drop(self, partition: Partition) -> None:
        if self._partitions.pop(partition.key_bytes, None) is not None:
            index = self._position(partition.token, partition.key_bytes)
            del self._tokens[index]
            del self._raws[index]

    def clear(self) -> None:
        self._partitions.clear()
        self._tokens.clear()
        self._raws.clear()

    def forget_columns(self, names: tuple[str, ...]) -> None:
        """Drop every cell of dropped columns, so adding one back does not revive old data."""
        for partition in self._partitions.values():
            for name in names:
                if partition.static is not _NO_STATIC:
                    partition.static.pop(name, None)
                for row in partition.rows:
                    row.cells.pop(name, None)

    def scan(self, after: tuple[int, bytes] | None = None) -> Iterator[Partition]:
        """Partitions in token order, starting at ``after`` (inclusive) when given."""
        start = 0 if after is None else self._position(*after)
        raws = self._raws
        for index in range(start, len(raws)):
            if index >= len(raws):
                return
            yield self._partitions[raws[index]]

    def clustering_key(self, values: tuple[object, ...]) -> tuple[Any, ...]:
        return clustering_sort_key(self.table.clustering, values)
