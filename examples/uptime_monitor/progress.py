"""The terminal view: a compact table redrawn in place on a TTY, one line per round otherwise.

A monitor that prints a line per check buries what matters; this shows the
state of every site at a glance and keeps logs (CI, `| tee`) short.
"""

from __future__ import annotations

import shutil
import sys
from typing import TextIO

import anyio

from bridge.watchdog import LoopWatchdog
from examples.uptime_monitor.monitor import Monitor, SiteState

__all__ = ["Progress"]

_BARS = "▁▂▃▄▅▆▇█"
_GREEN, _RED, _DIM, _RESET = "\x1b[32m", "\x1b[31m", "\x1b[2m", "\x1b[0m"
_REDRAW_EVERY = 0.5  # seconds between redraws on a TTY


def sparkline(latencies: list[float | None]) -> str:
    """Latencies as bars, scaled to their maximum; a failed check is a cross."""
    known = [x for x in latencies if x is not None]
    top = max(known, default=1.0) or 1.0
    return "".join(
        "✕" if x is None else _BARS[min(len(_BARS) - 1, int(x / top * (len(_BARS) - 1) + 0.5))]
        for x in latencies
    )


class Progress:
    """Shows `monitor`'s state on `out` until cancelled; `url` is the status page."""

    def __init__(
        self,
        monitor: Monitor,
        url: str,
        *,
        out: TextIO | None = None,
        watchdog: LoopWatchdog | None = None,
        tty: bool | None = None,
    ) -> None:
        self.monitor = monitor
        self.url = url
        self.out = out if out is not None else sys.stdout
        self.watchdog = watchdog
        self.tty = self.out.isatty() if tty is None else tty
        self._drawn = 0  # lines of the table on screen, to move back up over
        self._rounds = 0
        self._last_checks = 0

    async def run(self) -> None:
        """Redraw (TTY) or print a summary line per interval (anything else), until cancelled."""
        period = _REDRAW_EVERY if self.tty else self.monitor.interval
        while True:
            await anyio.sleep(period)
            self.show()

    def show(self) -> None:
        if self.tty:
            self._redraw()
        else:
            self._rounds += 1
            print(self.summary_line(), file=self.out, flush=True)

    def _blocked(self) -> str:
        if self.watchdog is None:
            return ""
        count = self.watchdog.statistics.count
        return f" · loop blocked {count} times" if count else " · loop never blocked"

    def summary_line(self) -> str:
        """One line: how many sites are up, checks so far, and which sites are down, why."""
        m = self.monitor
        states = list(m.states.values())
        up = sum(1 for s in states if s.up)
        new = m.checks - self._last_checks
        self._last_checks = m.checks
        down = [f"{s.site.name} ({s.last.error})" for s in states if s.last and not s.last.ok]
        line = (
            f"round {self._rounds}: {up}/{len(states)} up · {m.checks} checks (+{new}) · "
            f"stored {m.stored}"
        )
        if m.store_errors:
            line += f" · store errors {m.store_errors}"
        line += self._blocked()
        if down:
            line += " · down: " + ", ".join(down)
        return line

    def _row(self, state: SiteState, width: int) -> str:
        last = state.last
        if last is None:
            mark = f"{_DIM}  …  {_RESET}"
        elif last.ok:
            mark = f"{_GREEN}  up {_RESET}"
        else:
            mark = f"{_RED}DOWN {_RESET}"
        uptime = "    —  " if state.uptime_percent is None else f"{state.uptime_percent:6.2f}%"
        latency = "      —"
        if last is not None and last.latency_ms is not None:
            latency = f"{last.latency_ms:5.0f} ms"
        error = (last.error or "") if last else ""
        row = (
            f"{state.site.name[:18]:<18} {mark} {uptime} {latency}  "
            f"{sparkline(list(state.recent)):<20}  {error}"
        )
        return row[: width + len(mark) - 5]  # the colour codes take no columns

    def _redraw(self) -> None:
        columns, lines = shutil.get_terminal_size((100, 30))
        m = self.monitor
        states = sorted(m.states.values(), key=lambda s: (s.up is not False, s.site.name))
        room = max(3, lines - 4)
        shown, hidden = states[:room], states[room:]
        up = sum(1 for s in m.states.values() if s.up)
        header = (
            f"{self.url}  {up}/{len(states)} up · {m.checks} checks · stored {m.stored}"
            + (f" · store errors {m.store_errors}" if m.store_errors else "")
            + self._blocked()
        )
        table = [header[:columns], f"{'SITE':<18} STATE  UPTIME  LATENCY  LAST CHECKS"[:columns]]
        table += [self._row(s, columns) for s in shown]
        if hidden:
            table.append(f"… and {len(hidden)} more")
        moves = f"\x1b[{self._drawn}F" if self._drawn else ""
        self.out.write(moves + "".join(f"\x1b[2K{line}\n" for line in table) + "\x1b[J")
        self.out.flush()
        self._drawn = len(table)
