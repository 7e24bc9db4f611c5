"""The `get_popular_words` of the asyncio blog post (shared/SEED.txt), done right.

The post's version awaits a slow I/O call and then counts words on the loop
thread: while it counts, nothing else in the service runs. Here the slow fetch
is a blocking call (as a legacy driver would make) sent to a thread with
`bridge.to_thread`, and the CPU-bound histogram runs in a process, its future
awaited through `bridge.wrap_future`. A
heartbeat task ticks every 10 ms the whole time and reports how late it ever
was: that number is what your other requests would have felt.

    python examples/popular_words.py [--backend asyncio|trio] [--words 2000000] [--naive]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import random
import time
from collections import Counter

import anyio

import bridge

VOCABULARY = (
    "the and to of a in is it you that he was for on are with as I his they be at one have "
    "this from or had by hot word but what some we can out other were all there when up use "
    "your how said an each she which do their time if will way about many then them write "
    "would like so these her long make thing see him two has look more day could go come did "
    "number sound no most people my over know water than call first who may down side been"
).split()


_FORK = multiprocessing.get_context("fork")
STOOD_STILL_MS = 250.0


def slow_function_that_waits_for_io(words: int) -> str:
    """A blocking fetch, like `requests.get` or a driver's `execute`: 300 ms of waiting."""
    time.sleep(0.3)
    rng = random.Random(42)
    return " ".join(rng.choices(VOCABULARY, k=words))


def histogram(data: str, words_to_ignore: set[str], histogram_size: int) -> dict[str, int]:
    """CPU-bound: seconds of pure Python on a large text. Never on the loop thread."""
    counts = Counter(word for word in data.split() if word not in words_to_ignore)
    return dict(counts.most_common(histogram_size))


async def get_popular_words(
    words_to_ignore: set[str], histogram_size: int, words: int
) -> dict[str, int]:
    data = await bridge.to_thread(slow_function_that_waits_for_io, words)
    # CPU-bound work in a thread would still hold the GIL for slices of 5 ms and
    # make the loop late; in a process it runs beside the loop, and its future is
    # awaited without a thread through bridge.wrap_future.
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=_FORK) as pool:
        job = pool.submit(histogram, data, words_to_ignore, histogram_size)
        return await bridge.wrap_future(job)


async def get_popular_words_naive(
    words_to_ignore: set[str], histogram_size: int, words: int
) -> dict[str, int]:
    """The blog post's way, for comparison: both steps on the loop thread."""
    data = slow_function_that_waits_for_io(words)  # blocks the loop
    return histogram(data, words_to_ignore, histogram_size)  # and so does this


async def heartbeat(interval: float, lateness: list[float], stop: anyio.Event) -> None:
    ticks = 0
    while not stop.is_set():
        expected = time.perf_counter() + interval
        await anyio.sleep(interval)
        lateness.append(max(0.0, time.perf_counter() - expected))
        ticks += 1
        if ticks % 25 == 0:
            print(f"  heartbeat: {ticks} ticks, the loop is running", flush=True)


async def main(words: int, naive: bool) -> None:
    lateness: list[float] = []
    stop = anyio.Event()
    started = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(heartbeat, 0.01, lateness, stop)
        await anyio.sleep(0.05)  # let the heartbeat get going
        fetch = get_popular_words_naive if naive else get_popular_words
        popular = await fetch({"the", "and", "to"}, 5, words)
        stop.set()
    elapsed = time.perf_counter() - started
    print(f"\nmost popular words in {words:,} words: {popular}")
    worst = max(lateness, default=0) * 1000
    print(
        f"took {elapsed:.2f} s; {len(lateness)} heartbeats, worst lateness {worst:.1f} ms"
    )
    # The fetch alone waits 300 ms: a loop that stood still through it is that late.
    if worst >= STOOD_STILL_MS:
        print(f"the loop stood still for {worst:.0f} ms: every other request would have waited")
    else:
        print("the loop kept running: the fetch ran in a thread, the histogram in a process")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("--words", type=int, default=2_000_000)
    parser.add_argument("--naive", action="store_true", help="run both steps on the loop")
    args = parser.parse_args()
    bridge.run(main, args.words, args.naive, backend=args.backend)
