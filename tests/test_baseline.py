"""The regression baseline (lib/regression.py), the augmentations that change people and views (lib/augment.py)
and detections that fail by whole sequences (lib/detnoise.SequenceFailures)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from lib.augment import new_people_and_views, rotate_about, scale_bones, up_axis
from lib.builders import build_sde, frames_of
from lib.camera import Frames, image_to_camera
from lib.config_utils import load_config, validate_config
from lib.data import load_data, load_split
from lib.detnoise import SequenceFailures
from lib.loader import load_prior
from lib.metrics import mpjpe, per_action
from lib.model import ScoreFn
from lib.regression import MartinezLifter
from lib.sampling import SamplerConfig
from lib.sharded import sample_task
from lib.skeleton import BONES, SYMMETRIC_BONES, bone_lengths
from lib.tasks.est import estimation
from tests.helpers import config_leaves, run_module, tiny_config


@pytest.fixture(scope="module")
def baseline_run(tmp_path_factory, data_root):
    """A regression baseline trained by the toolkit's trainer for 30 steps."""
    from lib.train import train

    config = tiny_config(data_root)
    config.model.name = "MartinezLifter"
    config.model.dropout = 0.5
    config.model.num_groups = 1
    workdir = tmp_path_factory.mktemp("runs") / "baseline"
    train(config, workdir)
    return workdir


def test_the_baseline_trains_learns_and_keeps_its_max_norm(baseline_run):
    prior = load_prior(baseline_run / "checkpoint.pth")
    model, config = prior.model, prior.config
    assert isinstance(model, MartinezLifter) and config.model.name == "MartinezLifter"
    for m in model.modules():
        if isinstance(m, torch.nn.Linear):  # every unit's incoming weights within the max-norm of 1
            assert float(m.weight.detach().norm(dim=1).max()) <= 1.0 + 1e-5
    first = json.loads((baseline_run / "monitor.json").read_text())
    assert first[-1]["p1"] < first[0]["p1"]  # the monitor's P1 fell while it trained


def test_the_baseline_is_one_forward_pass_whatever_the_sampler(baseline_run, data_root):
    """Every sampler gives its forward pass on the 2D (one network evaluation), and eval --baseline scores it on
    the same rows: P1 as computed here from the forward pass by hand."""
    prior = load_prior(baseline_run / "checkpoint.pth")
    model, config = prior.model, prior.config
    frames = frames_of(config)
    test = load_data(config, "test")
    cond = test.cond2d(frames)
    with torch.no_grad():
        direct = model(torch.zeros_like(cond), torch.zeros(len(cond)), cond, torch.ones_like(cond))
    score_fn = ScoreFn(model, build_sde(config))
    for cfg in (SamplerConfig(method="em", steps=50), SamplerConfig(method="drift_2m", steps=20, schedule="logsnr")):
        out, _, nfe = sample_task(score_fn, score_fn.sde, estimation(cond), cfg, 1, 10 ** 6, 0, torch.device("cpu"),
                                  progress=False)
        assert nfe == 1 and torch.allclose(out[:, 0], direct, atol=1e-5)
    mm = test.rows.network_to_camera(direct, frames)
    by_hand = per_action({"p1": mpjpe(mm, torch.from_numpy(test.pose_cam).float()).numpy()},
                         test.action_name)["p1"]["Average"]
    report = baseline_run.parent / "est.json"
    res = run_module("run.eval_fc_mp_adv_3d", "--ckpt-dir", str(baseline_run), "--baseline", str(baseline_run),
                     "--pflow", "--fast", "--json", str(report), "--out", str(baseline_run.parent / "est"), "est")
    assert res.returncode == 0, res.stderr
    table = json.loads(report.read_text())["table"]
    assert table["p1@baseline"]["Average"] == pytest.approx(by_hand, rel=1e-4)
    assert "regression baseline" in res.stdout


def test_baseline_refuses_a_score_network(trained_run, baseline_run):
    res = run_module("run.eval_fc_mp_adv_3d", "--ckpt-dir", str(trained_run), "--baseline", str(trained_run),
                     "--pflow", "--fast", "--out", str(trained_run.parent / "nothing"), "est")
    assert res.returncode == 2 and "--baseline" in res.stderr and "not a regression baseline" in res.stderr
    assert not (trained_run.parent / "nothing").exists()


# The network and optimiser of Martinez et al. 2017, as the baseline configs must set them (num_groups: the score
# network's GroupNorm, unused by the lifter); everything else is the prior's
PAPER_RECIPE = {"model.name": "MartinezLifter", "model.hidden_dim": 1024, "model.n_blocks": 2, "model.dropout": 0.5,
                "model.num_groups": 1, "optim.lr": 1e-3}


