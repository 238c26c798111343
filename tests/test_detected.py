"""Detected 2D: the detector noise model against tables written by hand, the table fitted from data against the
synthetic detector's own parameters, training with the noise, joints a detector does not give, the reproj
aggregate, and the command lines that fit tables and simulate detections."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from lib.aggregate import Evidence, aggregate
from lib.camera import Frames
from lib.data import load_split
from lib.detnoise import DetectorNoise, fit_table, load_table, pose_size, simulate
from lib.errors import ToolkitError
from lib.tasks.est import estimation
from lib.train import Batches
from run import prepare_data
from tests.helpers import run_main, tiny_config

NAMES = ["pelvis", "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "spine", "thorax", "neck_nose",
         "head_top", "l_shoulder", "l_elbow", "l_wrist", "r_shoulder", "r_elbow", "r_wrist"]
RAYLEIGH_MEDIAN = math.sqrt(2 * math.log(2))  # the median norm of a 2D standard Gaussian


def _table(std: float = 10.0, bias_y: float = 0.0, swap: float = 0.0, missing: float = 0.0,
           tail: tuple[float, float] | None = None) -> dict:
    """A table by hand: every joint a 2D Gaussian of this std (px) around a bias, at a pose size of 300 px; `tail`
    (90 %, 99 % quantiles) for the wrists."""
    q = {"50": std * RAYLEIGH_MEDIAN, "90": std * math.sqrt(2 * math.log(10)), "99": std * math.sqrt(2 * math.log(100))}
    joints = [{"name": n, "bias_px": [0.0, bias_y if n == "spine" else 0.0], "std_px": [std, std],
               "error_px_quantiles": dict(q, **({"90": tail[0], "99": tail[1]} if tail and "wrist" in n else {})),
               "missing_share": missing if n == "l_elbow" else 0.0} for n in NAMES]
    return {"pose_size_px_median": 300.0, "joints": joints,
            "left_right_swaps": [{"pair": ["l_ankle", "r_ankle"], "share": swap}]}


def _upright(n: int) -> torch.Tensor:
    """n 2D poses [n, 17, 2] of pose size 300 px (a vertical line of joints 0..300 px and a width of 100)."""
    xy = torch.zeros(n, 17, 2)
    xy[..., 1] = torch.linspace(0, 300, 17)
    xy[:, 3, 0], xy[:, 6, 0] = -50.0, 50.0  # the ankles apart
    return xy


def test_the_noise_model_draws_the_tables_gaussian_bias_swaps_and_drops():
    table = _table(std=10.0, bias_y=-40.0, swap=0.2, missing=0.3)
    noise = DetectorNoise.from_table(table)
    clean = _upright(20000)
    torch.manual_seed(0)
    noisy, dropped = noise.apply(clean, torch.Generator().manual_seed(0))
    err = (noisy - clean).norm(dim=-1)  # [N, J]
    assert abs(float(err[:, 0].median()) / (10 * RAYLEIGH_MEDIAN) - 1) < 0.05  # a plain Gaussian's median
    assert abs(float((noisy - clean)[:, 7, 1].mean()) + 40.0) < 1.0  # the spine's bias
    crossed = (noisy[:, 3, 0] > 0) & (noisy[:, 6, 0] < 0)  # the ankles 100 px apart: a swap is unmistakable
    assert abs(float(crossed.float().mean()) - 0.2) < 0.02
    assert abs(float(dropped[:, 12].float().mean()) - 0.3) < 0.02 and not dropped[:, 11].any()


def test_a_heavy_tail_is_fitted_and_made_heavier_on_request():
    """Wrists with 90 / 99 % quantiles far beyond a Gaussian's get outliers; tail = 3 triples them."""
    table = _table(std=5.0, tail=(25.0, 120.0))
    clean = _upright(40000)
    for tail, want99 in ((1.0, 120.0), (3.0, None)):
        noisy, _ = DetectorNoise.from_table(table, tail).apply(clean, torch.Generator().manual_seed(1))
        err = (noisy - clean).norm(dim=-1)
        wrist99, hip99 = float(err[:, 13].quantile(0.99)), float(err[:, 1].quantile(0.99))
        if want99:
            assert 0.7 < wrist99 / want99 < 1.3 and wrist99 > 4 * hip99, (wrist99, hip99)
            base = float((err[:, 13] > 40).float().mean())
        else:
            assert float((err[:, 13] > 40).float().mean()) > 2.0 * base


