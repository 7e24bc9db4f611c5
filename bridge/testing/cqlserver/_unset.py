"""The protocol's "not set" bind value (length -2), kept apart from null.

A driver sends it for a marker the caller left out (``execute(ins, (0, 1))`` on
three markers): Cassandra then leaves that column alone, where null would
delete it. It is an (empty) ``bytes`` so wire values keep one type; code that
must tell it from a real empty value checks identity (``value is UNSET``).
"""

from __future__ import annotations

from typing import Final


class _Unset(bytes):
    __slots__ = ()

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final[bytes] = _Unset()
