import cv2
import numpy as np

from ml_backend import tools


def test_match_pair_keypoints_overlay(synth_dataset, tmp_path):
    q = synth_dataset.split("query")[0]
    s = tools.match_pair(synth_dataset.root, q.id, synth_dataset.split("reference")[0].id, tmp_path / "m.png")
    assert s["matches"] > 0 and (tmp_path / "m.png").is_file()
    n = tools.show_keypoints(synth_dataset.path(q.image), tmp_path / "k.png", "xfeat")
    assert n > 0 and cv2.imread(str(tmp_path / "k.png")) is not None
    T = np.array(q.cam_from_world)
    T[0, 3] += 0.5
    tools.pose_overlay(synth_dataset.root, q.id, tmp_path / "o.png", T)
    assert cv2.imread(str(tmp_path / "o.png")).shape[:2] == (q.intrinsics.height, q.intrinsics.width)
    assert tools.box_segments(np.random.rand(10, 3)).shape == (12, 2, 3)
