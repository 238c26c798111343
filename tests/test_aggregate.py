"""One pose from many hypotheses: aggregates with known answers, uncertainty, and the API / files that carry them."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lib.aggregate import AGGREGATORS, Evidence, aggregate, calibration, spearman, uncertainty
from lib.api import PosePrior


def test_jpma_picks_the_hypothesis_that_matches_the_2d_input_per_joint():
    torch.manual_seed(0)
    hyps = torch.randn(3, 5, 17, 3)
    target = torch.randn(3, 17, 3)
    pick = torch.randint(0, 5, (3, 17))  # per joint, a different hypothesis matches the input exactly
    hyps[torch.arange(3)[:, None], pick, torch.arange(17)[None]] = target
    out = aggregate(hyps, "jpma", Evidence(input2d=target[..., :2]))
    assert torch.equal(out, target)  # x, y and the depth of the matching hypothesis
    seen = torch.ones(3, 17, dtype=torch.bool)
    seen[:, 4] = False  # a joint without 2D input takes the median
    out = aggregate(hyps, "jpma", Evidence(input2d=target[..., :2], seen=seen))
    assert torch.equal(out[:, 4], hyps[:, :, 4].median(1).values) and torch.equal(out[:, 5], target[:, 5])


def test_symmetric_sets_have_a_known_mean_and_median():
    centre = torch.randn(2, 17, 3)
    offsets = torch.tensor([-2.0, -1.0, 0.0, 1.0, 2.0])[None, :, None, None]
    hyps = centre[:, None] + offsets * torch.ones(3)  # symmetric about the centre on every axis
    assert torch.allclose(aggregate(hyps, "mean"), centre, atol=1e-6)
    assert torch.allclose(aggregate(hyps, "median"), centre, atol=1e-6)
    skewed = torch.cat([hyps, centre[:, None] + 100.0], 1)  # one outlier moves the mean, not the median
    assert (aggregate(skewed, "mean") - centre).abs().min() > 10
    assert (aggregate(skewed, "median") - centre).abs().max() < 1.01
    refined = torch.zeros(2, 17, 3)
    assert torch.equal(aggregate(hyps, "refined", Evidence(refined=refined)), refined)
    assert torch.equal(aggregate(hyps, "refined"), aggregate(hyps, "mean"))  # not computed (S = 1): the mean
    with pytest.raises(ValueError, match="unknown aggregate"):
        aggregate(hyps, "magic")


def test_the_oracle_is_below_every_aggregate():
    """With the ground truth among wide hypotheses, min over S finds it; no aggregate can (reproj is left out: a
    posterior weighting may put all its weight on the ground truth when the 2D favours it; tests/test_detected.py
    checks its weights)."""
    torch.manual_seed(1)
    gt = torch.randn(4, 17, 3)
    hyps = gt[:, None] + 3.0 * torch.randn(4, 8, 17, 3)
    hyps[:, 5] = gt
    oracle = (hyps - gt[:, None]).norm(dim=-1).mean(-1).min(1).values  # [N]
    assert (oracle == 0).all()
    for name in set(AGGREGATORS) - {"reproj"}:
        err = (aggregate(hyps, name, Evidence(input2d=gt[..., :2] + 5.0)) - gt).norm(dim=-1).mean(-1)
        assert (err > oracle).all(), name


def test_uncertainty_grows_with_the_spread_and_predicts_the_error():
    torch.manual_seed(2)
    base = torch.randn(50, 1, 17, 3)
    scale = torch.linspace(0.1, 3.0, 17)[None, None, :, None]  # later joints spread more
    hyps = base + scale * torch.randn(50, 20, 17, 3)
    u = uncertainty(hyps)
    assert u.shape == (50, 17) and (u[:, -1] > u[:, 0]).all()
    assert torch.allclose(uncertainty(hyps * 2.0), 2.0 * u, atol=1e-5)
    assert uncertainty(hyps[:, :1]).abs().max() == 0.0  # one hypothesis: no spread
    err = (aggregate(hyps, "mean") - base[:, 0]).norm(dim=-1)
    cal = calibration(u.numpy(), err.numpy())
    assert cal["corr"] > 0.5 and cal["err_uncertain"] > 3 * cal["err_certain"]


def test_spearman_hand_computed():
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([10, 20, 30, 40.0])) == pytest.approx(1.0)
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([4, 3, 2, 1.0])) == pytest.approx(-1.0)
    assert spearman(np.array([1, 2, 3.0]), np.array([5, 5, 5.0])) == 0.0
    # ties take average ranks: x ranks (1.5, 1.5, 3), y ranks (1, 2, 3) -> corr 0.866
    assert spearman(np.array([1, 1, 2.0]), np.array([1, 2, 3.0])) == pytest.approx(np.sqrt(3) / 2)


def test_api_reduce_returns_one_pose_and_its_uncertainty(trained_run, data_root):
    from lib.camera import Frames
    from lib.data import load_split

    prior = PosePrior.from_checkpoint(trained_run, best=False)
    pose = load_split(data_root, "synthetic_test.pkl", "", "test", 40, use_gt_2d=True).gt3d(Frames(1000.0, 1.0)).numpy()
    hyps = prior.estimate(pose[..., :2], hypotheses=4, steps=4)  # [N, 4, 17, 3], the same seed as below
    spread = np.sqrt(((hyps - hyps.mean(1, keepdims=True)) ** 2).sum(-1).mean(1))  # RMS distance to their mean
    for reduce in AGGREGATORS:
        one, unc = prior.estimate(pose[..., :2], hypotheses=4, steps=4, reduce=reduce)
        assert one.shape == (len(pose), 17, 3) and np.allclose(unc, spread, atol=1e-5)
        if reduce in ("mean", "median"):
            assert np.allclose(one, hyps.mean(1) if reduce == "mean" else np.sort(hyps, 1)[:, 1], atol=1e-6)
    full, unc = prior.complete_3d(pose, [13, 16], hypotheses=3, steps=4, reduce="median")
    assert np.allclose(full[:, :13], pose[:, :13], atol=1e-6) and (unc[:, :13] < 1e-6).all()
    assert (unc[:, [13, 16]] > 0).all()  # only the missing joints are uncertain
    with pytest.raises(ValueError, match="reduce must be one of"):
        prior.estimate(pose[..., :2], hypotheses=2, reduce="magic")
