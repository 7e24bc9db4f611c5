"""In-memory table data: partitions in token order, rows in clustering order.

Values are kept as Python values (see ``_types``); every cell has a write
timestamp (last write wins) and may have a TTL, but a row stores them per cell
only when its cells differ (see ``Row``): a stored row costs little more than
its values.
"""

from __future__ import annotations

import bisect
import functools
import operator
from array import array
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

from ._errors import Invalid
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


class Row:
    """One row's cells, by column slot (``Column.slot``), and its marker.

    Two layouts behind one interface. Compact, the common case of a row written by one
    INSERT: ``_stamp`` is the write timestamp shared by the row marker and every cell,
    none has a TTL, and ``_cells`` is a tuple of plain values (None: no cell) — no Cell
    objects, no per-cell timestamps. General, for anything else: ``_stamp`` is None and
    ``_cells`` is a list of ``Cell | None``, the marker first, then one per slot.
    Writers change a row with ``set_marker``/``put`` (which move it to the general layout
    when they must) and call ``settle`` when done, which moves it back if it can.
    """

    __slots__ = ("_cells", "_stamp")
    # A row of a table without clustering columns; ClusteredRow stores its own.
    clustering: tuple[object, ...] = ()
    sort_key: tuple[Any, ...] = ()

    def __init__(self) -> None:
        self._stamp: int | None = None
        self._cells: Any = [None]

    def cell(self, slot: int) -> Cell | None:
        """The cell in ``slot`` (live or not), or None."""
        if self._stamp is None:
            cells: list[Cell | None] = self._cells
            return cells[slot + 1] if slot + 1 < len(cells) else None
        values: tuple[object, ...] = self._cells
        value = values[slot] if slot < len(values) else None
        return None if value is None else Cell(value, self._stamp)

    def value(self, slot: int, now: float) -> object:
        """The live value in ``slot``, or None."""
        if self._stamp is None:
            cells: list[Cell | None] = self._cells
            cell = cells[slot + 1] if slot + 1 < len(cells) else None
            return cell.value if cell is not None and cell.alive(now) else None
        values: tuple[object, ...] = self._cells
        return values[slot] if slot < len(values) else None

    @property
    def marker(self) -> Cell | None:
        """The row marker INSERT writes (the row exists even with no values), or None."""
        if self._stamp is None:
            marker: Cell | None = self._cells[0]
            return marker
        return Cell(None, self._stamp)

    def set_marker(self, marker: Cell | None) -> None:
        if marker is not None and type(marker) is Cell and marker.timestamp == self._stamp:
            return
        self._general()[0] = marker

    def put(self, slot: int, cell: Cell | None) -> None:
        """Write ``slot`` (None removes its cell); the caller settled which write wins."""
        stamp = self._stamp
        if stamp is not None and (cell is None or (type(cell) is Cell and cell.timestamp == stamp)):
            values: tuple[object, ...] = self._cells
            if slot >= len(values):
                if cell is None:
                    return
                values += (None,) * (slot + 1 - len(values))
            value = None if cell is None else cell.value
            self._cells = (*values[:slot], value, *values[slot + 1 :])
            return
        cells = self._general()
        if slot + 1 >= len(cells):
            if cell is None:
                return
            cells.extend([None] * (slot + 2 - len(cells)))
        cells[slot + 1] = cell

    def replace(self, stamp: int, written: list[tuple[int, object]]) -> bool:
        """An INSERT at ``stamp`` without TTL that writes these slots (None: no cell), if
        it leaves the row compact: it is newer than the row and overwrites every value
        the row holds. False, and nothing done, otherwise (use ``set_marker``/``put``).
        """
        current = self._stamp
        if current is None:
            if any(cell is not None for cell in self._cells):
                return False
        elif current > stamp:
            return False
        size = 1 + max((slot for slot, _ in written), default=-1)
        values: list[object] = [None] * size
        for slot, value in written:
            values[slot] = value
        if current is not None:
            old: tuple[object, ...] = self._cells
            if len(old) > size or any(
                value is not None and values[slot] is None for slot, value in enumerate(old)
            ):
                return False  # a value written before would keep its older timestamp
        while values and values[-1] is None:
            values.pop()
        self._stamp, self._cells = stamp, tuple(values)
        return True

    def settle(self) -> None:
        """Back to the compact layout when one timestamp and no TTL covers everything."""
        if self._stamp is not None:
            return
        cells: list[Cell | None] = self._cells
        marker = cells[0]
        if marker is None or type(marker) is not Cell:
            return
        stamp = marker.timestamp
        values: list[object] = []
        for cell in cells[1:]:
            if cell is None:
                values.append(None)
            elif type(cell) is not Cell or cell.timestamp != stamp:
                return
            else:
                values.append(cell.value)
        while values and values[-1] is None:
            values.pop()
        self._stamp, self._cells = stamp, tuple(values)

    def _general(self) -> list[Cell | None]:
        stamp = self._stamp
        if stamp is not None:
            values: tuple[object, ...] = self._cells
            cells: list[Cell | None] = [Cell(None, stamp)]
            cells += [None if value is None else Cell(value, stamp) for value in values]
            self._stamp, self._cells = None, cells
        general: list[Cell | None] = self._cells
        return general

    def cells(self) -> Iterator[tuple[int, Cell]]:
        """(slot, cell) of every cell, live or not; the marker is not one."""
        for slot in range(len(self._cells) - (self._stamp is None)):
            cell = self.cell(slot)
            if cell is not None:
                yield slot, cell

    def alive(self, now: float) -> bool:
        if self._stamp is not None:
            return True  # a marker without TTL
        return any(cell is not None and cell.alive(now) for cell in self._cells)

    def empty(self) -> bool:
        """No marker and no cell, live or expired."""
        return self._stamp is None and all(cell is None for cell in self._cells)

    def delete_older(self, timestamp: int) -> None:
        """A deletion at ``timestamp``: the marker and cells written at or before it go."""
        cells = self._general()
        for index, cell in enumerate(cells):
            if cell is not None and cell.timestamp <= timestamp:
                cells[index] = None
        self.settle()

    def forget(self, slots: list[int]) -> None:
        """Drop the cells of these slots (dropped columns)."""
        for slot in slots:
            self.put(slot, None)


