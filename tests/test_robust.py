"""Robust conditioning (lib/robust.py): swaps undone, disbelieved keypoints completed, implausible people flagged.

The first tests drive the algorithm with a stand-in for the prior that always answers the true pose, so every
expectation is worked out by hand from what the test did to the 2D. The last ones use the shipped prior on
synthetic poses: a keypoint moved far off is dropped and a swapped pair is found, where the test knows the answer.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from configs.default_h36m_configs import get_default_configs
from lib.api import PosePrior
from lib.data import load_split
from lib.robust import PAIRS, TAU_0, RobustSettings, robust_condition, typical_error
from tests.helpers import run_module

SETTINGS = RobustSettings(table="", swap_margin=16.0, outlier_k=4.0, rounds=2, flag_share=0.3)


def _truth(n: int = 4) -> torch.Tensor:
    """n different 2D poses [n, 17, 3] (z = 0), 1 unit tall: the joints spread over a 0.5 x 1 box."""
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(n, 17, 2, generator=g) * torch.tensor([0.5, 1.0])
    return torch.cat([xy, torch.zeros(n, 17, 1)], -1)


def _knows(truth: torch.Tensor):
    """A stand-in for the prior that answers each person's true pose whatever it is shown: it believes no keypoint.
    It tells the people apart by their median joint distance, which a few moved or swapped joints do not change."""
    def lift(cond: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
        dist = (cond[:, None, :, :2] - truth[None, :, :, :2]).norm(dim=-1).median(-1).values  # [M, n]
        return truth[dist.argmin(1)]
    return lift


def test_a_keypoint_far_off_is_made_missing_and_nothing_else():
    truth = _truth()
    cond = truth.clone()
    cond[:, 3, 0] += 0.3  # right ankle moved by 0.3 of the pose size (pose size 1): 6 typical errors of 0.05
    seen = torch.ones(4, 17, dtype=torch.bool)

    lift = _knows(truth)

    res = robust_condition(lift, cond, seen, None, SETTINGS)
    expected = torch.zeros(4, 17, dtype=torch.bool)
    expected[:, 3] = True
    assert torch.equal(res.dropped, expected) and torch.equal(res.seen, ~expected)
    assert (res.condition[:, 3] == 0).all() and torch.equal(res.condition[:, :3], truth[:, :3])
    assert (res.swapped == -1).all() and not res.implausible.any()
    assert res.passes == 1 + len(PAIRS) + 1  # the original and its swaps together, then one round of outliers


def test_a_keypoint_within_the_detectors_spread_is_kept():
    truth = _truth()
    cond = truth.clone()
    cond[:, 3, 0] += 0.15  # 3 typical errors: below outlier_k = 4

    lift = _knows(truth)

    res = robust_condition(lift, cond, torch.ones(4, 17, dtype=torch.bool), None, SETTINGS)
    assert not res.dropped.any() and torch.equal(res.condition, cond)


def test_a_swapped_pair_is_found_and_undone():
    truth = _truth(16)
    a, b = PAIRS[4]  # the elbows (12, 15)
    truth[:8, b, :2] = truth[:8, a, :2] + 0.03  # half the people hold their elbows close: a swap changes little
    cond = truth.clone()
    cond[:, [a, b]] = truth[:, [b, a]]

    lift = _knows(truth)

    res = robust_condition(lift, cond, torch.ones(16, 17, dtype=torch.bool), None, SETTINGS)
    size = (truth[..., :2].max(1).values - truth[..., :2].min(1).values).max(-1).values  # the box's larger side
    far = (truth[:, a, :2] - truth[:, b, :2]).norm(dim=-1) / size / TAU_0  # each elbow's residual, in typical errors
    swapped = 2 * far.clamp(max=SETTINGS.outlier_k) ** 2 > SETTINGS.swap_margin  # the score it saves, by hand
    assert swapped.any() and not swapped.all()  # both cases occur among these people
    assert torch.equal(res.swapped, torch.where(swapped, 4, -1))
    assert torch.equal(res.condition[swapped], truth[swapped])


def test_a_swap_of_a_joint_the_detector_did_not_give_is_not_tried():
    truth = _truth()
    a, b = PAIRS[4]
    cond = truth.clone()
    cond[:, [a, b]] = truth[:, [b, a]]
    seen = torch.ones(4, 17, dtype=torch.bool)
    seen[:, a] = False

    lift = _knows(truth)

    res = robust_condition(lift, cond, seen, None, SETTINGS)
    assert (res.swapped != 4).all()


def test_a_person_with_most_joints_off_is_flagged_implausible():
    truth = _truth()
    cond = truth.clone()
    cond[:2, :8, 1] += 0.5  # 8 of 17 joints far off in the first two people: more than flag_share = 0.3

    lift = _knows(truth)

    res = robust_condition(lift, cond, torch.ones(4, 17, dtype=torch.bool), None, SETTINGS)
    assert res.implausible.tolist() == [True, True, False, False]


def test_the_typical_error_comes_from_the_table_or_the_confidence(tmp_path):
    """Without a table: TAU_0 / confidence (confidences below 0.1 count as 0.1); with one: its 90 % quantile over
    its median pose size."""
    conf = torch.tensor([[1.0, 0.5, 0.05] + [1.0] * 14])
    tau = typical_error("", conf, (1, 17))
    assert torch.allclose(tau[0, :3], torch.tensor([TAU_0, 2 * TAU_0, 10 * TAU_0]))
    joints = [{"bias_px": [0, 0], "std_px": [1, 1], "error_px_quantiles": {"50": 1, "90": 2.0 * (j + 1), "99": 50}}
              for j in range(17)]
    path = tmp_path / "table.json"
    path.write_text(json.dumps({"pose_size_px_median": 200.0, "joints": joints}))
    tau = typical_error(str(path), None, (2, 17))
    assert torch.allclose(tau[1], torch.arange(1, 18) * 2.0 / 200.0)


@pytest.fixture(scope="module")
def shipped(data_root):
    prior = PosePrior.from_checkpoint()
    prior.config.robust.mode = "on"
    px = load_split(data_root, "synthetic_test.pkl", "", "test", 1, True).pose_img[:48, :, :2]
    return prior, px


def test_the_shipped_prior_drops_a_keypoint_far_off(shipped):
    """A wrist or ankle moved 300 px (0.8 of the pose size) is completed in most poses, the other joints are kept;
    clean poses keep every keypoint and swap nothing."""
    prior, px = shipped
    clean = prior.robust_2d(prior.frames.normalise(px), [])
    assert not clean.dropped.any() and (clean.swapped == -1).all()
    rng = np.random.default_rng(0)
    for j in (3, 13):
        moved = px.copy()
        angle = rng.uniform(0, 2 * np.pi, len(px))
        moved[:, j] += 300 * np.stack([np.cos(angle), np.sin(angle)], -1)
        res = prior.robust_2d(prior.frames.normalise(moved), [])
        assert res.dropped[:, j].float().mean() >= 0.85
        assert np.delete(res.dropped.numpy(), j, axis=1).sum(1).mean() <= 0.1


def test_the_shipped_prior_finds_swapped_elbows(shipped):
    prior, px = shipped
    a, b = PAIRS[4]
    swapped = px.copy()
    swapped[:, [a, b]] = px[:, [b, a]]
    res = prior.robust_2d(prior.frames.normalise(swapped), [])
    far = np.linalg.norm(px[:, a] - px[:, b], axis=-1) > 60  # elbows that look different when swapped
    assert far.sum() >= 10 and (res.swapped[torch.from_numpy(far)] == 4).float().mean() >= 0.5


def test_lift_flags_a_person_whose_2d_fits_no_pose(shipped, tmp_path):
    """run.lift's path with robust conditioning on: keypoints thrown at random over the person's box are flagged
    implausible (in poses.npz and poses.json, with a note) and get a larger uncertainty; real poses are not
    flagged."""
    prior, px = shipped
    kps = px[:6].copy()
    rng = np.random.default_rng(0)
    low, high = kps[3].min(0), kps[3].max(0)
    kps[3] = rng.uniform(low, high, (17, 2))  # frame 3: the same box, no body
    prior.config.lift.hypotheses = 4
    result = prior.lift(kps, "h36m", image_size=(1000, 1000))
    assert result.implausible.tolist() == [[False], [False], [False], [True], [False], [False]]
    assert result.uncertainty[3].mean() > 2 * np.delete(result.uncertainty, 3, axis=0).mean()
    assert any("flagged implausible" in n for n in result.notes)
    result.save(tmp_path)
    assert np.load(tmp_path / "poses.npz")["implausible"].tolist() == result.implausible.tolist()
    people = json.loads((tmp_path / "poses.json").read_text())["frames"]
    assert [f["people"][0]["implausible"] for f in people] == [False, False, False, True, False, False]


@pytest.mark.parametrize("mode, table, on", [("auto", "", False), ("auto", "t.json", True), ("on", "", True),
                                             ("off", "t.json", False)])
def test_robust_conditioning_is_on_by_default_where_the_detectors_table_is_given(mode, table, on):
    """robust.mode: auto turns it on with the detector's table (where it won on CMU and the demo) and leaves it off
    with confidences alone (where it lost); on and off say what they mean."""
    config = get_default_configs()
    config.robust.mode, config.eval.detector_table = mode, table
    settings = RobustSettings.from_config(config)
    assert (settings is not None) == on
    assert settings is None or settings.table == table


@pytest.mark.parametrize("given, robust", [((), False), (("--detector-table", "TABLE"), True),
                                           (("--detector-table", "TABLE", "--robust", "off"), False),
                                           (("--robust", "on"), True)])
def test_eval_from_detections_takes_the_robust_path_by_default_with_the_table(trained_run, detector_table, tmp_path,
                                                                               given, robust):
    """est from detections (the small config's synthetic detections): its table has the robust rows, and its NFE
    the robust passes, exactly where robust.mode says so."""
    report = tmp_path / "est.json"
    given = [detector_table if g == "TABLE" else g for g in given]
    res = run_module("run.eval_fc_mp_adv_3d", "--ckpt-dir", str(trained_run), "--pflow", "--fast", "--sample", "20",
                     "--json", str(report), "--out", str(tmp_path / "est"), *given, "est")
    assert res.returncode == 0, res.stderr
    out = json.loads(report.read_text())
    assert ("robust_dropped" in out["table"]) == robust
    # drift_2m 20 (--pflow --fast); robustly, before it, one pass for the 2D and one for each swap, and up to
    # `rounds` (2) passes for outliers
    passes = (1 + len(PAIRS), 1 + len(PAIRS) + 2) if robust else (0, 0)
    assert 20 * (1 + passes[0]) <= out["nfe"] <= 20 * (1 + passes[1])