@pytest.mark.parametrize("prior, baseline, also", [
    ("cmu_prior", "cmu_baseline", {"training.n_iters": 8_000}),   # the prior's minutes at the lifter's speed
    ("synthetic_small", "synthetic_baseline", {}),                # a budget of minutes: the demo's 4
])
def test_a_baseline_config_is_its_prior_with_the_papers_recipe(prior, baseline, also):
    def flat(name):
        config = load_config(f"configs/subvp/{name}.py")
        validate_config(config)
        return config_leaves(config.to_dict())

    a, b = flat(prior), flat(baseline)
    changed = {k: v for k, v in b.items() if a[k] != v}
    expected = {k: v for k, v in (PAPER_RECIPE | also).items() if a[k] != v}
    assert changed == expected and set(a) == set(b)


# ------------------------------------------------------------------------------------------ augmentations


@pytest.fixture(scope="module")
def rows(data_root):
    d = load_split(data_root, "synthetic_train.pkl", "", "train", 20, True)
    as_t = lambda a: torch.from_numpy(a).double()  # noqa: E731
    return d, as_t(d.pose_cam), as_t(d.cam), as_t(d.box), as_t(d.root_depth)


def test_unchanged_poses_come_back_as_the_data_has_them(rows):
    d, pose, cam, box, depth = rows
    frames = Frames(1000.0, 5.0)
    net, cond = new_people_and_views(pose, cam, box, depth, frames, up_axis(pose), 0.0, 0.0)
    assert torch.allclose(net, d.gt3d(frames), atol=1e-4) and torch.equal(cond[..., :2], net[..., :2])
    assert (cond[..., 2] == 0).all()


def test_a_turn_keeps_the_person_and_the_2d_is_its_projection(rows):
    d, pose, cam, box, depth = rows
    frames, axis = Frames(1000.0, 5.0), up_axis(pose)
    torch.manual_seed(0)
    net, cond = new_people_and_views(pose, cam, box, depth, frames, axis, 90.0, 0.0)
    back = image_to_camera(frames.to_image(net.double()), cam, box, depth)  # camera mm again
    assert torch.allclose(bone_lengths(back), bone_lengths(pose), rtol=1e-4)   # the same person
    assert torch.allclose(back[:, 0], pose[:, 0], atol=1e-3)                   # standing where they stood
    height = lambda p: (p - p[:, :1]) @ axis  # noqa: E731  (along the up axis: a turn does not change it)
    assert torch.allclose(height(back), height(pose), atol=1e-3)
    assert (back - pose).norm(dim=-1).mean() > 50  # and they did turn
    assert torch.equal(cond[..., :2], net[..., :2])


def test_rotation_and_bone_scaling_by_hand():
    rel = torch.tensor([[[0.0, 0.0, 0.0], [1.0, 0.0, 0.0]] + [[0.0, 0.0, 0.0]] * 15])
    turned = rotate_about(rel, torch.tensor([0.0, 0.0, 1.0]), torch.tensor([np.pi / 2]))
    assert torch.allclose(turned[0, 1], torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)  # x -> y about z
    pose = torch.randn(2, 17, 3)
    pose[:, 0] = 0
    factor = torch.rand(2, len(BONES)) + 0.5
    assert torch.allclose(bone_lengths(scale_bones(pose, factor)), factor * bone_lengths(pose), rtol=1e-5)


def test_scaled_people_keep_their_left_right_symmetry(rows):
    d, pose, cam, box, depth = rows
    frames = Frames(1000.0, 5.0)
    torch.manual_seed(1)
    net, _ = new_people_and_views(pose, cam, box, depth, frames, up_axis(pose), 0.0, 0.2)
    before, after = bone_lengths(pose), bone_lengths(image_to_camera(frames.to_image(net.double()), cam, box, depth))
    ratio = after / before
    assert (ratio.std(1) > 0.05).all()  # bones scaled differently ...
    for left, right in SYMMETRIC_BONES:  # ... mirrored bones alike
        assert torch.allclose(ratio[:, left], ratio[:, right], rtol=1e-3)


# ------------------------------------------------------------------------------------ sequence failures


def _clip(n_seq: int = 2, frames: int = 30):
    rng = np.random.default_rng(0)
    gt = np.cumsum(rng.normal(0, 3, (n_seq * frames, 17, 2)), 0) + 500  # moving joints
    noisy = gt + rng.normal(0, 2, gt.shape)
    return gt, noisy, np.repeat(np.arange(n_seq), frames)


def test_a_time_offset_gives_a_whole_sequence_another_frames_detections():
    gt, noisy, seq = _clip()
    out, touched = SequenceFailures(offset_share=1.0, max_offset=3).apply(gt, noisy, seq, np.random.default_rng(1))
    assert touched.all()
    for s in (0, 1):
        rows = np.flatnonzero(seq == s)
        shifts = [k for k in (-3, -2, -1, 1, 2, 3)
                  if np.array_equal(out[rows], noisy[np.clip(rows + k, rows[0], rows[-1])])]
        assert len(shifts) == 1  # one offset, the same for every frame of the sequence