class ClusteredRow(Row):
    """A row of a table with clustering columns, which it is sorted by in its partition."""

    __slots__ = ("clustering", "sort_key")

    def __init__(self, clustering: tuple[object, ...], sort_key: tuple[Any, ...]) -> None:
        super().__init__()
        self.clustering = clustering
        self.sort_key = sort_key


# A partition with no static cells shares this; writing one gives it its own row
# (``Partition.static_row()``). Nothing writes to it.
NO_STATIC: Final = Row()


class Partition:
    """The rows of one partition key, in clustering order, and its static cells.

    ``key_bytes`` is the serialized partition key (``TableData.key_of`` decodes it);
    the token is the Murmur3 hash of those bytes.
    """

    __slots__ = ()
    key_bytes: bytes

    @property
    def token(self) -> int:
        return murmur3_token(self.key_bytes)

    @property
    def static(self) -> Row:
        return NO_STATIC

    def static_row(self) -> Row:
        """The static cells, to write to."""
        raise Invalid("Static columns are only useful (and thus allowed) if the table has at "
                      "least one clustering column")  # fmt: skip

    @property
    def rows(self) -> Sequence[Row]:
        raise NotImplementedError

    def get_row(self, sort_key: tuple[Any, ...]) -> Row | None:
        raise NotImplementedError

    def row(self, clustering: tuple[object, ...], sort_key: tuple[Any, ...]) -> Row:
        """The row with this clustering key, created if missing."""
        raise NotImplementedError

    def remove_rows(self, keep: list[bool]) -> None:
        raise NotImplementedError

    def rows_after(self, sort_key: tuple[Any, ...] | None, reverse: bool) -> Iterator[Row]:
        """Rows in clustering order (or reversed), strictly after ``sort_key`` when given."""
        raise NotImplementedError

    def alive(self, now: float) -> bool:
        raise NotImplementedError

    def empty(self) -> bool:
        """Nothing stored: the partition can go."""
        raise NotImplementedError


