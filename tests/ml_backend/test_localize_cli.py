"""``python -m ml_backend localize`` on a dataset: intrinsics choices, EXIF orientation, failed photos, exports."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ml_backend.__main__ import main
from ml_backend.evaluation import pose_error
from pose_addon.core.dataset import Dataset
from pose_addon.core.model_frame import rebase_pose


def _exif(orientation=1, f35=None):
    exif = Image.Exif()
    exif[0x0112] = orientation
    if f35:
        exif.get_ifd(0x8769)[0xA405] = f35
    return exif


@pytest.fixture(scope="module")
def shifted(synth_dataset, tmp_path_factory):
    """The synthetic dataset as if its model were off-centre: model_from_world moves, scales and turns."""
    root = tmp_path_factory.mktemp("shifted") / "ds"
    shutil.copytree(synth_dataset.root, root)
    ds = Dataset.load(root)
    from pose_addon.core.model_frame import world_from_model_matrix

    A = world_from_model_matrix(2.0, [-300.0, 40.0, 1.0], "Y")
    ds.manifest["scene"]["model_from_world"] = np.linalg.inv(A).tolist()
    ds.save()
    return ds, A


def test_localize_cli_known_intrinsics_rotated_and_broken_photos(shifted, tmp_path, capsys):
    ds, A = shifted
    qs = ds.split("query")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, q in enumerate(qs):
        img = np.asarray(Image.open(ds.path(q.image)).convert("RGB"))
        if i == 1:  # stored turned; EXIF orientation 6 turns it back for display
            Image.fromarray(np.ascontiguousarray(np.rot90(img, 1))).save(photos / f"q{i}.png", exif=_exif(6))
        else:
            Image.fromarray(img).save(photos / f"q{i}.png")
    (photos / "zz_broken.jpg").write_bytes(b"\xff\xd8 nothing")
    k = qs[0].intrinsics
    out = tmp_path / "out"
    assert main(["localize", "--dataset", str(ds.root), "--photos", str(photos), "--out", str(out), "--intrinsics",
                 f"{k.fx},{k.fy},{k.cx},{k.cy}", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert f"{len(qs)} of {len(qs) + 1} photos localized" in text
    assert "zz_broken: failed:" in text and "cannot read" in text
    poses = json.loads((out / "poses.json").read_text())
    assert poses["format"] == "building-pose-localize" and poses["version"] == 1
    assert np.allclose(poses["model_from_world"], np.linalg.inv(A))
    for i, q in enumerate(qs):
        r = next(r for r in poses["photos"] if r["stem"] == f"q{i}")
        assert r["status"] == "ok" and (r["width"], r["height"]) == (k.width, k.height), r
        truth = rebase_pose(q.cam_from_world, A)  # in the model's frame
        dt, dr = pose_error(np.array(r["cam_from_world"]), truth)
        assert dt < 0.05 / 2.0 and dr < 0.2, (i, dt, dr)
        assert r["n_inliers"] >= 50 and 0 < r["inlier_ratio"] <= 1 and 0 < r["confidence"] <= 1
    broken = next(r for r in poses["photos"] if r["stem"] == "zz_broken")
    assert broken["status"] == "failed" and broken["cam_from_world"] is None
    images = (out / "colmap" / "images.txt").read_text().splitlines()
    assert sum(1 for x in images if x and not x.startswith("#")) == len(qs)
    cams = [x for x in (out / "colmap" / "cameras.txt").read_text().splitlines() if x and not x.startswith("#")]
    assert cams[0].split()[1] == "PINHOLE" and float(cams[0].split()[6]) == pytest.approx(k.cx + 0.5)
    tf = json.loads((out / "transforms.json").read_text())
    assert len(tf["frames"]) == len(qs)


def test_localize_cli_estimates_the_focal_length(synth_dataset, tmp_path):
    qs = synth_dataset.split("query")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, q in enumerate(qs):
        shutil.copy(synth_dataset.path(q.image), photos / f"q{i}.png")
    out = tmp_path / "out"
    assert main(["localize", "--dataset", str(synth_dataset.root), "--photos", str(photos), "--out", str(out),
                 "--intrinsics", "estimate", "--quiet"]) == 0
    poses = json.loads((out / "poses.json").read_text())
    for i, q in enumerate(qs):
        r = next(r for r in poses["photos"] if r["stem"] == f"q{i}")
        assert r["status"] == "ok", r["reason"]
        assert r["K"][0][0] == pytest.approx(q.intrinsics.fx, rel=0.01)
        assert pose_error(np.array(r["cam_from_world"]), q.cam_from_world)[1] < 0.5


def test_localize_cli_exif_35mm_and_errors(synth_dataset, tmp_path, capsys):
    q = synth_dataset.split("query")[0]
    photos = tmp_path / "photos"
    photos.mkdir()
    img = Image.open(synth_dataset.path(q.image)).convert("RGB")
    f35 = q.intrinsics.fx / q.intrinsics.width * 36.0
    img.save(photos / "a.jpg", quality=98, exif=_exif(1, int(round(f35))))
    img.save(photos / "no_exif.png")
    out = tmp_path / "out"
    assert main(["localize", "--dataset", str(synth_dataset.root), "--photos", str(photos), "--out", str(out),
                 "--quiet"]) == 0
    poses = {r["stem"]: r for r in json.loads((out / "poses.json").read_text())["photos"]}
    assert poses["a"]["K"][0][0] == pytest.approx(round(f35) / 36.0 * q.intrinsics.width)
    assert poses["no_exif"]["status"] == "failed" and "no focal length in EXIF" in poses["no_exif"]["reason"]
    assert main(["localize", "--dataset", str(synth_dataset.root), "--photos", str(photos), "--out", str(out),
                 "--intrinsics", "fx,fy"]) == 1
    assert "--intrinsics" in capsys.readouterr().err


@pytest.mark.skipif(not (Path(__file__).resolve().parents[2] / ".venv-blender" / "bin" / "python").is_file(),
                    reason="Blender environment .venv-blender missing (run ./dev.sh setup)")
def test_headless_localize_imports_the_cameras_into_a_blend(synth_dataset, tmp_path):
    """``blender -b ... -- localize --blend OUT.blend ...``: the worker's localize, then one camera per photo."""
    import subprocess

    from ml_backend import blender_runner

    photos = tmp_path / "photos"
    photos.mkdir()
    q = synth_dataset.split("query")[0]
    shutil.copy(synth_dataset.path(q.image), photos / "a.png")
    k = q.intrinsics
    blend = tmp_path / "out.blend"
    ev = blender_runner.run_headless(["localize", "--blend", str(blend), "--dataset", str(synth_dataset.root),
                                      "--photos", str(photos), "--out", str(tmp_path / "out"), "--intrinsics",
                                      f"{k.fx},{k.fy},{k.cx},{k.cy}"], tmp_path / "cache", progress=False)
    assert ev["event"] == "done" and Path(ev["blend"]).is_file() and "1 of 1 photos localized" in ev["summary"]
    root = Path(__file__).resolve().parents[2]
    expr = (f"import bpy; bpy.ops.wm.open_mainfile(filepath={str(blend)!r}); "
            "print('CAMERAS', sorted(o.name for o in bpy.data.objects if o.type == 'CAMERA'))")
    out = subprocess.run([str(root / "tools" / "blender"), "-b", "--python-expr", expr], capture_output=True,
                         text=True, timeout=300).stdout
    import ast

    names = ast.literal_eval(next(x for x in out.splitlines() if x.startswith("CAMERAS"))[len("CAMERAS "):])
    assert [n for n in names if n.startswith("a")] == ["a.sift"]  # one camera per localized photo, by stem
