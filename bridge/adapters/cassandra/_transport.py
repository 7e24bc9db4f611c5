"""The event loop as the driver's reactor: connections whose sockets the loop reads and writes.

The driver's default reactor is a thread (libev): every response is decoded
there and handed over to the loop, and the two threads fight for the GIL in
switch-interval slices, which makes the loop late by tens of milliseconds
under load. Here the loop that made the `AsyncCluster` owns the sockets:

- Reads: a readable event reads what the kernel has (64 KiB at most) into a
  buffer, then decodes whole frames for a bounded time (`TURN_BUDGET`,
  adapted) and at most `FRAMES_PER_SLICE` of them (each wakes a task), and
  leaves the rest for the next loop turn. Bounding the *work* (not the bytes
  read) is what keeps the loop on time: a big page costs one frame, a burst of
  tiny results is cut into slices, and the tasks those frames wake run before
  the next slice. A response decoded on the loop completes its awaiting task
  directly (the driver's callback runs here), with no cross-thread hand-off.
  Under protocol v5 the segments are checked and unpacked first, and their
  frames go through the same slices (`_segments.py`): a segment of a hundred
  small answers is not one long turn.
- Writes: a message pushed on the loop is queued and the queue is sent with one
  `send` per loop turn (many requests, one syscall; under v5, packed into as
  few segments as fit). Pushed from another
  thread (the control connection, the driver's executor, heartbeats, sync code
  using `session.session`), it reaches the loop through bridge's batching
  waker: one thread-safe wake-up per batch of calls, never one per message.
- Timers (request timeouts, speculative executions, reconnection): one heap
  per reactor and one loop timer armed for its earliest entry. The driver
  cancels timers from any thread, so a cancel only sets a flag.
- The loop's end (asyncio.run returning, the trio run ending) closes every
  connection: requests still waiting fail with `ConnectionShutdown`, sync
  callers are not left hanging, and the cluster is shut down in a thread so
  no driver thread or socket outlives it.

Connecting (DNS, TCP connect, TLS handshake) stays where the driver does it,
on its own threads; only a connected, non-blocking socket is handed to the loop.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import ssl
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar, Final

from cassandra.connection import (  # type: ignore[import-untyped]
    Connection,
    ConnectionException,
    ConnectionShutdown,
    _Frame,
)

from ._kit import Waker
from ._segments import FRAMES_AS_IS, SegmentReader, pack
from ._timers import ReleasingTimer

__all__ = ["TURN_BUDGET", "LoopConnection", "Reactor", "bind_connection_class"]

log = logging.getLogger("bridge.adapters.cassandra")

#: Seconds of frame decoding per loop turn before the loop gets its turn back,
#: to start with. Adapted per connection between MIN_BUDGET and MAX_BUDGET, like
#: the waker's drain: when a backlog makes us decode turn after turn, the time
#: between two slices is mostly the tasks the last slice woke running; a turn
#: longer than TURN_TARGET halves the slice, a shorter one grows it a little.
TURN_BUDGET: Final = 0.0005
TURN_TARGET: Final = 0.001
MIN_BUDGET: Final = 0.0001
MAX_BUDGET: Final = 0.002
RECV_SIZE: Final = 65536
#: Frames decoded per slice at most. Each answer wakes a task that runs in the
#: next turn (on asyncio ~30 µs to build and queue its next request), so the
#: time budget alone let one turn run ~120 woken tasks: 3.7 ms, heartbeat p99
#: 4.1-4.4 ms with 120 busy tasks. Eight per slice: p99 1.6 ms on asyncio,
#: 0.5 ms uvloop, 1.1 ms trio, for ~10% of the rate (bench.cassandra, 18:40).
FRAMES_PER_SLICE: Final = 8

_get_ident = threading.get_ident
_perf_counter = time.perf_counter
_HEADER_V3 = struct.Struct(">BBhBi")  # version, flags, stream, opcode, body length
_HEADER_V1 = struct.Struct(">BBbBi")
_WOULD_BLOCK = (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError)


class Reactor:
    """One loop's side of the driver: the loop, its timers, and calls queued from other threads.

    Loop-specific subclasses say how to watch a socket and arm a timer;
    everything else (framing, batching, timers, the loop's end) is shared.
    """

    def __init__(self, waker: Waker, on_loop_end: Callable[[], None]) -> None:
        self.waker = waker
        self.thread_id = _get_ident()
        self.closed = False
        self.connections: set[LoopConnection] = set()
        self._on_loop_end = on_loop_end
        # Calls from other threads, run on the loop in order, one wake-up per batch.
        self._calls: deque[Callable[[], None]] = deque()
        self._calls_pending = False
        # Timers: (end, seq, Timer) heap on the loop; new ones queued from any thread.
        self._timers: list[tuple[float, int, Any]] = []
        self._new_timers: deque[Any] = deque()
        self._seq = itertools.count()
        self._armed_end = float("inf")
        self._arm_pending = False

    # -- running things on the loop -----------------------------------------

    def on_loop(self) -> bool:
        return _get_ident() == self.thread_id

    def call_from_thread(self, fn: Callable[[], None]) -> None:
        """Run `fn()` on the loop soon; safe from any thread; many calls, one wake-up."""
        if self.closed:
            raise ConnectionShutdown(_LOOP_GONE)
        self._calls.append(fn)
        if not self._calls_pending:
            # Losing this race costs one extra wake-up, never a lost call:
            # `complete` clears the flag before it empties the queue.
            self._calls_pending = True
            self.waker.deliver(self)
        if self.waker.closed:
            self._loop_gone()

    def complete(self) -> None:
        """On the loop (the waker's delivery): run the calls queued by other threads."""
        self._calls_pending = False
        calls = self._calls
        while calls:
            try:
                fn = calls.popleft()
            except IndexError:
                break
            try:
                fn()
            except Exception:
                log.exception("bridge cassandra reactor: a queued call failed")

    def fail_closed(self) -> None:
        """The waker's loop is gone with our calls still queued."""
        self._loop_gone()

    def call_soon(self, fn: Callable[[], None]) -> None:
        """On the loop thread: run `fn()` at the next loop turn."""
        raise NotImplementedError

    # -- sockets (loop thread only) -------------------------------------------

    def watch_read(self, conn: LoopConnection) -> None:
        raise NotImplementedError

    def watch_write(self, conn: LoopConnection, on: bool) -> None:
        raise NotImplementedError

    def unwatch(self, conn: LoopConnection) -> None:
        raise NotImplementedError

    # -- timers ---------------------------------------------------------------

    def add_timer(self, timer: Any) -> None:
        # A deque: appends from several threads need no lock, also without the GIL.
        self._new_timers.append(timer)
        if self.on_loop():
            self._arm()
        elif not self._arm_pending and not self.closed:
            # One queued arming serves every timer added before it runs.
            self._arm_pending = True
            self.call_from_thread(self._arm)

    def _arm(self) -> None:
        self._arm_pending = False
        heap, new = self._timers, self._new_timers
        while new:
            timer = new.popleft()
            heapq.heappush(heap, (timer.end, next(self._seq), timer))
        while heap and heap[0][2].canceled:
            heapq.heappop(heap)
        if heap and heap[0][0] < self._armed_end:
            self._armed_end = heap[0][0]
            self.arm_at(self._armed_end)

    def _fire(self) -> None:
        """The loop timer went off: run every due timer, then arm for the next one."""
        self._armed_end = float("inf")
        heap = self._timers
        now = time.time()
        while heap and (heap[0][0] <= now or heap[0][2].canceled):
            timer = heapq.heappop(heap)[2]
            try:
                timer.finish(now)
            except Exception:
                log.exception("bridge cassandra reactor: a driver timer callback failed")
        self._arm()

    def arm_at(self, wall_time: float) -> None:
        """Call `self._fire()` on the loop at `wall_time` (a `time.time()`), replacing the last."""
        raise NotImplementedError

    # -- the loop's end ---------------------------------------------------------

    def loop_ending(self) -> None:
        """On the loop, as it ends: close every connection, then let the cluster shut down."""
        if self.closed:
            return
        for conn in list(self.connections):
            conn._loop_ending()
        self._loop_gone()

    def _loop_gone(self) -> None:
        if self.closed:
            return
        self.closed = True
        for conn in list(self.connections):
            conn._loop_ending()
        self._calls.clear()
        self._on_loop_end()

    def close(self) -> None:
        """The cluster shut down: stop watching the loop's end."""
        self.closed = True


_LOOP_GONE = (
    "the event loop that owned this Cassandra connection has ended; an AsyncCluster's "
    "connections belong to the loop that connected it: create the AsyncCluster (or a new "
    "one) in the loop that uses it"
)


class LoopConnection(Connection):  # type: ignore[misc]
    """A driver `Connection` whose socket is read and written by the reactor's event loop."""

    _reactor: ClassVar[Reactor | None] = None
    is_closed: bool  # the driver's flags, set under its lock
    is_defunct: bool
    _segment_codec: Any = None  # the driver sets it when protocol v5 starts

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        Connection.__init__(self, *args, **kwargs)
        reactor = self._reactor
        if reactor is None or reactor.closed:
            raise ConnectionShutdown(_LOOP_GONE)
        if reactor.on_loop():
            # Connecting blocks (DNS, TCP, TLS); the driver connects on its own threads.
            raise ConnectionException(
                "a Cassandra connection was being opened on the event loop's thread, which would "
                "block it; connect through `await AsyncCluster.connect()`"
            )
        self._loop_reactor = reactor
        self._out: deque[bytes] = deque()
        self._flush_pending = False
        self._unsent: memoryview | None = None
        self._inbuf = bytearray()  # bytes off the wire
        # Protocol v5: segment payloads, i.e. frames, waiting to be decoded
        # (with v4 the wire carries bare frames and this stays empty).
        self._frames = bytearray()
        self._segments: SegmentReader | None = None
        self._decode_pending = False
        self._budget = TURN_BUDGET
        self._last_slice_end = 0.0
        self._watching = False
        self._connect_socket()
        self._socket.setblocking(False)
        reactor.connections.add(self)
        try:
            reactor.call_from_thread(self._start)
        except ConnectionShutdown:
            reactor.connections.discard(self)
            self._socket.close()
            raise
        self._send_options_message()

    @classmethod
    def initialize_reactor(cls) -> None:
        if cls._reactor is None or cls._reactor.closed:
            raise ConnectionShutdown(_LOOP_GONE)

    @classmethod
    def handle_fork(cls) -> None:
        cls._reactor = None  # the loop did not come along

    @classmethod
    def create_timer(cls, timeout: float, callback: Callable[[], None]) -> Any:
        timer = ReleasingTimer(timeout, callback)
        reactor = cls._reactor
        if reactor is not None:
            reactor.add_timer(timer)
        return timer

    # -- on the loop --------------------------------------------------------------

    def _start(self) -> None:
        if self.is_closed:
            return
        self._watching = True
        self._loop_reactor.watch_read(self)

    def _enable_checksumming(self) -> None:
        """Protocol v5 is on (on the loop, while the startup answer is decoded): from now on
        frames travel in segments. No request can be queued on this connection before its
        startup completes, so nothing already queued needs segments."""
        Connection._enable_checksumming(self)
        self._segments = SegmentReader(self._segment_codec, self.endpoint)
        if not self._segment_codec.compression:
            self._segment_codec = FRAMES_AS_IS  # `send_msg` queues bare frames; `_flush` packs

    def push(self, data: bytes) -> None:
        """Queue bytes for the socket; sent at the next loop turn with everything else queued."""
        self._out.append(data)
        if not self._flush_pending:
            self._flush_pending = True
            reactor = self._loop_reactor
            if reactor.on_loop():
                reactor.call_soon(self._flush)
            else:
                try:
                    reactor.call_from_thread(self._flush)
                except ConnectionShutdown as exc:
                    self.defunct(exc)

    def _flush(self) -> None:
        self._flush_pending = False
        if self._unsent is not None or self.is_closed:
            return  # a partial send is waiting for writability; it flushes the rest
        if self._out:
            self._send(memoryview(self._take_out()))

    def _take_out(self) -> bytes:
        """Everything queued, as the bytes to send: packed into segments under protocol v5."""
        out = self._out
        frames = [out.popleft() for _ in range(len(out))]  # other threads may append meanwhile
        if self._segment_codec is FRAMES_AS_IS:  # v5 without compression
            return pack(frames)
        return frames[0] if len(frames) == 1 else b"".join(frames)

    def _send(self, data: memoryview) -> None:
        try:
            sent = self._socket.send(data)
        except _WOULD_BLOCK:
            sent = 0
        except OSError as exc:
            self.defunct(exc)
            return
        if sent < len(data):
            if self._unsent is None:
                self._loop_reactor.watch_write(self, True)
            self._unsent = data[sent:]
        elif self._unsent is not None:
            self._unsent = None
            self._loop_reactor.watch_write(self, False)

    def _on_writable(self) -> None:
        unsent = self._unsent
        if unsent is None:
            return
        if self._out:
            unsent = memoryview(b"".join([bytes(unsent), self._take_out()]))
        self._send(unsent)

    def _on_readable(self) -> None:
        sock = self._socket
        try:
            data = sock.recv(RECV_SIZE)
            if isinstance(sock, ssl.SSLSocket):
                while sock.pending():  # decrypted bytes the fd no longer signals
                    data += sock.recv(RECV_SIZE)
        except _WOULD_BLOCK:
            return
        except OSError as exc:
            self.defunct(exc)
            return
        if not data:
            log.debug("Connection %s closed by server", self)
            self.close()
            return
        self._inbuf += data
        if not self._decode_pending:
            self._decode_slice(_perf_counter())

    def _decode(self) -> None:
        """A continuation: the backlog left by the last slice, one loop turn later."""
        self._decode_pending = False
        if self.is_closed:
            return
        start = _perf_counter()
        budget = self._budget
        if start - self._last_slice_end > TURN_TARGET:
            self._budget = max(MIN_BUDGET, budget / 2)
        elif budget < MAX_BUDGET:
            self._budget = min(MAX_BUDGET, budget * 1.25)
        self._decode_slice(start)

    def _decode_slice(self, start: float) -> None:
        """Process whole frames for at most the budget; the rest at the next turn."""
        segments = self._segments
        if segments is None:
            buf = self._inbuf  # bare frames (protocol v4 and earlier, and any v5 startup)
        else:
            buf = self._frames
            if self._inbuf:
                try:
                    segments.unpack(self._inbuf, buf)
                except ConnectionException as exc:
                    self.defunct(exc)
                    return
        pos = 0
        end_of_data = len(buf)
        deadline = start + self._budget
        process = self.process_msg
        over_budget = False
        frames_left = FRAMES_PER_SLICE
        while end_of_data - pos >= 8:
            version = buf[pos] & 0x7F
            if version >= 3:
                if end_of_data - pos < 9:
                    break
                _, flags, stream, opcode, length = _HEADER_V3.unpack_from(buf, pos)
                header_size = 9
            else:
                _, flags, stream, opcode, length = _HEADER_V1.unpack_from(buf, pos)
                header_size = 8
            if length < 0:
                self.defunct(ConnectionException(f"negative frame body length {length}"))
                return
            end = pos + header_size + length
            if end > end_of_data:
                break
            body = bytes(buf[pos + header_size : end])
            pos = end
            process(_Frame(version, flags, stream, opcode, header_size, end), body)
            if self.is_closed:
                return
            if self._segments is not segments:
                # That frame switched the connection to v5 segments: what follows
                # on the wire is segments, decoded from the next slice on.
                over_budget = True
                break
            frames_left -= 1
            if not frames_left or _perf_counter() > deadline:
                over_budget = True
                break
        if pos:
            del buf[:pos]
        if over_budget and (buf or self._inbuf):
            # More may be whole already: decode it at the next turn, after the
            # tasks these frames woke and the loop's timers have run.
            self._decode_pending = True
            self._last_slice_end = _perf_counter()
            self._loop_reactor.call_soon(self._decode)

    # -- closing ---------------------------------------------------------------------

    def close(self) -> None:
        with self.lock:
            if self.is_closed:
                return
            self.is_closed = True
        reactor = self._loop_reactor
        reactor.connections.discard(self)
        if reactor.on_loop() or reactor.closed:
            self._close_socket()
        else:
            try:
                reactor.call_from_thread(self._close_socket)
            except ConnectionShutdown:
                self._close_socket()
        if not self.is_defunct:
            self.error_all_requests(ConnectionShutdown(f"Connection to {self.endpoint} was closed"))
            self.connected_event.set()  # don't leave a connecting thread waiting

    def _close_socket(self) -> None:
        if self._watching:
            self._watching = False
            try:
                self._loop_reactor.unwatch(self)
            except Exception:  # the loop is already closed: nothing watches any more
                pass
        self._socket.close()

    def _loop_ending(self) -> None:
        """The loop is going away: fail what waits on this connection, close the socket."""
        self.defunct(ConnectionShutdown(_LOOP_GONE))


def bind_connection_class(reactor: Reactor) -> type[LoopConnection]:
    """A `LoopConnection` subclass bound to `reactor` (the driver's timers are class methods)."""
    return type("LoopConnection", (LoopConnection,), {"_reactor": reactor})


# -- asyncio and uvloop ----------------------------------------------------------------


class AsyncioReactor(Reactor):
    """asyncio/uvloop: `add_reader`/`add_writer` on the loop, one `call_at` timer."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, waker: Waker, on_loop_end: Callable[[], None]
    ) -> None:
        super().__init__(waker, on_loop_end)
        self.loop = loop
        self._timer_handle: asyncio.TimerHandle | None = None
        # A task that waits forever: asyncio.run (and anyio's runners) cancel
        # every task before closing the loop, which tells us the loop is ending.
        self._sentinel = loop.create_task(self._watch_loop_end())

    async def _watch_loop_end(self) -> None:
        try:
            await self.loop.create_future()
        finally:
            self.loop_ending()

    def call_soon(self, fn: Callable[[], None]) -> None:
        self.loop.call_soon(fn)

    def watch_read(self, conn: LoopConnection) -> None:
        self.loop.add_reader(conn._socket.fileno(), conn._on_readable)

    def watch_write(self, conn: LoopConnection, on: bool) -> None:
        if on:
            self.loop.add_writer(conn._socket.fileno(), conn._on_writable)
        else:
            self.loop.remove_writer(conn._socket.fileno())

    def unwatch(self, conn: LoopConnection) -> None:
        fd = conn._socket.fileno()
        if fd >= 0 and not self.loop.is_closed():
            self.loop.remove_reader(fd)
            self.loop.remove_writer(fd)

    def arm_at(self, wall_time: float) -> None:
        if self._timer_handle is not None:
            self._timer_handle.cancel()
        delay = max(0.0, wall_time - time.time())
        self._timer_handle = self.loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        self._timer_handle = None
        super()._fire()

    def close(self) -> None:
        super().close()
        if self._timer_handle is not None:
            self._timer_handle.cancel()
        if not self._sentinel.done():
            self._sentinel.cancel()


def asyncio_reactor(waker: Waker, on_loop_end: Callable[[], None]) -> Reactor:
    """A reactor for the running asyncio/uvloop loop (call on the loop thread)."""
    return AsyncioReactor(asyncio.get_running_loop(), waker, on_loop_end)