class LonePartition(Row, Partition):
    """A partition of a table without clustering columns: its one row, and nothing else.

    Such a table has one row per partition and no static columns, so the partition is
    the row itself, with no list of rows around it: most of a small row's memory.
    """

    __slots__ = ("key_bytes",)

    def __init__(self, key_bytes: bytes) -> None:
        super().__init__()
        self.key_bytes = key_bytes

    @property
    def rows(self) -> Sequence[Row]:
        return (self,)

    def get_row(self, sort_key: tuple[Any, ...]) -> Row | None:
        return self

    def row(self, clustering: tuple[object, ...], sort_key: tuple[Any, ...]) -> Row:
        return self

    def remove_rows(self, keep: list[bool]) -> None:
        if not keep[0]:
            self._stamp, self._cells = None, [None]

    def rows_after(self, sort_key: tuple[Any, ...] | None, reverse: bool) -> Iterator[Row]:
        if sort_key is None:
            yield self


class ClusteredPartition(Partition):
    """A partition of a table with clustering columns: rows sorted by clustering key."""

    __slots__ = ("_rows", "_static", "key_bytes")

    def __init__(self, key_bytes: bytes) -> None:
        self.key_bytes = key_bytes
        self._static = NO_STATIC
        self._rows: list[ClusteredRow] = []  # sorted by sort_key (bisect with key=)

    @property
    def static(self) -> Row:
        return self._static

    def static_row(self) -> Row:
        if self._static is NO_STATIC:
            self._static = Row()
        return self._static

    @property
    def rows(self) -> Sequence[Row]:
        return self._rows

    def get_row(self, sort_key: tuple[Any, ...]) -> Row | None:
        rows = self._rows
        index = bisect.bisect_left(rows, sort_key, key=_sort_key)
        if index < len(rows) and rows[index].sort_key == sort_key:
            return rows[index]
        return None

    def row(self, clustering: tuple[object, ...], sort_key: tuple[Any, ...]) -> Row:
        rows = self._rows
        index = bisect.bisect_left(rows, sort_key, key=_sort_key) if rows else 0
        if index < len(rows) and rows[index].sort_key == sort_key:
            return rows[index]
        row = ClusteredRow(clustering, sort_key)
        rows.insert(index, row)
        return row

    def remove_rows(self, keep: list[bool]) -> None:
        self._rows = [row for row, kept in zip(self._rows, keep, strict=True) if kept]

    def rows_after(self, sort_key: tuple[Any, ...] | None, reverse: bool) -> Iterator[Row]:
        rows = self._rows
        if not reverse:
            start = 0 if sort_key is None else bisect.bisect_right(rows, sort_key, key=_sort_key)
            for index in range(start, len(rows)):
                yield rows[index]
        else:
            stop = (
                len(rows) if sort_key is None else bisect.bisect_left(rows, sort_key, key=_sort_key)
            )
            for index in range(stop - 1, -1, -1):
                yield rows[index]

    def alive(self, now: float) -> bool:
        return self._static.alive(now) or any(row.alive(now) for row in self._rows)

    def empty(self) -> bool:
        return self._static.empty() and all(row.empty() for row in self._rows)


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


