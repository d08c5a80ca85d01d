"""Plugin packages (extractors, matchers): every public module of the package is the plugin of its name."""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable, Sequence
from types import ModuleType

__all__ = ["plugin_names", "import_plugin"]


def plugin_names(path: Iterable[str], exclude: Sequence[str] = ()) -> list[str]:
    """The plugins of the package at ``path`` (its ``__path__``): its modules, but private ones and ``exclude``."""
    return sorted(m.name for m in pkgutil.iter_modules(list(path))
                  if not m.name.startswith("_") and m.name not in exclude)


def import_plugin(package: str, path: Iterable[str], name: str, kind: str, exclude: Sequence[str] = ()) -> ModuleType:
    """The module ``package.name``; ValueError naming the known ``kind`` plugins for an unknown name."""
    known = plugin_names(path, exclude)
    if name not in known:
        raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(known)}")
    return importlib.import_module(f"{package}.{name}")
