"""Stand-in for ``blender --background``: runs Blender-side scripts with the ``bpy`` module.

Accepts the subset of Blender's command line that headless jobs and tests use::

    python tools/blender_launcher.py [-b|--background] [--factory-startup] [--python FILE]...
        [--python-expr EXPR]... [--python-exit-code N] [-- ARGS...]

As in Blender, ``sys.argv`` inside a script is the whole command line (scripts read what follows ``--``);
an uncaught exception in a script exits with ``--python-exit-code`` when given, else the run goes on and the
process exits 0; ``sys.exit(n)`` in a script exits with ``n``. Where a real Blender is installed, use it instead:
every script run through this launcher also runs under ``blender -b``.
"""
from __future__ import annotations

import runpy
import sys
import traceback


def _parse(argv: list[str]) -> tuple[list[tuple[str, str]], int | None]:
    actions: list[tuple[str, str]] = []
    exit_code = None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            break
        if a in ("-b", "--background", "--factory-startup", "-noaudio", "--noaudio"):
            pass
        elif a in ("-P", "--python"):
            actions.append(("file", argv[i + 1]))
            i += 1
        elif a == "--python-expr":
            actions.append(("expr", argv[i + 1]))
            i += 1
        elif a == "--python-exit-code":
            exit_code = int(argv[i + 1])
            i += 1
        else:
            sys.stderr.write(f"blender_launcher: unsupported argument {a!r}\n")
            sys.exit(2)
        i += 1
    return actions, exit_code


def main() -> None:
    argv = sys.argv[1:]
    actions, exit_code = _parse(argv)
    import bpy  # noqa: F401  (import first, as Blender has it loaded before any script)

    sys.argv = ["blender", *argv]
    for kind, what in actions:
        try:
            if kind == "file":
                runpy.run_path(what, run_name="__main__")
            else:
                exec(compile(what, "<string>", "exec"), {"__name__": "__main__"})
        except SystemExit:
            raise
        except BaseException:
            traceback.print_exc()
            if exit_code is not None:
                sys.stdout.flush()
                sys.stderr.flush()
                sys.exit(exit_code)
    sys.exit(0)


if __name__ == "__main__":
    main()
