"""Which frame of a stack is the user's: the line a blocking report should point at.

A stack captured while the loop is blocked ends deep inside a driver
(`socket.recv` under `urllib3` under `requests`); the line worth printing is the
last one in the user's own code, the `requests.get(...)` that started it. Code
in the standard library, in site-packages and in bridge itself is "library".
"""

from __future__ import annotations

import os
import sys
import sysconfig
import traceback
from dataclasses import dataclass
from types import FrameType


def _library_roots() -> tuple[str, ...]:
    roots: set[str] = set()
    # "scripts": the console-script wrappers pip writes (bin/uvicorn, bin/pytest).
    for key in ("stdlib", "platstdlib", "purelib", "platlib", "scripts"):
        path = sysconfig.get_paths().get(key)
        if path:
            roots.add(os.path.realpath(path))
    for attr in ("base_prefix", "prefix", "exec_prefix", "base_exec_prefix"):
        prefix = getattr(sys, attr, "")
        if prefix:
            lib = os.path.join(prefix, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}")
            roots.add(os.path.realpath(lib))
    roots.add(os.path.realpath(os.path.dirname(os.path.abspath(__file__))))
    return tuple(sorted(root.rstrip(os.sep) + os.sep for root in roots))


_LIBRARY_ROOTS = _library_roots()
_verdicts: dict[str, bool] = {}


def is_library_file(filename: str) -> bool:
    """True for the stdlib, site-packages, bridge itself and synthetic (`<frozen>`) files."""
    verdict = _verdicts.get(filename)
    if verdict is None:
        if filename.startswith("<"):
            verdict = True
        else:
            real = os.path.realpath(filename)
            verdict = real.startswith(_LIBRARY_ROOTS) or (
                f"{os.sep}site-packages{os.sep}" in real or f"{os.sep}dist-packages{os.sep}" in real
            )
        _verdicts[filename] = verdict
    return verdict


@dataclass(frozen=True)
class CallSite:
    """One line of code: where a blocking call was made."""

    filename: str
    lineno: int
    function: str
    line: str
    #: True when no frame of the user's code was on the stack: the line is a library's.
    library: bool = False

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno} in {self.function}()"

    def to_json(self) -> dict[str, object]:
        return {
            "filename": self.filename,
            "lineno": self.lineno,
            "function": self.function,
            "line": self.line,
            "library": self.library,
        }


def extract_stack(frame: FrameType | None, limit: int = 64) -> traceback.StackSummary:
    """The stack ending at `frame`, outermost first, with source lines looked up."""
    inner_first = traceback.StackSummary.extract(
        traceback.walk_stack(frame), limit=limit, lookup_lines=True
    )
    return traceback.StackSummary.from_list(list(reversed(inner_first)))


def user_site(stack: traceback.StackSummary | list[traceback.FrameSummary]) -> CallSite:
    """The innermost frame in user code.

    If the whole stack is library code (a library's own thread or loop), the
    innermost frame, marked `library=True`: a library line is never passed
    off as the user's.
    """
    for summary in reversed(stack):
        if not is_library_file(summary.filename):
            return _site(summary, library=False)
    if not stack:
        return CallSite("<unknown>", 0, "<unknown>", "", library=True)
    return _site(stack[-1], library=True)


def _site(summary: traceback.FrameSummary, *, library: bool) -> CallSite:
    line = (summary.line or "").strip()
    return CallSite(summary.filename, summary.lineno or 0, summary.name, line, library)
