"""`python -m bridge watch -- COMMAND...`: run a program and rank what blocked its event loops.

The program runs in a child process, unchanged: a generated `sitecustomize.py`
on its PYTHONPATH (which chains to any `sitecustomize` it shadows) attaches a
`LoopWatchdog` to every asyncio, uvloop and trio loop the program starts and
turns on warn-only strict mode. Each process writes its findings as JSON into
a private directory; when the program ends (normally, on Ctrl-C, or on a
SIGTERM sent to `bridge watch`, which forwards it) the parent merges them and
prints the blocking sites ranked by total blocked time.

Only the program's loops count: a loop started by bridge's test servers (an
in-process `CQLServer`) is not watched, a block with none of the program's code
above the loop is marked as library code, and a loop starved of the CPU while
it waits for I/O is not blocked, so one program gives one report run after run.

    python -m bridge watch -- app.py --port 8000
    python -m bridge watch --threshold 0.02 -- -m myservice
    bridge watch --report blocking.json -- uvicorn app:app
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from types import FrameType
from typing import Any

from bridge._lateness_histogram import LatenessHistogram

_SITECUSTOMIZE = '''\
"""Written by `bridge watch`: watch the event loops, then run any shadowed sitecustomize."""
import os as _os
import sys as _sys


def _bridge_watch():
    here = _os.path.dirname(_os.path.abspath(__file__))
    try:
        from bridge import _watch_child
    except ImportError:
        _sys.path.append({bridge_parent!r})
        try:
            from bridge import _watch_child
        except ImportError as exc:
            _sys.stderr.write(
                "bridge watch: cannot import bridge in %s (%s); this program is not watched. "
                "Install bridge in the environment that runs it.\\n" % (_sys.executable, exc)
            )
            _watch_child = None
    if _watch_child is not None:
        _watch_child.bootstrap()
    # Run the sitecustomize this one shadows, if any.
    import importlib.machinery
    import importlib.util
    others = [p for p in _sys.path if _os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", others)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_bridge_watch()
del _bridge_watch
'''


def _command(program: Sequence[str]) -> list[str]:
    """The child's argv: a script, `-m module`, or a console script / executable."""
    first = program[0]
    if first == "-m":
        if len(program) < 2:
            raise SystemExit("bridge watch: -m needs a module name")
        return [sys.executable, *program]
    if first.endswith(".py") or first.endswith(".pyz"):
        if not os.path.exists(first):
            raise SystemExit(f"bridge watch: no such script: {first}")
        return [sys.executable, *program]
    found = shutil.which(first)
    if found is None:
        raise SystemExit(
            f"bridge watch: cannot find {first!r}; give a script (app.py), -m module, "
            "or a command on PATH"
        )
    return [found, *program[1:]]