def key_values(table: Table, raw: bytes) -> tuple[object, ...]:
    """A partition key's values from its serialized bytes (see ``partition_key_bytes``)."""
    columns = table.partition_key
    if len(columns) == 1:
        return (columns[0].type.deserialize(raw),)
    values: list[object] = []
    at = 0
    for column in columns:
        size = int.from_bytes(raw[at : at + 2], "big")
        values.append(column.type.deserialize(raw[at + 2 : at + 2 + size]))
        at += size + 3
    return tuple(values)


class TableData:
    """The partitions of one table, kept in token order as a Murmur3 ring orders them.

    No dict from key to partition: a lookup hashes the key (the driver's C Murmur3) and
    bisects the ring, which saves the ~50 bytes a dict entry costs per partition.
    """

    def __init__(self, table: Table) -> None:
        self.table = table
        self._make: Callable[[bytes], Partition] = (
            ClusteredPartition if table.clustering else LonePartition
        )
        # Ring order, (token, key bytes) ascending: tokens packed 8 bytes each, and the
        # partitions in the same order.
        self._tokens = array("q")
        self._ring: list[Partition] = []

    def __len__(self) -> int:
        return len(self._ring)

    def key_bytes(self, key: tuple[object, ...]) -> bytes:
        parts = [c.type.serialize(v) for c, v in zip(self.table.partition_key, key, strict=True)]
        return partition_key_bytes(parts)

    def key_of(self, partition: Partition) -> tuple[object, ...]:
        """The partition key's values, decoded from its bytes."""
        return key_values(self.table, partition.key_bytes)

    def get(self, key: tuple[object, ...]) -> Partition | None:
        return self.get_by_bytes(self.key_bytes(key))

    def get_by_bytes(self, key_bytes: bytes) -> Partition | None:
        token = murmur3_token(key_bytes)
        tokens, ring = self._tokens, self._ring
        index = bisect.bisect_left(tokens, token)
        while index < len(ring) and tokens[index] == token:  # more than once: a collision
            if ring[index].key_bytes == key_bytes:
                return ring[index]
            index += 1
        return None

    def partition(self, key: tuple[object, ...]) -> Partition:
        """The partition with this key, created if missing."""
        return self.partition_by_bytes(self.key_bytes(key))

    def partition_by_bytes(self, raw: bytes) -> Partition:
        """The partition whose serialized key is ``raw``, created if missing."""
        token = murmur3_token(raw)
        index = self._position(token, raw)
        ring = self._ring
        if index < len(ring) and ring[index].key_bytes == raw:
            return ring[index]
        found = self._make(raw)
        self._tokens.insert(index, token)
        ring.insert(index, found)
        return found

    def _position(self, token: int, raw: bytes) -> int:
        """Where (token, raw) is or would go in ring order."""
        tokens, ring = self._tokens, self._ring
        index = bisect.bisect_left(tokens, token)
        while index < len(tokens) and tokens[index] == token and ring[index].key_bytes < raw:
            index += 1  # a token collision: ordered by key bytes
        return index

    def drop(self, partition: Partition) -> None:
        index = self._position(partition.token, partition.key_bytes)
        if index < len(self._ring) and self._ring[index] is partition:
            del self._tokens[index]
            del self._ring[index]

    def clear(self) -> None:
        del self._tokens[:]
        self._ring.clear()

    def forget_columns(self, slots: list[int]) -> None:
        """Drop every cell of dropped columns, so their memory goes with them."""
        for partition in self._ring:
            if partition.static is not NO_STATIC:
                partition.static.forget(slots)
            for row in partition.rows:
                row.forget(slots)

    def scan(self, after: tuple[int, bytes] | None = None) -> Iterator[Partition]:
        """Partitions in token order, starting at ``after`` (inclusive) when given."""
        start = 0 if after is None else self._position(*after)
        ring = self._ring
        for index in range(start, len(ring)):
            if index >= len(ring):
                return
            yield ring[index]

    def clustering_key(self, values: tuple[object, ...]) -> tuple[Any, ...]:
        return clustering_sort_key(self.table.clustering, values)
