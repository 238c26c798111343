"""The Python API on a tiny trained run: every task, numpy in / numpy out, pixels and mm, bad input."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.api import PosePrior
from lib.camera import Frames, image_to_camera
from lib.data import load_split
from lib.errors import ToolkitError


@pytest.fixture(scope="module")
def prior(trained_run):
    return PosePrior.from_checkpoint(trained_run, best=False)


@pytest.fixture(scope="module")
def test_data(data_root):
    return load_split(data_root, "synthetic_test.pkl", "", "test", 20, use_gt_2d=True)


def test_every_task_shapes_and_types(prior, test_data):
    pose = test_data.gt3d(Frames(1000.0, 1.0)).numpy()[:4]  # normalised
    kps = pose[..., :2]
    kw = {"steps": 10}
    assert prior.estimate(kps, hypotheses=3, **kw).shape == (4, 3, 17, 3)
    assert isinstance(prior.estimate(torch.from_numpy(kps), **kw), torch.Tensor)
    out = prior.complete_2d(kps, [2, 3], hypotheses=2, **kw)
    assert out.shape == (4, 2, 17, 3) and np.allclose(out[:, :, [0, 1, 4], :2], kps[:, None, [0, 1, 4]], atol=1e-6)
    out = prior.complete_3d(pose, [13, 16], **kw)
    assert np.allclose(out[:, 0, :13], pose[:, :13], atol=1e-6)
    paper = prior.complete_3d(pose, [13, 16], completion="condition", **kw)
    alone = prior.complete_3d(pose, [13, 16], completion="impute", **kw)  # the prior alone completes them
    assert np.allclose(alone[:, 0, :13], pose[:, :13], atol=1e-6) and not np.array_equal(alone, paper)
    assert prior.generate(5, **kw).shape == (5, 17, 3)
    assert prior.denoise(pose, t=0.05, **kw).shape == (4, 17, 3)
    assert prior.score(pose, 0.5).shape == (4, 17, 3)


def test_pixels_and_millimetres(prior, test_data):
    """Pixels in, camera millimetres out: equals the normalised result mapped back with the data's own box."""
    kps = test_data.pose_img[:3, :, :2].astype(np.float32)  # the API computes in float32: the same input both ways
    depth = test_data.root_depth[:3]
    mm = prior.estimate(kps, camera=test_data.cam[0], root_depth=depth, hypotheses=2, steps=10, seed=4)
    frames = Frames(1000.0, 1.0)
    norm = prior.estimate(frames.normalise(kps.astype(np.float64)), hypotheses=2, steps=10, seed=4)
    want = image_to_camera(frames.denormalise(norm.astype(np.float64)), test_data.cam[:3], test_data.box[:3], depth)
    assert mm.shape == (3, 2, 17, 3) and np.allclose(mm, want, rtol=1e-3, atol=0.05)  # float32 output


def test_bad_input(prior):
    good = np.zeros((2, 17, 2))
    bad = good.copy()
    bad[0, 3, 0] = np.nan
    with pytest.raises(ToolkitError, match="NaN"):
        prior.estimate(bad)
    with pytest.raises(ToolkitError, match=r"shape \[N, 17, 2\]"):
        prior.estimate(np.zeros((2, 16, 2)))
    with pytest.raises(ToolkitError, match="hypotheses"):
        prior.estimate(good, hypotheses=0)
    with pytest.raises(ToolkitError, match="0..16"):
        prior.complete_2d(good, [17])
    with pytest.raises(ToolkitError, match=r"t must be a number in \(0.001, 1\]"):
        prior.denoise(np.zeros((2, 17, 3)), t=0.0)
    with pytest.raises(ToolkitError, match="unknown sampler method"):
        prior.estimate(good, method="nope")
    with pytest.raises(ToolkitError, match="completion must be one of"):
        prior.complete_2d(good, [3], completion="guess")
