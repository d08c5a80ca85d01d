"""The one progress channel of the worker's long steps (rendering, databases, training, localization).

A step reports through :func:`progress_bar` (tqdm's signature: an iterable or ``total``, ``desc``, ``update``,
``set_postfix_str``) or, for steps that are not loops, :func:`report`. Where they go depends on the process:

* by default bars are tqdm bars on stderr and :func:`report` is silent;
* a job process (:mod:`ml_backend.service.job_runner`) installs a sink with :func:`set_sink`; every bar and report
  then becomes a ``{"event": "progress", "progress", "stage", "message"}`` line for the worker, whatever module it
  comes from and whether or not the caller asked for a terminal bar.

Child processes report the same events on their stdout (:mod:`ml_backend.child_process` forwards them here).
"""
from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any, Optional, Protocol

from tqdm import tqdm

__all__ = ["Sink", "set_sink", "get_sink", "report", "progress_bar", "stage_reporter", "write"]


class Sink(Protocol):
    """Receives progress: ``fraction`` in [0, 1] or None (unknown), the step's name, a short message; ``force``
    asks to pass it on even when reports come faster than the sink forwards them."""

    def __call__(self, fraction: Optional[float], stage: str, message: str = "", force: bool = False) -> None: ...


_sink: Optional[Sink] = None
_lock = threading.Lock()


def set_sink(sink: Optional[Sink]) -> None:
    """Send every later bar and report of this process to ``sink`` (None: back to terminal bars)."""
    global _sink
    with _lock:
        _sink = sink


def get_sink() -> Optional[Sink]:
    """The installed sink, or None."""
    return _sink


def report(fraction: Optional[float], stage: str, message: str = "", force: bool = False) -> None:
    """Report a step's progress to the sink (nothing without one)."""
    sink = _sink
    if sink is not None:
        sink(fraction, stage, message, force)


class _SinkBar:
    """A tqdm-shaped bar that reports to the sink instead of drawing."""

    def __init__(self, sink: Sink, iterable: Optional[Iterable] = None, desc: Optional[str] = None,
                 total: Optional[float] = None, initial: int = 0):
        self._sink = sink
        self.iterable = iterable
        self.desc = desc or "working"
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable) + initial  # type: ignore[arg-type]
        self.total = total
        self.n: float = initial
        self.postfix = ""
        self._emit(force=True)

    def _emit(self, force: bool = False) -> None:
        frac = (self.n / self.total) if self.total else None
        msg = f"{self.n}/{self.total}" if self.total else f"{self.n}"
        self._sink(frac, self.desc, msg + (f" {self.postfix}" if self.postfix else ""), force)

    def __iter__(self):
        assert self.iterable is not None, "progress_bar() without an iterable cannot be iterated"
        for x in self.iterable:
            yield x
            self.n += 1
            self._emit(force=self.n == self.total)

    def update(self, k: float = 1) -> None:
        self.n += k
        self._emit()

    def refresh(self) -> None:
        self._emit()

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = s

    def set_postfix(self, ordered_dict: Optional[dict] = None, refresh: bool = True, **kw: Any) -> None:
        items = {**(ordered_dict or {}), **kw}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def close(self) -> None:
        self._emit(force=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def progress_bar(iterable: Optional[Iterable] = None, desc: Optional[str] = None, total: Optional[float] = None,
                 disable: bool = False, initial: int = 0, **kw: Any) -> Any:
    """A progress bar over ``iterable`` (or ``total`` steps advanced with ``update``): a tqdm bar (``disable``
    hides it, other keywords go to tqdm), or a bar reporting to the sink when one is set (``disable`` ignored)."""
    sink = _sink
    if sink is not None:
        return _SinkBar(sink, iterable, desc, total, initial)
    return tqdm(iterable, desc=desc, total=total, disable=disable, initial=initial, **kw)


def write(message: str) -> None:
    """A line of text above the bars on stderr (a terminal or a job's log), without breaking them."""
    tqdm.write(message, file=sys.stderr)


def stage_reporter(stage: str) -> Callable[[Optional[float], str], None]:
    """``on_progress(fraction, message)`` for steps that take a callback: reports under ``stage``."""

    def on_progress(fraction: Optional[float], message: str = "") -> None:
        report(fraction, stage, message)

    return on_progress
