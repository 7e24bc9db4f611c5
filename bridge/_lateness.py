"""How late a loop runs what it was asked to run: the quantity an adaptive limiter protects.

Threads that hold the GIL starve the loop as surely as a blocking call does,
and nothing inside a thread can see it. The loop can: each time a worker asks
the waker for a wake-up, the waker notes the time; when the loop runs the
drain, the difference is how long that wake-up waited — for the GIL, for the
rest of the loop's turn, for the selector. It costs one clock read per
wake-up (not per result), and it measures exactly what a timer or a socket
read would suffer, because a wake-up waits for the same things.
"""

from __future__ import annotations

import time

_perf_counter = time.perf_counter


class Lateness:
    """One loop's lateness samples, summarised per window for whoever reads them.

    Written on the loop thread (`ran`), read and reset from any thread
    (`take`): a race between the two can lose one sample, which a controller
    reading many per window does not notice; no lock on the loop's path.
    """

    __slots__ = ("asked", "samples", "worst")

    def __init__(self) -> None:
        self.asked = 0.0  # when the pending wake-up was requested (perf_counter)
        self.worst = 0.0  # the longest wait seen since the last `take`
        self.samples = 0  # wake-ups seen since the last `take`

    def ran(self, now: float) -> None:
        """On the loop: the wake-up requested at `asked` runs now."""
        late = now - self.asked
        if late > self.worst:
            self.worst = late
        self.samples += 1

    def take(self) -> tuple[float, int]:
        """The worst wait (seconds) and the number of wake-ups since the last call; resets both."""
        worst, samples = self.worst, self.samples
        self.worst = 0.0
        self.samples = 0
        return worst, samples
