"""Run a function right after a module is imported, without importing it ourselves.

Strict mode patches `requests`, `urllib3`, `cassandra.cluster` and `sqlite3`,
and `bridge watch` hooks `uvloop` and `trio`; importing them up front would
cost every program the import time of drivers it may never use. A meta path
finder that wraps the found loader's `exec_module` patches them the moment
the program imports them.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
from collections.abc import Callable, Sequence
from types import ModuleType

_lock = threading.RLock()
_hooks: dict[str, list[Callable[[ModuleType], None]]] = {}


def when_imported(name: str, hook: Callable[[ModuleType], None]) -> None:
    """Call `hook(module)` now if `name` is imported, else right after it is."""
    with _lock:
        module = sys.modules.get(name)
        if module is None or getattr(module, "__spec__", None) is None or _initializing(module):
            _hooks.setdefault(name, []).append(hook)
            if not any(isinstance(f, _HookFinder) for f in sys.meta_path):
                sys.meta_path.insert(0, _HookFinder())
            return
    hook(module)


def _initializing(module: ModuleType) -> bool:
    spec = getattr(module, "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


def _run_hooks(name: str) -> None:
    with _lock:
        hooks = _hooks.pop(name, [])
    module = sys.modules.get(name)
    if module is not None:
        for hook in hooks:
            try:
                hook(module)
            except Exception:  # a broken hook must not break the program's import
                logging.getLogger("bridge").exception("import hook for %s failed", name)


class _HookFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: asks the other finders and wraps the loader they return."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _hooks:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        exec_module = getattr(loader, "exec_module", None)
        if loader is None or exec_module is None or isinstance(loader, type):
            return spec  # no per-module loader to wrap (built-in or frozen): no hook

        def exec_and_hook(module: ModuleType) -> None:
            exec_module(module)
            _run_hooks(fullname)

        try:
            loader.exec_module = exec_and_hook  # type: ignore[method-assign]
        except (AttributeError, TypeError):  # a loader that refuses attributes: no hook
            pass
        return spec
