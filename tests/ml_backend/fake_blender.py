"""Stand-in for ``blender -b --python tools/blender_entry.py -- COMMAND`` in worker tests (no bpy).

``render-dataset`` writes the synthetic box dataset with the config's split sizes and resolution and speaks the
JSON-line protocol. Every call appends its argv and $HOME to ``$FAKE_BLENDER_LOG``. ``FAKE_BLENDER_FAIL=1``
makes it fail like a crashing Blender.
"""
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> int:
    argv = sys.argv[sys.argv.index("--") + 1:]
    log = os.environ.get("FAKE_BLENDER_LOG")
    if log:
        with open(log, "a") as f:
            f.write(json.dumps({"argv": argv, "home": os.environ.get("HOME"),
                                "xdg": os.environ.get("XDG_CACHE_HOME")}) + "\n")
    print("Blender 5.0 (fake) chatter line")
    if os.environ.get("FAKE_BLENDER_FAIL"):
        sys.stderr.write("Traceback (most recent call last):\nRuntimeError: GPU on fire\n")
        print(json.dumps({"event": "error", "message": "GPU on fire"}))
        return 1
    args = dict(zip(argv[1::2], argv[2::2]))
    from pose_addon.core.render_config import RenderConfig
    from tests.ml_backend.synthetic import build_dataset

    cfg = RenderConfig.from_dict(json.loads(Path(args["--config"]).read_text()))
    n = {g.split: g.sampler.n for g in cfg.groups}
    print(json.dumps({"event": "progress", "done": 0, "total": sum(n.values()), "message": "start"}))
    ds = build_dataset(Path(args["--out"]), n_ref=n["reference"], n_query=n["query"], width=cfg.width,
                       height=cfg.height)
    print(json.dumps({"event": "progress", "done": len(ds.frames), "total": len(ds.frames), "message": "ok"}))
    print(json.dumps({"event": "done", "dataset": str(Path(args["--out"]).resolve())}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
