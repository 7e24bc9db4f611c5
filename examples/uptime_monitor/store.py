"""`CheckStore`: every check in Cassandra, one partition per site and day, expiring by TTL.

Tables are shaped by the queries the status page makes (the Cassandra way):

* `checks`: partition `(site, day)`, newest first. "The last N checks of a
  site" reads one partition from its head; a partition holds one day, so it
  stays small however long the monitor runs.
* `failures`: partition `day`, newest first, for "the last failures of any
  site"; failures are few, so one partition a day stays small too.

Every write carries `USING TTL`, so old checks disappear without a cleanup job
and a changed `--ttl-days` applies from the next write on.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from bridge.adapters.cassandra import AsyncSession
from examples.uptime_monitor.monitor import CheckResult

__all__ = ["CheckStore"]

_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,47}")

_COLUMNS = "site, checked_at, ok, status, latency_ms, error"


class CheckStore:
    """Writes and reads checks through `bridge.adapters.cassandra`; make it with `open()`."""

    def __init__(self, session: AsyncSession, keyspace: str, ttl: int) -> None:
        self.session = session
        self.keyspace = keyspace
        self.ttl = ttl
        self._insert_check: Any = None
        self._insert_failure: Any = None
        self._select_checks: Any = None
        self._select_failures: Any = None

    @classmethod
    async def open(
        cls,
        session: AsyncSession,
        *,
        keyspace: str = "uptime",
        ttl: int = 7 * 24 * 3600,
        replication_factor: int = 1,
    ) -> CheckStore:
        """Create the keyspace and tables if needed, prepare the statements."""
        if not _IDENTIFIER.fullmatch(keyspace):
            raise ValueError(f"keyspace must be a plain CQL identifier, got {keyspace!r}")
        if ttl < 1:
            raise ValueError(f"ttl must be at least one second, got {ttl!r}")
        store = cls(session, keyspace, ttl)
        await store._create_schema(replication_factor)
        await store._prepare()
        return store

    async def _create_schema(self, replication_factor: int) -> None:
        ks = self.keyspace
        await self.session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
            f"{{'class': 'SimpleStrategy', 'replication_factor': {int(replication_factor)}}}"
        )
        await self.session.execute(
            f"CREATE TABLE IF NOT EXISTS {ks}.checks ("
            " site text, day date, checked_at timestamp, ok boolean, status int,"
            " latency_ms double, error text,"
            " PRIMARY KEY ((site, day), checked_at)"
            ") WITH CLUSTERING ORDER BY (checked_at DESC)"
        )
        await self.session.execute(
            f"CREATE TABLE IF NOT EXISTS {ks}.failures ("
            " day date, checked_at timestamp, site text, ok boolean, status int,"
            " latency_ms double, error text,"
            " PRIMARY KEY ((day), checked_at, site)"
            ") WITH CLUSTERING ORDER BY (checked_at DESC, site ASC)"
        )

    async def _prepare(self) -> None:
        ks = self.keyspace
        self._insert_check = await self.session.prepare(
            f"INSERT INTO {ks}.checks (day, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?"
        )
        self._insert_failure = await self.session.prepare(
            f"INSERT INTO {ks}.failures (day, {_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?"
        )
        self._select_checks = await self.session.prepare(
            f"SELECT {_COLUMNS} FROM {ks}.checks WHERE site = ? AND day = ? LIMIT ?"
        )
        self._select_failures = await self.session.prepare(
            f"SELECT {_COLUMNS} FROM {ks}.failures WHERE day = ? LIMIT ?"
        )

    async def record(self, result: CheckResult) -> None:
        """Store one check (and, if it failed, its entry in the day's failures)."""
        values = (
            result.checked_at.date(),
            result.site,
            result.checked_at,
            result.ok,
            result.status,
            result.latency_ms,
            result.error,
            self.ttl,
        )
        if result.ok:
            await self.session.execute(self._insert_check, values)
        else:
            await self.session.execute_concurrent(
                [(self._insert_check, values), (self._insert_failure, values)]
            )

    async def recent_checks(self, site: str, limit: int = 60) -> list[CheckResult]:
        """The latest `limit` checks of `site`, newest first (from today's and yesterday's days)."""
        return await self._latest(self._select_checks, (site,), limit)

    async def recent_failures(self, limit: int = 20) -> list[CheckResult]:
        """The latest `limit` failed checks of any site, newest first."""
        return await self._latest(self._select_failures, (), limit)

    async def _latest(self, statement: Any, key: tuple[Any, ...], limit: int) -> list[CheckResult]:
        today = dt.datetime.now(dt.UTC).date()
        found: list[CheckResult] = []
        for day in (today, today - dt.timedelta(days=1)):
            if len(found) >= limit:
                break
            result = await self.session.execute(statement, (*key, day, limit - len(found)))
            found.extend(_check(row) for row in await result.all())
        return found


def _check(row: Any) -> CheckResult:
    return CheckResult(
        site=row.site,
        checked_at=row.checked_at.replace(tzinfo=dt.UTC),  # the driver returns naive UTC
        ok=row.ok,
        status=row.status,
        latency_ms=row.latency_ms,
        error=row.error,
    )
