"""The JSON-lines event stream of child processes (the Blender headless entry, the YOLO process, worker jobs):
one JSON object per stdout line with an ``event`` key; anything else a child prints is ignored."""
from __future__ import annotations

import json
from typing import Iterable, Iterator

__all__ = ["json_events"]


def json_events(lines: Iterable[str]) -> Iterator[dict]:
    """The ``{"event": ...}`` objects among ``lines`` (library chatter and malformed lines are skipped)."""
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if isinstance(ev, dict) and "event" in ev:
            yield ev
