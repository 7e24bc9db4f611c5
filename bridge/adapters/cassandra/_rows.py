"""The driver's default rows, without building a class per result.

`cassandra.query.named_tuple_factory` calls `collections.namedtuple` for every
result it decodes: the class is built by `eval`, about 100 µs, which was a fifth
of the loop thread's CPU in a SELECT-heavy run (bench/cassandra.py, profiled).
Here the class is built once per column list, by the driver's own factory (so
names are cleaned exactly as the driver cleans them, warnings included), and
reused; rows are the same `Row` named tuples with the same fields.
`AsyncCluster` swaps it in only where a profile still has the driver's default.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from cassandra.query import named_tuple_factory  # type: ignore[import-untyped]

__all__ = ["cached_named_tuple_factory", "use_cached_rows"]


@lru_cache(maxsize=1024)  # thread-safe: the driver's threads decode too
def _row_class(colnames: tuple[str, ...]) -> Any:
    return type(named_tuple_factory(colnames, [(None,) * len(colnames)])[0])


class _CachedNamedTupleFactory:
    """`named_tuple_factory`'s rows, with the `Row` class cached per column list.

    Equal to the driver's `named_tuple_factory`: the driver recognises its own
    factories by equality (`ResultSet.was_applied`), and these are its rows.
    """

    __slots__ = ()

    def __call__(self, colnames: list[str], rows: list[Any]) -> list[Any]:
        make = _row_class(tuple(colnames))._make
        return [make(row) for row in rows]

    def __eq__(self, other: object) -> bool:
        return other is self or other is named_tuple_factory

    def __hash__(self) -> int:
        return hash(named_tuple_factory)

    def __repr__(self) -> str:
        return "<bridge's cached named_tuple_factory>"


cached_named_tuple_factory = _CachedNamedTupleFactory()


def use_cached_rows(cluster: Any) -> None:
    """Swap the cached factory into every execution profile that has the driver's default."""
    for profile in cluster.profile_manager.profiles.values():
        if getattr(profile, "row_factory", None) is named_tuple_factory:
            profile.row_factory = cached_named_tuple_factory
