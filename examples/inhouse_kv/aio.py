"""The adapter: `KVClient` awaitable on asyncio, uvloop and trio, in a few dozen lines.

Callbacks complete tasks through the loop's waker (no thread per request),
the blocking connect runs on a thread, `scan` streams with bounded
read-ahead, and a `Limiter` caps requests in flight (a token is held until
the driver answers, even when the awaiting task gave up first).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import bridge
from bridge import lowlevel
from examples.inhouse_kv.client import KVClient, OnDone


class AsyncKV:
    def __init__(self, client: KVClient, limiter: bridge.Limiter) -> None:
        self.client = client  # the sync client, for code that is not async yet
        self._limiter = limiter

    @classmethod
    async def connect(cls, host: str, port: int, *, max_in_flight: int = 64) -> AsyncKV:
        client = await bridge.to_thread(KVClient, host, port)  # connect blocks: off the loop
        return cls(client, bridge.Limiter(max_in_flight))

    async def get(self, key: str) -> str | None:
        return await lowlevel.wait_for_callback(
            lambda done: self.client.get_async(key, _settle(done)), limiter=self._limiter
        )

    async def set(self, key: str, value: str) -> None:
        await lowlevel.wait_for_callback(
            lambda done: self.client.set_async(key, value, _settle(done)), limiter=self._limiter
        )

    def scan(self, prefix: str, *, prefetch: int = 16) -> AsyncIterator[tuple[str, str]]:
        return bridge.iterate(self.client.scan(prefix), prefetch=prefetch)

    async def close(self) -> None:
        await lowlevel.run_job(self.client.close, cleanup=True)  # runs even if we are cancelled


def _settle(done: lowlevel.Callback[str | None]) -> OnDone:
    """The driver's (value, error) callback, completing the waiting task from its thread."""

    def on_done(value: str | None, error: Exception | None) -> None:
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(value)

    return on_done
