"""The Method menu of the Estimate panel, built from the worker's ``methods.list`` answer (no ``bpy`` here).

The worker is the one source of the method names: once it is connected the menu lists every method it offers
for photos, matching methods first. While no worker runs the menu keeps the last list a worker gave (or, before
any answered, a short fallback list), each entry saying that the worker is not running. Each entry keeps a
number derived from its name, so a choice stored in a .blend file names the same method whichever list is shown.
"""
import zlib

__all__ = ["FALLBACK_METHODS", "method_items", "method_number"]

#: shown, marked as such, while no worker has answered ``methods.list``
FALLBACK_METHODS = ("sift", "aliked+lightglue", "xfeat+lighterglue", "ensemble", "regression", "regression+refine",
                    "keypoints", "retrieval_nn")

_KIND_LABELS = {"matching": "Matching"}


def method_number(name):
    """The menu number of method ``name`` (stable: derived from the name)."""
    return zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF


def method_items(methods, running=True):
    """EnumProperty items ``(identifier, label, description, number)`` of a worker's method list (the
    ``methods`` of a ``methods.list`` reply; None: :data:`FALLBACK_METHODS`); ``running=False`` marks each
    entry as known while the worker is not running."""
    if methods is None:
        methods = [{"name": n} for n in FALLBACK_METHODS]
        running = False
    usable = [m for m in methods if isinstance(m, dict) and isinstance(m.get("name"), str) and m.get("photos", True)]
    usable.sort(key=lambda m: m.get("kind") != "matching")  # stable: the worker's order within each kind
    items = []
    for m in usable:
        name, kind = m["name"], m.get("kind", "")
        label = "%s: %s" % (_KIND_LABELS[kind], name) if kind in _KIND_LABELS else name
        what = "solves the focal length too when asked" if m.get("estimate_focal") else "uses the given intrinsics"
        desc = "%s (%s method, %s)" % (name, kind or "other", what) if running else \
            "%s (worker not running: start it to list every method it offers)" % name
        items.append((name, label, desc, method_number(name)))
    return items
