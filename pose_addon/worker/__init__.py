"""The extension's side of the pose worker: framing (:mod:`.protocol`), the process (:mod:`.process`), a
non-blocking connection (:mod:`.connection`) and the supervisor tying them together (:mod:`.supervisor`).

Standard library only and no ``bpy``: Blender-facing parts (timer, operators, panel) live in ``ops_worker.py``.
"""
