"""Bootstrap for ``blender -b --python tools/blender_entry.py -- COMMAND ARGS``.

Blender runs this file as a script; it makes the checkout's ``pose_addon`` importable (this file is not part
of the extension, so it may touch ``sys.path``) and hands the arguments after ``--`` to the extension's
headless entry point, :func:`pose_addon.headless.main`.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pose_addon import headless  # noqa: E402

argv = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
sys.exit(headless.main(argv))
