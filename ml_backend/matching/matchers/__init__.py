"""Pair matchers as plugins: the module ``<name>.py`` of this package is the matcher ``<name>``.

A plugin module has ``default_conf`` (its parameters, ``name`` included) and ``load(conf)`` returning a matcher
with either ``match(q: Features, r: Features) -> [K, 2]`` index pairs (``dense = False``) or, for detector-free
matchers, ``match_images(gray_q, gray_r) -> (points_q [K, 2], points_r [K, 2])`` (``dense = True``). Modules are
imported only when used. Adding a matcher: one module here, its test, and a preset in :mod:`..presets` naming it.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Optional

__all__ = ["names", "plugin", "merge_conf"]


def names() -> list[str]:
    """The pair matchers this package holds (its public modules)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def plugin(name: str) -> ModuleType:
    """The module of matcher ``name``; ValueError naming the known ones for another name."""
    if name not in names():
        raise ValueError(f"unknown pair matcher {name!r}; known: {', '.join(names())}")
    return importlib.import_module(f".{name}", __name__)


def merge_conf(conf: Optional[dict]) -> dict:
    """Matcher ``conf["name"]``'s ``default_conf`` updated with ``conf``; unknown keys are an error."""
    conf = dict(conf or {})
    defaults = plugin(conf.get("name", "nn")).default_conf
    unknown = set(conf) - set(defaults)
    if unknown:
        raise ValueError(f"unknown {defaults['name']} matcher options {sorted(unknown)}; known: {sorted(defaults)}")
    return {**defaults, **conf}