def _merge(directory: str) -> dict[str, Any]:
    sites: dict[tuple[str, int, str], dict[str, Any]] = {}
    calls: dict[tuple[str, str, int, str], dict[str, Any]] = {}
    processes = []
    threshold = None
    lateness = LatenessHistogram()
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".json"):
            continue
        try:
            with open(os.path.join(directory, name), encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            continue
        processes.append({"pid": data.get("pid"), "argv": data.get("argv")})
        threshold = data.get("threshold", threshold)
        lateness.merge(data.get("lateness", {}))
        for site in data.get("sites", []):
            key = (site["filename"], site["lineno"], site["function"])
            merged = sites.get(key)
            if merged is None:
                sites[key] = dict(site)
            else:
                merged["count"] += site["count"]
                merged["total"] += site["total"]
                merged["worst"] = max(merged["worst"], site["worst"])
        for call in data.get("strict", []):
            ckey = (call["call"], call["filename"], call["lineno"], call["function"])
            existing = calls.get(ckey)
            if existing is None:
                calls[ckey] = dict(call)
            else:
                existing["count"] += call["count"]
    return {
        "threshold": threshold,
        "processes": processes,
        "sites": sorted(sites.values(), key=lambda s: (s["total"], s["worst"]), reverse=True),
        "strict": sorted(calls.values(), key=lambda c: c["count"], reverse=True),
        "lateness": lateness.report(),
    }


def format_report(report: dict[str, Any], threshold: float) -> str:
    """The ranked table `bridge watch` prints."""
    sites = report["sites"]
    lines = []
    if not sites:
        lines.append(f"bridge watch: no event loop was blocked longer than {threshold} s.")
    else:
        lines.append(
            f"bridge watch: {len(sites)} call site(s) blocked the event loop "
            f"longer than {threshold} s, worst total first:"
        )
        lines.append(f"{'rank':>4}  {'count':>5}  {'total s':>8}  {'worst s':>8}  where")
        for rank, site in enumerate(sites, 1):
            where = f"{site['filename']}:{site['lineno']} in {site['function']}()"
            if site.get("library"):
                where += "  [library code: no line of yours on the loop thread's stack]"
            lines.append(
                f"{rank:>4}  {site['count']:>5}  {site['total']:>8.3f}  {site['worst']:>8.3f}  "
                f"{where}"
            )
            if site.get("line"):
                lines.append(f"{'':>33}{site['line']}")
    lateness = report.get("lateness") or {}
    if lateness.get("count"):
        ms = {k: lateness[k] * 1000 for k in ("p50", "p90", "p99", "max")}
        lines.append(
            f"loop lateness ({lateness['count']} watchdog pings): p50 {ms['p50']:.1f} ms, "
            f"p90 {ms['p90']:.1f} ms, p99 {ms['p99']:.1f} ms, max {ms['max']:.1f} ms"
        )
    calls = report["strict"]
    if calls:
        lines.append("")
        lines.append("known blocking calls made on an event loop thread (strict mode, warn-only):")
        lines.append(f"{'count':>5}  {'call':<40}  where")
        for call in calls:
            where = f"{call['filename']}:{call['lineno']} in {call['function']}()"
            lines.append(f"{call['count']:>5}  {call['call'] + '()':<40}  {where}")
    if sites or calls:
        lines.append("")
        lines.append(
            "Move these calls off the loop (await bridge.to_thread(...), an async client), "
            "then run again."
        )
    return "\n".join(lines)


def watch(program: Sequence[str], *, threshold: float, report: str | None, strict: bool) -> int:
    """Run `program` watched; print the ranked report; return its exit status."""
    command = _command(program)
    bridge_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory(prefix="bridge-watch-") as workdir:
        boot = os.path.join(workdir, "boot")
        results = os.path.join(workdir, "results")
        os.mkdir(boot)
        os.mkdir(results)
        with open(os.path.join(boot, "sitecustomize.py"), "w", encoding="utf-8") as f:
            f.write(_SITECUSTOMIZE.format(bridge_parent=bridge_parent))
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (boot, os.environ.get("PYTHONPATH", "")) if p
        )
        env["BRIDGE_WATCH_DIR"] = results
        env["BRIDGE_WATCH_THRESHOLD"] = repr(threshold)
        env["BRIDGE_WATCH_STRICT"] = "1" if strict else "0"
        child = subprocess.Popen(command, env=env)

        def forward(signum: int, frame: FrameType | None) -> None:
            if child.poll() is None:
                child.send_signal(signum)

        # Ctrl-C reaches the child from the terminal already (same process
        # group); the parent just waits for it to finish and then reports.
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        previous_term = signal.signal(signal.SIGTERM, forward)
        try:
            status = child.wait()
        finally:
            signal.signal(signal.SIGINT, previous_int)
            signal.signal(signal.SIGTERM, previous_term)
        merged = _merge(results)
    merged["threshold"] = threshold
    merged["command"] = command
    merged["returncode"] = status
    print(format_report(merged, threshold), file=sys.stderr, flush=True)
    if report:
        with open(report, "w", encoding="utf-8") as out:
            json.dump(merged, out, indent=1)
    return status if status >= 0 else 128 - status


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: `bridge watch ...` / `python -m bridge watch ...`."""
    parser = argparse.ArgumentParser(
        prog="bridge", description="Find what blocks your event loops."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    watch_parser = commands.add_parser(
        "watch",
        help="run a Python program and report, ranked, the lines that blocked its event loops",
        description="Run a Python program (app.py args, -m module args, or a console script "
        "such as uvicorn) with a LoopWatchdog on every event loop it starts and strict mode "
        "in warn-only mode; at exit print the blocking call sites ranked by total time.",
    )
    watch_parser.add_argument(
        "--threshold",
        type=float,
        default=0.05,
        metavar="S",
        help="report blocks longer than S seconds (default 0.05)",
    )
    watch_parser.add_argument(
        "--report", metavar="FILE", help="also write the merged report as JSON to FILE"
    )
    watch_parser.add_argument(
        "--no-strict",
        action="store_true",
        help="do not turn on warn-only strict mode in the program",
    )
    watch_parser.add_argument("program", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)
    program = list(args.program)
    if program and program[0] == "--":
        program = program[1:]
    if not program:
        parser.error("watch needs a program to run: bridge watch -- app.py [args]")
    if not args.threshold > 0:
        parser.error("--threshold must be a positive number of seconds")
    return watch(program, threshold=args.threshold, report=args.report, strict=not args.no_strict)


if __name__ == "__main__":
    sys.exit(main())
