"""The heatmap detector's passes, close-ups and visibility weighting, with a stand-in network that finds coloured
blobs exactly (geometry, not learning): one keypoint per colour channel."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ml_backend.keypoints import heatmap_train as ht
from ml_backend.keypoints.heatmap import HIDDEN_WEIGHT, STRIDE, TwoPassDetector, input_to_cell

BLOBS = np.array([[201.3, 147.8], [402.6, 260.2], [317.45, 351.9]])  # OpenCV px of a 640 x 480 image


class BlobNet(nn.Module):
    """Keypoint k = the blob of colour channel k: its heatmap is the exact Gaussian log-density at the blob's
    centroid, present when the crop holds the blob, visible as in ``seen``. ``lie_px``: close-ups (batches of
    more than one crop) report the blob that many input px off."""

    def __init__(self, seen=(True, False, True), lie_px: float = 0.0, visibility: bool = True):
        super().__init__()
        self.seen = torch.tensor([8.0 if s else -8.0 for s in seen])
        self.lie_px, self.visibility = lie_px, visibility
        self.batches: list[int] = []

    def forward(self, x):
        B, _, S, _ = x.shape
        self.batches.append(B)
        h = w = S // STRIDE
        wts = (x - 120.0).clamp(min=0.0)
        ys, xs = torch.meshgrid(torch.arange(S, dtype=torch.float64), torch.arange(S, dtype=torch.float64),
                                indexing="ij")
        jj, ii = torch.meshgrid(torch.arange(w, dtype=torch.float64), torch.arange(h, dtype=torch.float64),
                                indexing="xy")
        logits = torch.zeros(B, 3, h, w)
        present = torch.full((B, 3), -8.0)
        for b in range(B):
            for k in range(3):
                m = wts[b, k].double()
                if m.sum() <= 0:
                    continue
                c = np.array([(m * xs).sum() / m.sum(), (m * ys).sum() / m.sum()])
                if B > 1:
                    c = c + self.lie_px
                cx, cy = input_to_cell(c)
                logits[b, k] = (-((jj - cx) ** 2 + (ii - cy) ** 2) / (2 * 1.25 ** 2)).float()
                present[b, k] = 8.0
        vis = self.seen.expand(B, 3).clone() if self.visibility else None
        return logits, present, vis


def blob_image() -> np.ndarray:
    ys, xs = np.mgrid[0:480, 0:640].astype(np.float64)
    img = np.zeros((480, 640, 3))
    for k, (u, v) in enumerate(BLOBS):
        img[..., k] = 255.0 * np.exp(-((xs - u) ** 2 + (ys - v) ** 2) / (2 * 3.0 ** 2))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def test_close_ups_read_each_seen_keypoint_again_in_one_batch():
    img = blob_image()
    coarse = TwoPassDetector(BlobNet(), 224, passes=2, zoom=0.0).detect(img)
    net = BlobNet()
    fine = TwoPassDetector(net, 224, passes=2, zoom=0.5).detect(img)
    assert net.batches[-1] == 2  # the two keypoints seen (not the hidden one), one batch
    err_fine = np.linalg.norm(fine.uv - BLOBS, axis=1)
    assert (err_fine[[0, 2]] < 0.15).all(), err_fine
    np.testing.assert_allclose(fine.uv[1], coarse.uv[1])  # hidden: the crop's position
    assert np.linalg.norm(coarse.uv - BLOBS, axis=1).max() < 0.5  # the whole-image pass alone: 640 px in 224


def test_a_close_up_far_from_the_crop_position_is_not_taken():
    img = blob_image()
    coarse = TwoPassDetector(BlobNet(), 224, passes=2, zoom=0.0).detect(img)
    lying = TwoPassDetector(BlobNet(lie_px=60.0), 224, passes=2, zoom=0.5).detect(img)
    np.testing.assert_allclose(lying.uv, coarse.uv)
    near = TwoPassDetector(BlobNet(lie_px=3.0), 224, passes=2, zoom=0.5).detect(img)
    assert not np.allclose(near.uv, coarse.uv)  # within max_move: taken


def test_hidden_keypoints_are_down_weighted_by_the_visibility_head():
    img = blob_image()
    d = TwoPassDetector(BlobNet(seen=(True, False, True)), 224, passes=2, zoom=0.5).detect(img)
    np.testing.assert_allclose(d.visible, [1.0, 0.0, 1.0], atol=1e-3)
    assert d.conf[1] == np.float64(d.conf[1]) and abs(d.conf[1] - HIDDEN_WEIGHT * d.conf[0]) < 0.02
    old = TwoPassDetector(BlobNet(visibility=False), 224, passes=2, zoom=0.5).detect(img)  # saved without the head
    np.testing.assert_allclose(old.visible, 1.0)
    np.testing.assert_allclose(old.conf[1], old.conf[0], atol=0.02)


def test_visibility_loss_counts_only_keypoints_in_the_crop():
    B, K, h = 2, 3, 8
    logits, presence = torch.zeros(B, K, h, h), torch.zeros(B, K)
    uv = np.full((B, K, 2), 12.0)
    vis = np.array([[2, 1, 0], [2, 0, 0]])
    conf = dict(ht.default_train_conf)
    a = torch.tensor([[5.0, -5.0, 0.0], [5.0, 0.0, 0.0]])
    b = a.clone()
    b[vis == 0] = torch.tensor([7.0, -9.0, 3.0])  # other logits for keypoints outside the crop: same loss
    assert float(ht.loss_fn(logits, presence, a, uv, vis, conf)) == float(ht.loss_fn(logits, presence, b, uv, vis,
                                                                                       conf))
    wrong = a.clone()
    wrong[0, 1] = 5.0  # an occluded keypoint called visible: a larger loss
    assert float(ht.loss_fn(logits, presence, wrong, uv, vis, conf)) > float(ht.loss_fn(logits, presence, a, uv,
                                                                                          vis, conf)) + 0.1
