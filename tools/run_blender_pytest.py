"""Run pytest inside Blender: ``blender -b --python tools/run_blender_pytest.py --python-exit-code 1 -- ARGS``.

The arguments after ``--`` go to :func:`pytest.main`; the process exits with pytest's exit code. Like
``blender_entry.py`` this bootstrap is not part of the extension, so it may put the checkout on ``sys.path``.
"""
import os
import sys

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, root)

import pytest  # noqa: E402

args = sys.argv[sys.argv.index("--") + 1:] if "--" in sys.argv else []
sys.exit(int(pytest.main(["-p", "no:cacheprovider", *args])))