def test_runs_of_heavy_error_scale_the_errors_of_consecutive_frames():
    gt, noisy, seq = _clip(4, 100)
    f = SequenceFailures(run_share=0.3, run_length=10, run_scale=4.0)
    out, touched = f.apply(gt, noisy, seq, np.random.default_rng(2))
    assert 0.1 < touched.mean() < 0.6
    err_in, err_out = out - gt, noisy - gt
    assert np.allclose(err_in[~touched], err_out[~touched])
    ratio = np.linalg.norm(err_in[touched], axis=-1) / np.linalg.norm(err_out[touched], axis=-1)
    assert np.all(np.isclose(ratio, 4.0) | np.isclose(ratio, 16.0))  # 16: two runs overlap
    starts = np.flatnonzero(np.diff(touched.astype(int)) == 1) + 1
    assert all(touched[s:s + 10].all() or seq[s] != seq[min(s + 9, len(seq) - 1)] for s in starts)


def test_prepare_data_makes_detections_with_sequence_failures(tmp_path):
    from lib.safe_pickle import load_pickle
    from lib.synthetic import generate

    data_root = tmp_path / "clips"
    generate(data_root, seed=0, train_frames=2, test_frames=30)  # test sequences of 30 frames
    table = tmp_path / "table.json"
    joints = [{"bias_px": [0, 0], "std_px": [3, 3], "error_px_quantiles": {"50": 3, "90": 6, "99": 9}}
              for _ in range(17)]
    table.write_text(json.dumps({"pose_size_px_median": 300.0, "joints": joints}))
    outs = {}
    for name, extra in (("plain", []), ("failing", ["--offset-share", "1", "--run-share", "0.2"])):
        outs[name] = tmp_path / f"{name}.pkl"
        res = run_module("run.prepare_data", "detections", "--table", str(table), "--train",
                         str(data_root / "synthetic_train.pkl"), "--test", str(data_root / "synthetic_test.pkl"),
                         "--out", str(outs[name]), "--seed", "3", *extra)
        assert res.returncode == 0, res.stderr
    gt = load_split(data_root, "synthetic_test.pkl", "", "test", 1, True).pose_img[..., :2]
    err = {k: np.linalg.norm(load_pickle(v)["test"]["joint3d_image"][..., :2] - gt, axis=-1).mean()
           for k, v in outs.items()}
    assert err["failing"] > 1.5 * err["plain"]


def test_the_detected_benchmarks_table_reaches_the_runs(trained_run, detector_table, tmp_path):
    """--detector-table goes to every run scored: from detections the reproj aggregate weighs by the table and
    changes, while the hypotheses (P1 of the first, S = 1 and 20) stay those drawn without it."""
    def rows(name: str, *flags: str) -> dict[str, dict]:
        res = run_module("run.benchmark", "--sections", "detected", "--ckpt-dir", str(trained_run), "--detections",
                         "synthetic_dt.pkl", "--poses", "4", "--poses-multi", "2", "--json", str(tmp_path / name),
                         *flags)
        assert res.returncode == 0, res.stderr[-2000:]
        return {r["setting"]: r for r in json.loads((tmp_path / name).read_text())["rows"]}

    plain, tabled = rows("a.json"), rows("b.json", "--detector-table", detector_table)
    assert {k: r["value"] for k, r in plain.items()} == {k: r["value"] for k, r in tabled.items()}
    for split in ("validation", "test"):
        key = f"est S=20, detections, {split}"
        assert plain[key]["extra"]["p1@reproj"] != tabled[key]["extra"]["p1@reproj"]


def test_the_detected_benchmark_puts_the_baseline_beside_the_prior(trained_run, baseline_run, tmp_path):
    """Rows on validation and test, from ground truth and detections; the prior at S = 1 and 20, robustly too
    (its passes counted in the NFE); the baseline at S = 1 with one network evaluation."""
    out = tmp_path / "detected.json"
    res = run_module("run.benchmark", "--sections", "detected", "--ckpt-dir", str(trained_run), "--baseline",
                     str(baseline_run), "--detections", "synthetic_dt.pkl", "--robust", "--poses", "8",
                     "--poses-multi", "4", "--json", str(out), timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    rows = json.loads(out.read_text())["rows"]
    prior = {r["setting"]: r for r in rows if r["variant"] == trained_run.name}
    base = {r["setting"]: r for r in rows if r["variant"] == f"{baseline_run.name} (regression baseline)"}
    labels = [f"{src}, {split}" for split in ("validation", "test")
              for src in ("GT 2D", "detections", "detections, robust")]
    assert set(prior) == {f"est S={s}, {label}" for s in (1, 20) for label in labels}
    assert set(base) == {f"est S=1, {label}" for label in labels if "robust" not in label}
    assert all(r["nfe"] == 1 for r in base.values())
    for split in ("validation", "test"):
        plain, robust = prior[f"est S=1, detections, {split}"], prior[f"est S=1, detections, robust, {split}"]
        assert plain["nfe"] == 20 and robust["nfe"] >= 20 * (1 + 7)  # the swaps' pass and the last one at least
