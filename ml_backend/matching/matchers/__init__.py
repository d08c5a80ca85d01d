"""Pair matchers as plugins: the module ``<name>.py`` of this package is the matcher ``<name>``.

A plugin module has ``default_conf`` (its parameters, ``name`` included) and ``load(conf)`` returning a matcher
with either ``match(q: Features, r: Features) -> [K, 2]`` index pairs (``dense = False``) or, for detector-free
matchers, ``match_images(gray_q, gray_r) -> (points_q [K, 2], points_r [K, 2])`` (``dense = True``). Modules are
imported only when used. Adding a matcher: one module here, its test, and a preset in :mod:`..presets` naming it.
"""
from __future__ import annotations

from types import ModuleType
from typing import Optional

from ..plugins import import_plugin, plugin_names

__all__ = ["names", "plugin", "merge_conf"]


def names() -> list[str]:
    """The pair matchers this package holds (its public modules)."""
    return plugin_names(__path__)


def plugin(name: str) -> ModuleType:
    """The module of matcher ``name``; ValueError naming the known ones for another name."""
    return import_plugin(__name__, __path__, name, "pair matcher")


def merge_conf(conf: Optional[dict]) -> dict:
    """Matcher ``conf["name"]``'s ``default_conf`` updated with ``conf``; unknown keys are an error."""
    conf = dict(conf or {})
    defaults = plugin(conf.get("name", "nn")).default_conf
    unknown = set(conf) - set(defaults)
    if unknown:
        raise ValueError(f"unknown {defaults['name']} matcher options {sorted(unknown)}; known: {sorted(defaults)}")
    return {**defaults, **conf}
