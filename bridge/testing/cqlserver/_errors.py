"""The errors the CQL engine reports, each carrying its native-protocol error code.

The server turns these into ERROR frames, so the driver raises the exception a
real Cassandra would have made it raise (``SyntaxException``, ``InvalidRequest``,
``AlreadyExists``...).
"""

from __future__ import annotations


class CQLError(Exception):
    """A request the engine refused; ``code`` is the protocol error code."""

    code = 0x0000

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ServerError(CQLError):
    """Something broke inside the engine; the request may be fine."""

    code = 0x0000


class CQLSyntaxError(CQLError):
    """The query is not valid CQL; the message says where and what was expected."""

    code = 0x2000


class Unauthorized(CQLError):
    """The session's role may not do this (or no role is logged in)."""

    code = 0x2100


class Invalid(CQLError):
    """Valid CQL that cannot run: unknown keyspace, table or column, bad value."""

    code = 0x2200


class ConfigurationError(CQLError):
    """A schema option Cassandra cannot configure (bad compression or compaction options)."""

    code = 0x2300


class AlreadyExists(CQLError):
    """CREATE of a keyspace or table that exists, without IF NOT EXISTS."""

    code = 0x2400

    def __init__(self, keyspace: str, table: str = "", what: str = "table") -> None:
        if table and what != "table":
            message = f"A {what} with name '{table}' already exists in keyspace {keyspace}"
        elif table:
            message = f'Cannot add already existing table "{table}" to keyspace "{keyspace}"'
        else:
            message = f'Cannot add existing keyspace "{keyspace}"'
        super().__init__(message)
        self.keyspace = keyspace
        self.table = table


class Unprepared(CQLError):
    """EXECUTE of a statement id this engine does not know (any more)."""

    code = 0x2500

    def __init__(self, statement_id: bytes) -> None:
        super().__init__(f"Prepared query with ID {statement_id.hex()} not found")
        self.statement_id = statement_id
