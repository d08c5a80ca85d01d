"""Build the installable Blender extension zip with Blender's own extension-build code.

    python build.py [--out dist] [--repo-index]

Stages ``blender_manifest.toml`` and the contents of ``pose_addon/`` (never the environments, datasets or
caches) into one folder, then runs ``blender_ext.py build`` (the code behind ``blender --command extension
build``) and ``validate`` on the zip; ``--repo-index`` also writes a static repository listing
(``server-generate --html``) so a team can host the extension. ``blender_ext.py`` is found in, in order:
``$BLENDER_EXT_CLI``, the bpy wheel of ``.venv-blender``, or any importable ``bpy`` module.
"""
from __future__ import annotations

import argparse
import glob
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
PACKAGE = ROOT / "pose_addon"
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".*")


def find_blender_ext() -> Path:
    """Path of Blender's ``blender_ext.py`` CLI; raises FileNotFoundError saying where it looked."""
    import os

    env = os.environ.get("BLENDER_EXT_CLI")
    candidates = [Path(env)] if env else []
    candidates += [Path(p) for p in glob.glob(str(ROOT / ".venv-blender/lib/python3.*/site-packages/bpy/*"
                                                   "/scripts/addons_core/bl_pkg/cli/blender_ext.py"))]
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError("Blender's blender_ext.py not found: set BLENDER_EXT_CLI to "
                            "<blender>/<version>/scripts/addons_core/bl_pkg/cli/blender_ext.py or run ./dev.sh setup")


def stage(dest: Path) -> Path:
    """Copy the manifest and the extension package into ``dest`` (the extension root)."""
    shutil.copytree(PACKAGE, dest, ignore=IGNORE)
    shutil.copy2(ROOT / "blender_manifest.toml", dest / "blender_manifest.toml")
    return dest


def run_cli(cli: Path, *args: str) -> None:
    proc = subprocess.run([sys.executable, str(cli), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"blender_ext {args[0]} failed:\n{proc.stdout}{proc.stderr}")
    if proc.stdout.strip():
        print(proc.stdout.strip())


def build(out_dir: Path, repo_index: bool = False) -> Path:
    """Build, validate and return the zip path; optionally generate the repository index beside it."""
    cli = find_blender_ext()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = stage(Path(tmp) / "building_pose")
        before = set(out_dir.glob("*.zip"))
        run_cli(cli, "build", "--source-dir", str(src), "--output-dir", str(out_dir))
        zips = sorted(set(out_dir.glob("*.zip")) - before) or sorted(out_dir.glob("building_pose-*.zip"))
    if not zips:
        raise SystemExit(f"no zip was written to {out_dir}")
    zip_path = zips[-1]
    run_cli(cli, "validate", str(zip_path))
    if repo_index:
        run_cli(cli, "server-generate", "--repo-dir", str(out_dir), "--html")
    print(f"built {zip_path}")
    return zip_path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "dist", help="output folder (default: dist/)")
    ap.add_argument("--repo-index", action="store_true", help="also write index.json/index.html for hosting")
    args = ap.parse_args(argv)
    build(args.out, args.repo_index)
    return 0


if __name__ == "__main__":
    sys.exit(main())