def test_a_table_fitted_on_the_synthetic_detections_finds_the_generators_parameters(data_root):
    """The synthetic detector (lib/synthetic.detector_noise) has a spread of 1 % of the box at the torso and 1.8 % at
    wrists and ankles, and swaps wrists and ankles in 1 % of rows; the fitted table must say so."""
    gt = load_split(data_root, "synthetic_train.pkl", "", "train", 1, True)
    det = load_split(data_root, "synthetic_train.pkl", "synthetic_dt.pkl", "train", 1, False)
    table = fit_table(gt.pose_img[..., :2], det.det2d, det.det_conf, "synthetic")
    med = {j["name"]: j["error_px_quantiles"]["50"] for j in table["joints"]}
    assert 1.4 < med["r_wrist"] / med["thorax"] < 2.3 and 1.4 < med["l_ankle"] / med["pelvis"] < 2.3
    swaps = {tuple(s["pair"]): s["share"] for s in table["left_right_swaps"]}
    assert 0.01 < swaps[("l_wrist", "r_wrist")] < 0.03 and swaps[("l_wrist", "r_wrist")] > 2 * swaps[("l_hip", "r_hip")]
    assert all(j["missing_share"] == 0 for j in table["joints"])
    assert abs(table["pose_size_px_median"] - float(np.median(pose_size(gt.pose_img[..., :2])))) < 0.01


def test_training_batches_get_the_noise_and_mask_what_the_detector_does_not_give(data_root, tmp_path):
    (tmp_path / "t.json").write_text(json.dumps(_table(std=10.0)))
    config = tiny_config(data_root)
    config.detnoise.table, config.detnoise.format = str(tmp_path / "t.json"), "sh"
    data = load_split(data_root, "synthetic_train.pkl", "", "train", 1, True)
    for p, hit in ((1.0, True), (0.0, False)):
        config.detnoise.p = p
        batch = Batches(config, data, torch.device("cpu"))(0)
        moved = (batch.cond[..., :2] - batch.x0[..., :2]).abs().amax((1, 2)) > 1e-4  # the clean 2D is the 3D's x, y
        assert bool(moved.all()) == hit and not (~moved).all() == hit
        assert bool(batch.dropped[:, [7, 9]].all()) == hit and not batch.dropped[:, [0, 8, 13]].any()
        assert (batch.cond[..., 2] == 0).all()


def test_est_does_not_give_the_network_a_detectors_other_points_or_unsure_joints(data_root):
    data = load_split(data_root, "synthetic_test.pkl", "synthetic_dt.pkl", "test", 1, False, det_format="sh")
    seen = data.seen2d(0.0)
    assert not seen[:, [7, 9]].any() and seen[:, [0, 8, 13]].all()  # spine and neck/nose: another point, made up
    unsure = data.seen2d(0.5)
    assert torch.equal(unsure[:, 0], torch.from_numpy(data.det_conf[:, 0] >= 0.5))
    task = estimation(data.cond2d(Frames()), unsure)
    assert (task.mask[~unsure] == 0).all() and (task.mask[unsure][:, :2] == 1).all() and (task.mask[..., 2] == 0).all()
    gt = load_split(data_root, "synthetic_test.pkl", "", "test", 1, True)
    assert gt.seen2d(0.9).all()  # ground truth has no confidences


def test_reproj_weights_hypotheses_by_their_fit_to_the_2d_and_its_confidence():
    """Two hypotheses; the first reprojects onto the 2D exactly, the second is off by d on one joint. The weights are
    exp(0) and exp(-c d^2 / (2 sigma^2)) over their sum, hand computed."""
    hyps = torch.zeros(1, 2, 17, 3)
    hyps[0, 1, 5, 0], hyps[0, 1, :, 2] = 3.0, 1.0  # off by 3 in x at joint 5; a different depth everywhere
    ev = Evidence(input2d=torch.zeros(1, 17, 2), seen=torch.ones(1, 17, dtype=torch.bool),
                  conf=torch.full((1, 17), 0.5), sigma=2.0)
    w2 = math.exp(-0.5 * 9 / 8) / (1 + math.exp(-0.5 * 9 / 8))
    out = aggregate(hyps, "reproj", ev)
    assert abs(float(out[0, 0, 2]) - w2) < 1e-6 and abs(float(out[0, 5, 0]) - 3 * w2) < 1e-6
    ev.seen[0, 5] = False  # a joint the input does not give does not count
    assert torch.allclose(aggregate(hyps, "reproj", ev), hyps.mean(1))


def test_reproj_with_the_detectors_model_sizes_the_pose_by_its_given_joints():
    """The detector's errors are relative to the pose size, which only the given joints define: where a joint not
    given sits changes nothing, and a person with one joint given or none (no size; robust conditioning can leave
    that) gets the mean (before, a person without a size made the weights NaN in the detected benchmark)."""
    noise = DetectorNoise.from_table(_table(std=10.0))
    xy = _upright(3) / 300.0  # network-like units: pose size 1
    hyps = torch.zeros(3, 2, 17, 3)
    hyps[:, 0, :, :2], hyps[:, 1, :, :2] = xy, xy + 0.2  # the first fits, the second is off
    hyps[:, 1, :, 2] = 1.0
    seen = torch.ones(3, 17, dtype=torch.bool)
    seen[:, 7] = False                       # the spine not given
    seen[1, 1:], seen[2] = False, False      # person 1 gives one joint, person 2 none
    ev = Evidence(input2d=xy.clone(), seen=seen, noise=noise, temper=1.0)
    out = aggregate(hyps, "reproj", ev)
    assert torch.isfinite(out).all()
    assert torch.allclose(out[1:], hyps[1:].mean(1))
    assert float(out[0, 0, 2]) < 1e-3  # the fitting hypothesis takes the weight
    ev.input2d[0, 7] = torch.tensor([40.0, -40.0])  # the joint not given, far away: the size is unchanged
    assert torch.allclose(aggregate(hyps, "reproj", ev), out)


def test_prepare_data_fits_a_table_and_simulates_detections(data_root, tmp_path, monkeypatch, capsys):
    table = tmp_path / "syn.json"
    argv = ["prepare_data", "detector-errors", "--gt", str(data_root / "synthetic_train.pkl"), "--det",
            str(data_root / "synthetic_dt.pkl"), "--out", str(table)]
    code, out, err = run_main(prepare_data, argv[1:], monkeypatch, capsys)
    assert code == 0 and "mean error" in out, err
    assert len(load_table(table)["joints"]) == 17
    code, _, err = run_main(prepare_data, argv[1:], monkeypatch, capsys)  # an existing file is not replaced
    assert code == 2 and "already exists; give --overwrite" in err
    det = tmp_path / "sim.pkl"
    code, out, err = run_main(prepare_data, ["detections", "--table", str(table), "--train",
                                             str(data_root / "synthetic_train.pkl"), "--test",
                                             str(data_root / "synthetic_test.pkl"), "--format", "h36m", "--tail", "2",
                                             "--seed", "3", "--out", str(det)], monkeypatch, capsys)
    assert code == 0, err
    sim = load_split(data_root, "synthetic_test.pkl", str(det), "test", 1, False, det_format="h36m")
    assert sim.det2d.shape == (len(sim), 17, 2) and (sim.det_conf > 0).all() and sim.source_2d == "sim.pkl"
    err_px = np.linalg.norm(sim.det2d - sim.pose_img[..., :2], axis=-1)
    assert 2.0 < np.median(err_px) < 30.0


def test_simulated_confidences_fall_with_the_error_and_unused_joints_get_none():
    table = _table(std=8.0, tail=(40.0, 150.0))
    gt = _upright(5000).double().numpy() + 400.0
    xy, conf = simulate(gt, DetectorNoise.from_table(table), 0, np.eye(17, dtype=bool)[7])
    err = np.linalg.norm(xy - gt, axis=-1)
    assert (conf[:, 7] == 0).all() and (conf[:, :7] > 0).all()
    far, near = err[:, 13] > 60, err[:, 13] < 10
    assert conf[far, 13].mean() < conf[near, 13].mean() - 0.3


def test_a_bad_table_is_one_line(tmp_path):
    bad = _table()
    bad["joints"][3]["error_px_quantiles"]["90"] = -1
    (tmp_path / "t.json").write_text(json.dumps(bad))
    with pytest.raises(ToolkitError, match="error_px_quantiles 50 <= 90 <= 99"):
        load_table(tmp_path / "t.json")
