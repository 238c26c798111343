"""Distilled students: their v / x / eps heads give the data prediction and noise of hand-made inputs, the loss
weights and the start at t_start < 1 follow formulas written out here, a tiny student trains, saves and loads, lands
nearer its teacher's sampler than the teacher's network does in as few steps, samples through every task, --fast
takes it only through its gate, earlier runs' students still load, and bad requests are one line."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
import torch

from lib import distill as distill_lib
from lib.api import PosePrior
from lib.builders import build_score_fn, frames_of
from lib.checkpoint import load_checkpoint, save_checkpoint
from lib.config_utils import apply_overrides, config_from_json, config_to_json, parse_override
from lib.data import load_data
from lib.distill import Distiller, energy_score, fast_student, loss_weight, round_seconds, step_coefficients, unrolled
from lib.errors import ToolkitError
from lib.loader import SHIPPED_PRIOR, load_prior, students_from_state
from lib.model import Student
from lib.sampling import SamplerConfig, sample
from lib.sde import SubVPSDE
from lib.tasks.est import estimation
from run import distill as distill_cli
from run import eval_fc_mp_adv_3d
from tests.helpers import random_model, run_main, run_module


def _subvp(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """alpha, sigma of the sub-VP SDE with beta 0.1 .. 20, written out (Song et al. 2021, eq. 29 / appendix B)."""
    alpha = torch.exp(-0.25 * t ** 2 * (20.0 - 0.1) - 0.5 * t * 0.1)
    return alpha, 1.0 - alpha ** 2


class _Says(torch.nn.Module):
    """A stand-in network that returns a given output."""
    num_joints, joint_dim = 17, 3

    def __init__(self, out: torch.Tensor):
        super().__init__()
        self.out = out

    def forward(self, x, t, condition, mask):
        return self.out


class _TwoHeads(_Says):
    """A stand-in whose last hidden layer holds [eps, v]; the teacher's head reads eps, the Student's v head v."""

    def __init__(self, eps: torch.Tensor, v: torch.Tensor):
        super().__init__(eps)
        self.h = torch.cat([eps.flatten(1), v.flatten(1)], 1)  # [B, 102]
        self.post_dense = torch.nn.Linear(102, 51)
        with torch.no_grad():
            self.post_dense.weight.copy_(torch.eye(51, 102))
            self.post_dense.bias.zero_()

    def features(self, x, t, condition, mask):
        return self.h


@pytest.mark.parametrize("predict", ["eps", "v", "x", "eps+v"])
def test_each_head_gives_the_pose_and_noise_of_a_hand_made_state(predict):
    """x_t = alpha x0 + sigma eps from a known x0 and eps; a network that outputs eps, v = a eps - s x0 (a = alpha / r,
    s = sigma / r, r^2 = alpha^2 + sigma^2), x0, or eps and v from two heads must give back x0 as the data prediction
    and eps as the noise."""
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 17, 3, generator=g), torch.randn(4, 17, 3, generator=g)
    t = torch.tensor([1.0, 0.7, 0.3, 0.05])
    alpha, sigma = (v[:, None, None] for v in _subvp(t))
    x = alpha * x0 + sigma * eps
    r = torch.sqrt(alpha ** 2 + sigma ** 2)
    v = alpha / r * eps - sigma / r * x0
    if predict == "eps+v":
        student = Student(_TwoHeads(eps, v), SubVPSDE(), predict)
        assert student.data(x, t, x, None).abs().max() > 0  # the v head starts at zero: not the answer yet
        with torch.no_grad():
            student.v_head.weight.copy_(torch.cat([torch.zeros(51, 51), torch.eye(51)], 1))
    else:
        student = Student(_Says({"eps": eps, "v": v, "x": x0}[predict]), SubVPSDE(), predict)
    tol = 2e-3 if predict == "eps" else 1e-5  # from eps, x0 = (x - sigma eps) / alpha: 1 / alpha = 160 at t = 1
    assert torch.allclose(student.data(x, t, x, None), x0, atol=tol)
    assert torch.allclose(student(x, t, x, None), eps, atol=1e-4 if predict == "eps" else 3e-3)


def test_the_loss_weights_follow_the_head():
    """SNR = alpha^2 / sigma^2; eps: SNR (so w |D - D*|^2 is its noise error), v: SNR + 1, x: max(SNR, 1)."""
    t = torch.tensor([1.0, 0.5, 0.1])
    alpha, sigma = _subvp(t)
    snr = alpha ** 2 / sigma ** 2   # 4e-5, 0.73, 105.6
    sde = SubVPSDE()
    assert torch.allclose(loss_weight(sde, t, "eps"), snr, rtol=1e-4)
    assert torch.allclose(loss_weight(sde, t, "v"), snr + 1, rtol=1e-4)
    assert torch.allclose(loss_weight(sde, t, "x"), torch.tensor([1.0, 1.0, snr[2].item()]), rtol=1e-4)


def test_the_minutes_split_between_the_head_fit_and_growing_rounds():
    assert round_seconds(600.0, 4, 0.1, 2.0) == (60.0, [36.0, 72.0, 144.0, 288.0], 0.0)  # 540 s as 1 : 2 : 4 : 8
    assert round_seconds(600.0, 4, 0.0, 1.0) == (0.0, [150.0] * 4, 0.0)
    fit, rounds, twin = round_seconds(600.0, 2, 0.1, 1.0, 0.3)  # 600 s: 60 fit, 180 the twin, 360 in two rounds
    assert (fit, twin) == pytest.approx((60.0, 180.0)) and rounds == pytest.approx([180.0, 180.0])


def test_the_energy_score_prefers_the_right_spread_to_the_right_mean():
    """Hand-computed on one coordinate (the others equal): samples y at -1 and +1. Samples x at -1 and +1:
    E|X - Y| = (0 + 2 + 2 + 0) / 4 = 1, E|X - X'| = 2, score 1 - 2 / 2 = 0. Both at the mean 0: 1 - 0 = 1. Both
    at +1: (2 + 0) / 2 - 0 = 1. So the loss of the stochastic form cannot be won by landing every draw on the mean."""
    def poses(*values: float) -> torch.Tensor:  # [1, n, 17, 3], values in coordinate (0, 0)
        x = torch.zeros(1, len(values), 17, 3)
        x[0, :, 0, 0] = torch.tensor(values)
        return x

    y = poses(-1.0, 1.0)
    for x, want in ((poses(-1.0, 1.0), 0.0), (poses(0.0, 0.0), 1.0), (poses(1.0, 1.0), 1.0)):
        assert energy_score(x, y).item() == pytest.approx(want, abs=1e-4)
    # three draws against four samples at the corners of a square of side 2 in (x, y) of joint 0
    y = torch.zeros(1, 4, 17, 3)
    y[0, :, 0, :2] = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    x = torch.zeros(1, 3, 17, 3)  # all at the centre: E|X - Y| = sqrt(2), E|X - X'| = 0
    assert energy_score(x, y).item() == pytest.approx(math.sqrt(2.0), abs=1e-4)


def test_the_energy_score_of_mean_joint_distances():
    """Hand-computed: y one pose at 0; x two draws, A with joint 0 at (3, 4, 0), B with joints 0 and 1 at (1, 0, 0).
    Whole poses: |A - y| = 5, |B - y| = sqrt 2, |A - B| = sqrt(20 + 1), score (5 + sqrt 2) / 2 - sqrt 21 / 2.
    Mean per-joint distance (of 17 joints): 5 / 17, 2 / 17 and (sqrt 20 + 1) / 17, score (7 - sqrt 20 - 1) / 34."""
    y = torch.zeros(1, 1, 17, 3)
    x = torch.zeros(1, 2, 17, 3)
    x[0, 0, 0] = torch.tensor([3.0, 4.0, 0.0])
    x[0, 1, :2, 0] = 1.0
    assert energy_score(x, y).item() == pytest.approx((5 + math.sqrt(2) - math.sqrt(21)) / 2, abs=1e-5)
    assert energy_score(x, y, "mpjpe").item() == pytest.approx((6 - math.sqrt(20)) / 34, abs=1e-5)
    # to the power 1/2: (sqrt(5 / 17) + sqrt(2 / 17)) / 2 - sqrt((sqrt 20 + 1) / 17) / 2
    want = (math.sqrt(5 / 17) + math.sqrt(2 / 17) - math.sqrt((math.sqrt(20) + 1) / 17)) / 2
    assert energy_score(x, y, "mpjpe", 0.5).item() == pytest.approx(want, abs=1e-5)


def test_a_student_starting_below_t1_starts_from_the_data_matched_gaussian():
    """At t_start = 0.5 the draw is N(alpha m, alpha^2 s^2 + sigma^2) per coordinate: alpha = 0.28, sigma = 0.92."""
    student = Student(random_model(), SubVPSDE(), "v", t_start=0.5)
    student.start_mean.fill_(2.0)
    student.start_std.fill_(3.0)
    x = student.start(torch.Size((20000, 17, 3)), torch.Generator().manual_seed(0), "cpu")
    alpha, sigma = _subvp(torch.tensor(0.5))
    assert abs(x.mean().item() - 2.0 * alpha.item()) < 0.01
    assert abs(x.std().item() - math.sqrt(9.0 * alpha.item() ** 2 + sigma.item() ** 2)) < 0.01
    assert Student(random_model(), SubVPSDE(), "v").start(torch.Size((20000, 17, 3)), None, "cpu").std() == \
        pytest.approx(1.0, abs=0.01)  # from T: the SDE's prior


def test_fast_takes_the_fewest_steps_within_the_tolerance_or_none():
    p1 = {8: 27.5, 4: 27.9, 2: 40.0, 1: 900.0}  # validation P1 of each student; the teacher's fast sampler 27.0
    assert fast_student(p1, 27.0, 0.03) == 8      # within 27.81 mm: only the student of 8 steps
    assert fast_student(p1, 27.0, 0.05) == 4      # within 28.35 mm: 8 and 4, the fewer steps win
    assert fast_student(p1, 27.0, 0.5) == 2
    assert fast_student(p1, 27.0, 0.01) == 0      # none within 27.27 mm: --fast keeps the teacher's sampler


@pytest.fixture(scope="module")
def distilled(trained_run, tmp_path_factory):
    root = tmp_path_factory.mktemp("distilled")
    res = run_module("run.distill", "--ckpt-dir", str(trained_run), "--steps", "1", "--minutes", "0.15",
                     "--ckpt-root", str(root), "--name", "student", "--config.distill.first_steps=4",
                     "--config.distill.pool=128", "--config.distill.batch_size=64")  # the --fast gate as shipped
    assert res.returncode == 0, res.stderr[-3000:]
    assert "students of 4,2,1 steps" in res.stdout
    return root / "student"


def test_a_tiny_student_trains_saves_and_loads(distilled, trained_run):
    state = load_checkpoint(distilled / "best_model.pth")
    assert sorted(state["students"]) == ["1", "2", "4"] and "optimizer_state_dict" not in state
    stored = json.loads(state["config"])["distill"]
    assert stored["students"] == "4,2,1" and stored["predict"] == "eps+v"
    rounds = state["distill"]["rounds"]  # the new head first learns the teacher's data prediction, then three rounds
    assert [(r["steps"], r["target"]) for r in rounds] == [(4, "fit"), (4, "distil"), (4, "end"), (2, "distil"),
                                                           (2, "end"), (1, "distil"), (1, "end")]  # end_share 0.5
    assert all(r["updates"] > 0 for r in rounds)
    teacher = load_checkpoint(trained_run / "checkpoint.pth")
    for key, value in teacher["model_state_dict"].items():  # the teacher's own weights travel unchanged
        assert torch.equal(state["model_state_dict"][key], value)
    student = state["students"]["4"]
    moved = [k for k, v in teacher["model_state_dict"].items() if not torch.equal(student[f"net.{k}"], v)]
    assert len(moved) > 10 and student["v_head.weight"].abs().sum() > 0  # a trunk that learnt, and a v head
    # the data's moments for a start below T: the training poses' per-coordinate mean and spread (the root's depth
    # coordinate is fixed by the normalisation: spread 0), not the defaults 0 and 1
    mean, std = student["start_mean"], student["start_std"]
    assert mean.shape == std.shape == (17, 3) and mean.abs().sum() > 0 and (std >= 0).all() and (std != 1).all()


def test_an_earlier_runs_noise_students_still_load_and_sample_as_their_network(distilled):
    """A version-3 file: students as the bare network's weights, no distill.predict. They load as eps Students that
    give exactly their network's noise."""
    state = load_checkpoint(distilled / "best_model.pth")
    old = json.loads(state["config"])
    old["version"] = 3
    for key in ("predict", "fit_share", "round_growth", "t_start"):
        del old["distill"][key]
    config = config_from_json(json.dumps(old))
    assert config.distill.predict == "eps" and config.distill.fit_share == 0
    bare = {k[4:]: v for k, v in state["students"]["2"].items() if k.startswith("net.")}
    student = students_from_state({"students": {"2": bare}}, config)[2]
    assert student.predict == "eps" and float(student.t_start) == 1.0
    x, t = torch.randn(3, 17, 3), torch.full((3,), 0.6)
    assert torch.equal(student(x, t, x, None), student.net(x, t, x, None))
    old["distill"]["students"] = ""  # a teacher of version 3 (no students) distils with today's defaults
    assert config_from_json(json.dumps(old)).distill.predict == "eps+v"


@pytest.fixture(scope="module")
def pose_student(trained_run, tmp_path_factory):
    """The same teacher distilled into students that predict the pose, start at t = 0.8 and double each round."""
    root = tmp_path_factory.mktemp("pose_student")
    res = run_module("run.distill", "--ckpt-dir", str(trained_run), "--steps", "2", "--minutes", "0.1",
                     "--ckpt-root", str(root), "--name", "x", "--config.distill.first_steps=4",
                     "--config.distill.pool=128", "--config.distill.batch_size=64", "--config.distill.predict=x",
                     "--config.distill.t_start=0.8", "--config.distill.round_growth=2")
    assert res.returncode == 0, res.stderr[-3000:]
    return root / "x"


def test_a_pose_student_from_below_t1_with_growing_rounds(pose_student, tmp_path, monkeypatch, capsys):
    state = load_checkpoint(pose_student / "best_model.pth")
    assert float(state["students"]["2"]["t_start"]) == pytest.approx(0.8)
    fit, *rounds = (r["minutes"] for r in state["distill"]["rounds"])
    four, two = rounds[0] + rounds[1], rounds[2] + rounds[3]  # each round's halving and end-to-end phases
    assert two > four  # round 2 had twice round 1's share (the updates' granularity blurs the exact ratio)
    code, out, err = run_main(eval_fc_mp_adv_3d, ["--ckpt-dir", str(pose_student), "--best", "--sampler",
                                                  "distilled", "--steps", "2", "--out", str(tmp_path), "est"],
                              monkeypatch, capsys)
    assert code == 0 and "2 network evaluations per sample" in out, err
    pred = np.load(tmp_path / "results.npz")["pred3d"]
    assert pred.shape[-2:] == (17, 3) and len(pred) > 0 and np.isfinite(pred).all()


@pytest.mark.parametrize("task", [["est"], ["comp2d", "--randj", "2"], ["comp3d", "--jlist", "right_leg"], ["gen"]])
def test_every_task_samples_with_a_student(distilled, task, tmp_path, monkeypatch, capsys):
    code, out, err = run_main(eval_fc_mp_adv_3d, ["--ckpt-dir", str(distilled), "--best", "--sampler", "distilled",
                                                  "--steps", "2", "--out", str(tmp_path), *task], monkeypatch, capsys)
    assert code == 0, err
    # the completion tasks add the budget recipe's reconstruction guidance: one more evaluation per step
    nfe = 4 if task[0].startswith("comp") else 2
    assert "distilled, 2 steps" in out and f"{nfe} network evaluations per sample" in out
    assert np.isfinite(np.load(tmp_path / "results.npz")["pred3d"]).all()


@pytest.fixture(scope="module")
def shipped_student(data_root, tmp_path_factory):
    """The shipped prior of real motion (a teacher worth copying) distilled for 12 s on the tiny data set."""
    root = tmp_path_factory.mktemp("shipped_student")
    (root / "teacher").mkdir()
    shutil.copy(SHIPPED_PRIOR / "checkpoint.pth", root / "teacher" / "checkpoint.pth")
    data = [f"--config.data.root={data_root}", "--config.data.train_file=synthetic_train.pkl",
            "--config.data.test_file=synthetic_test.pkl", "--config.detnoise.table="]  # (its table is in ../shared)
    res = run_module("run.distill", "--ckpt-dir", str(root / "teacher"), "--steps", "1", "--minutes", "0.2",
                     "--ckpt-root", str(root), "--name", "student", "--config.distill.first_steps=4",
                     "--config.distill.pool=128", "--config.distill.batch_size=64",
                     "--config.distill.end_share=0.3", *data)  # every round ends end to end
    assert res.returncode == 0, res.stderr[-3000:]
    return root / "student", data


def test_the_end_to_end_phase_trains_the_sampler_that_runs(shipped_student):
    """What the end-to-end phase differentiates (lib/distill.unrolled on step_coefficients) is, step for step, what
    the 'distilled' sampler of lib/sampling runs (its own grid and integrator): the same draws give the same poses.
    Every round of the fixture had its end-to-end share."""
    run, data = shipped_student
    prior = load_prior(run, overrides={item.removeprefix("--config.").split("=")[0]: item.split("=", 1)[1]
                                       for item in data})
    assert [r["target"] for r in load_checkpoint(run / "checkpoint.pth")["distill"]["rounds"]] == \
        ["fit", "distil", "end", "distil", "end", "distil", "end"]  # 4, 2, 1 steps
    task = estimation(load_data(prior.config, "test").cond2d(frames_of(prior.config))[:32])
    fn = build_score_fn(prior.model, prior.sde, prior.config, prior.students)
    for steps, student in prior.students.items():
        x_start = student.start(task.condition.shape, torch.Generator().manual_seed(steps), "cpu")
        start = dataclasses.replace(task, x_init=x_start, t_start=float(student.t_start))
        cfg = SamplerConfig(method="distilled", steps=steps)
        ran = sample(fn, prior.sde, start, cfg)[0]
        coefficients = step_coefficients(prior.sde, fn.student_grid, steps, cfg.eps, torch.device("cpu"),
                                         float(student.t_start))
        with torch.no_grad():
            trained = unrolled(student, x_start, task.condition, task.mask, coefficients)
        assert ran.abs().mean() > 0.1 and torch.allclose(trained, ran, atol=1e-4), (steps, (trained - ran).abs().max())


@pytest.fixture(scope="module")
def spread_student(shipped_student, tmp_path_factory):
    """The shipped prior distilled to 2 steps, with a share of the minutes for the stochastic twin (energy score)."""
    teacher, data = shipped_student[0].parent / "teacher", shipped_student[1]
    root = tmp_path_factory.mktemp("spread_student")
    res = run_module("run.distill", "--ckpt-dir", str(teacher), "--steps", "2", "--minutes", "0.3",
                     "--ckpt-root", str(root), "--name", "student", "--config.distill.first_steps=4",
                     "--config.distill.pool=128", "--config.distill.batch_size=64", "--config.distill.end_share=0.3",
                     "--config.distill.spread_share=0.5", "--config.distill.spread_draws=4", *data)
    assert res.returncode == 0, res.stderr[-3000:]
    return root / "student", data


def test_the_stochastic_twin_is_what_runs_with_noise(spread_student):
    """The last student (2 steps) gets a stochastic twin with weights of its own, and what its phase differentiates
    (lib/distill.unrolled of the twin with a generator) is, draw for draw, what the 'distilled' sampler runs with
    eta 1: the same start and noise draws give the same poses, other noise draws other poses. Without noise the
    sampler runs the student's own weights; a student without a twin adds the noise to its own steps. (The twin of
    this 9-second phase is moved further by hand, so that the two cannot be mistaken for each other.)"""
    run, data = spread_student
    state = load_checkpoint(run / "checkpoint.pth")
    assert [(r["steps"], r["target"]) for r in state["distill"]["rounds"]] == [
        (4, "fit"), (4, "distil"), (4, "end"), (2, "distil"), (2, "end"), (2, "spread")]
    assert state["distill"]["rounds"][-1]["updates"] > 0
    assert json.loads(state["config"])["distill"]["spread_share"] == 0.5
    prior = load_prior(run, overrides={item.removeprefix("--config.").split("=")[0]: item.split("=", 1)[1]
                                       for item in data})
    assert prior.students[4].stochastic is None
    two = prior.students[2]
    assert two.stochastic is not None and two.stochastic.stochastic is None
    own = {k: v for k, v in two.state_dict().items() if not k.startswith("stochastic.")}
    twins = two.stochastic.state_dict()
    assert own.keys() == twins.keys() and any(not torch.equal(own[k], twins[k]) for k in own)  # it trained
    with torch.no_grad():
        two.stochastic.v_head.bias.add_(0.05)
    task = estimation(load_data(prior.config, "test").cond2d(frames_of(prior.config))[:32])
    fn = build_score_fn(prior.model, prior.sde, prior.config, prior.students)
    for steps, student in prior.students.items():
        twin = student.stochastic or student
        x_start = student.start(task.condition.shape, torch.Generator().manual_seed(steps), "cpu")
        start = dataclasses.replace(task, x_init=x_start, t_start=float(student.t_start))
        cfg = SamplerConfig(method="distilled", steps=steps)
        noisy = sample(fn, prior.sde, start, dataclasses.replace(cfg, eta=1.0), torch.Generator().manual_seed(7))[0]
        plain = sample(fn, prior.sde, start, cfg)[0]
        coefficients = step_coefficients(prior.sde, fn.student_grid, steps, cfg.eps, torch.device("cpu"),
                                         float(student.t_start))
        with torch.no_grad():
            trained = unrolled(twin, x_start, task.condition, task.mask, coefficients, torch.Generator().manual_seed(7))
            other = unrolled(twin, x_start, task.condition, task.mask, coefficients, torch.Generator().manual_seed(8))
            own_noisy = unrolled(student, x_start, task.condition, task.mask, coefficients,
                                 torch.Generator().manual_seed(7))
            own = unrolled(student, x_start, task.condition, task.mask, coefficients)
        assert torch.allclose(trained, noisy, atol=1e-4), (steps, (trained - noisy).abs().max())
        assert (other - noisy).abs().mean() > 1e-2  # the noise of the steps before the last moves the pose
        assert torch.allclose(own, plain, atol=1e-4)  # without noise: the student itself
        assert ((own_noisy - noisy).abs().mean() > 1e-2) == (steps == 2)  # with noise: the twin where there is one


def test_a_twin_is_added_to_a_distilled_run(shipped_student, tmp_path, monkeypatch, capsys):
    """run.distill --twin gives one student of a distilled run (here the middle one, 2 of 4 / 2 / 1 steps) a
    stochastic twin in a new run folder; everything else is the run's. Each pool of the teacher's samples serves
    distill.spread_passes passes of updates, the last pool cut short by the clock. The new twin is trained with
    today's twin settings, not those the run stored for its own (here made those of an earlier version), unless the
    command line gives them."""
    run, data = shipped_student
    shutil.copytree(run, tmp_path / "source" / run.name)
    run = tmp_path / "source" / run.name
    state = load_checkpoint(run / "checkpoint.pth")
    stored = json.loads(state["config"])
    stored["distill"] |= {"spread_distance": "pose", "spread_power": 1.0, "spread_passes": 1, "spread_draws": 16}
    save_checkpoint(state | {"config": json.dumps(stored)}, run / "checkpoint.pth")
    pools = []
    spread_pool = Distiller._spread_pool

    def counted(self, *args):
        out = spread_pool(self, *args)
        pools.append(len(out[0]))  # the conditions of this pool
        return out

    monkeypatch.setattr(Distiller, "_spread_pool", counted)
    distances = set()

    def score(x, y, distance, power):
        distances.add((distance, power))
        return energy_score(x, y, distance, power)

    monkeypatch.setattr(distill_lib, "energy_score", score)
    code, out, err = run_main(distill_cli, ["--ckpt-dir", str(run), "--twin", "--steps", "2", "--minutes", "0.15",
                                            "--ckpt-root", str(tmp_path), "--config.distill.spread_passes=3",
                                            "--config.distill.spread_draws=4", "--config.distill.batch_size=256",
                                            "--config.fast.stochastic_steps=10", *data], monkeypatch, capsys)
    assert code == 0, err
    assert "the student of 2 steps with a stochastic twin" in out
    before, after = load_checkpoint(run / "checkpoint.pth"), load_checkpoint(tmp_path / "student_twin" /
                                                                             "checkpoint.pth")
    assert after["distill"]["scores"] == before["distill"]["scores"]
    rounds = after["distill"]["rounds"]
    assert rounds[:-1] == before["distill"]["rounds"] and (rounds[-1]["steps"], rounds[-1]["target"]) == (2, "spread")
    per_pass = [rows // (256 // 4) for rows in pools]  # updates of one pass over a pool: its conditions / batch
    assert len(pools) >= 2 and 3 * sum(per_pass[:-1]) < rounds[-1]["updates"] <= 3 * sum(per_pass)
    twin_settings = json.loads(after["config"])["distill"]
    assert (twin_settings["spread_passes"], twin_settings["spread_draws"]) == (3, 4)  # the command line's
    assert distances == {("mpjpe", 0.5)}  # today's distill.spread_distance and spread_power, not the run's
    for steps, weights in after["students"].items():
        twin = {k: v for k, v in weights.items() if k.startswith("stochastic.")}
        assert bool(twin) == (steps == "2")
        assert all(torch.equal(v, before["students"][steps][k]) for k, v in weights.items() if k not in twin)
    prior = load_prior(tmp_path / "student_twin", overrides={
        item.removeprefix("--config.").split("=")[0]: item.split("=", 1)[1] for item in data})
    assert prior.students[2].stochastic is not None and prior.students[4].stochastic is None
    code, _, err = run_main(distill_cli, ["--ckpt-dir", str(run), "--twin", "--steps", "8", "--ckpt-root",
                                          str(tmp_path / "no"), *data], monkeypatch, capsys)
    assert code == 2 and "has no student of 8 steps (it has 4,2,1)" in err and err.count("\n") == 1
    assert not (tmp_path / "no").exists()


def test_a_twin_may_start_its_steps_elsewhere(shipped_student, tmp_path, monkeypatch, capsys):
    """distill.twin_t_start = 0.6 for a student whose steps start at T: the twin carries t_start 0.6 and trains on a
    grid from there (every step its phase unrolls starts at one of that grid's times, the first at 0.6); the
    'distilled' sampler with eta 1 draws its start from the twin's data-matched Gaussian at 0.6 and runs that grid,
    draw for draw what lib/distill.unrolled computes (start and noise from one generator). The student itself, its
    start and its weights stay the run's."""
    run, data = shipped_student
    times = set()

    def recorded(student, x, condition, mask, coefficients, generator=None):
        times.update(round(float(t), 6) for t in coefficients[0])
        return unrolled(student, x, condition, mask, coefficients, generator)

    monkeypatch.setattr(distill_lib, "unrolled", recorded)
    code, out, err = run_main(distill_cli, ["--ckpt-dir", str(run), "--twin", "--steps", "2", "--minutes", "0.05",
                                            "--ckpt-root", str(tmp_path), "--config.distill.twin_t_start=0.6",
                                            "--config.distill.spread_draws=4", "--config.distill.batch_size=256",
                                            "--config.fast.stochastic_steps=10", *data], monkeypatch, capsys)
    assert code == 0, err
    prior = load_prior(tmp_path / "student_twin", overrides={
        item.removeprefix("--config.").split("=")[0]: item.split("=", 1)[1] for item in data})
    student, twin = prior.students[2], prior.students[2].stochastic
    grid = step_coefficients(prior.sde, prior.config.fast.deterministic_schedule, 2, 1e-3, torch.device("cpu"), 0.6)
    assert float(grid[0][0]) == pytest.approx(0.6) and times == {round(float(t), 6) for t in grid[0]}
    assert float(twin.t_start) == pytest.approx(0.6) and float(student.t_start) == 1.0
    before = load_checkpoint(run / "checkpoint.pth")["students"]["2"]
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in before.items())
    task = estimation(load_data(prior.config, "test").cond2d(frames_of(prior.config))[:32])
    fn = build_score_fn(prior.model, prior.sde, prior.config, prior.students)
    noisy = sample(fn, prior.sde, task, SamplerConfig(method="distilled", steps=2, eta=1.0),
                   torch.Generator().manual_seed(7))[0]
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        x_start = twin.start(task.condition.shape, gen, "cpu")  # N(alpha mean, alpha^2 std^2 + sigma^2) at 0.6
        want = unrolled(twin, x_start, task.condition, task.mask, grid, gen)
    assert torch.allclose(noisy, want, atol=1e-4), (noisy - want).abs().max()


def test_the_twin_kept_is_the_candidate_with_the_least_validation_oracle(shipped_student, tmp_path, monkeypatch,
                                                                          capsys):
    """distill.twin_candidates = 3: three twins from their own draws share the minutes, each is scored on the
    validation rows (Monitor's oracle, tests/test_training.py), and the one with the least oracle is saved. The
    scores are replaced here by 5, 3 and 4 mm after the real ones ran, so the second candidate must be kept."""
    run, data = shipped_student
    made, seconds, real = [], [], []
    round_, oracle = Distiller._round, Distiller._twin_oracle

    def kept_round(self, *args, **kwargs):
        out = round_(self, *args, **kwargs)
        if kwargs.get("target") == "spread":
            made.append(copy.deepcopy(out.state_dict()))
            seconds.append(args[4])
        return out

    def stub_oracle(self, *args):
        real.append(oracle(self, *args))
        return [5.0, 3.0, 4.0][len(real) - 1]

    monkeypatch.setattr(Distiller, "_round", kept_round)
    monkeypatch.setattr(Distiller, "_twin_oracle", stub_oracle)
    code, out, err = run_main(distill_cli, ["--ckpt-dir", str(run), "--twin", "--steps", "2", "--minutes", "0.15",
                                            "--ckpt-root", str(tmp_path), "--config.distill.twin_candidates=3",
                                            "--config.distill.twin_hypo=4", "--config.distill.spread_draws=4",
                                            "--config.distill.batch_size=256", "--config.fast.stochastic_steps=10",
                                            *data], monkeypatch, capsys)
    assert code == 0, err
    assert "kept of 3 candidates by their S = 4 oracle P1 on the validation rows: 5.00, 3.00, 4.00 mm" in out
    assert len(made) == 3 and all(math.isfinite(v) and v > 0 for v in real), real
    assert not torch.equal(made[0]["net.post_dense.weight"], made[1]["net.post_dense.weight"])  # their own draws
    after = load_checkpoint(tmp_path / "student_twin" / "checkpoint.pth")
    rounds = after["distill"]["rounds"][-3:]
    assert [(r["target"], r["oracle"], r["kept"]) for r in rounds] == [("spread", 5.0, False), ("spread", 3.0, True),
                                                                       ("spread", 4.0, False)]
    assert seconds == pytest.approx([3.0, 3.0, 3.0])  # each a third of 0.15 minutes
    twin = {k.removeprefix("stochastic."): v for k, v in after["students"]["2"].items() if k.startswith("stochastic.")}
    assert twin.keys() == made[1].keys() and all(torch.equal(v, made[1][k]) for k, v in twin.items())


def test_the_students_reproduce_their_teacher_in_fewer_steps(shipped_student):
    """The expectation comes from the teacher's own sampler (lib/sampling, checked against the paper's code in
    tests/test_golden.py), not from the distillation: from the same initial states and conditions, the students of 2
    and 1 steps land much nearer the states their teacher reaches in 8 (the fast deterministic sampler, twice the
    first student's steps) than the teacher's own network does in as few steps on the same grid."""
    run, data = shipped_student
    prior = PosePrior.from_checkpoint(run, best=False)
    config, sde, fn = prior.config, prior.sde, prior.score_fn()
    apply_overrides(config, dict(parse_override(config, item.removeprefix("--config.")) for item in data))
    task = estimation(load_data(config, "test").cond2d(prior.frames)[:64])
    grid = config.fast.deterministic_schedule

    def final(cfg: SamplerConfig) -> torch.Tensor:  # [64, 17, 3] from the same x_T for every sampler
        return sample(fn, sde, task, cfg, torch.Generator().manual_seed(0))[0]

    teacher = final(SamplerConfig(method=config.fast.deterministic, steps=8, schedule=grid))
    for steps in (2, 1):
        student = final(SamplerConfig(method="distilled", steps=steps))
        undistilled = final(SamplerConfig(method="drift_ddim", steps=steps, schedule=grid))
        gap, before = ((x - teacher).norm(dim=-1).mean() for x in (student, undistilled))
        assert gap < 0.3 * before, (steps, gap, before)


def test_fast_takes_the_student_its_gate_allows(distilled, tmp_path, monkeypatch, capsys):
    """The gate as shipped (distill.fast_tolerance 3 %): --fast takes the student with the fewest steps whose
    validation P1 (run.distill's scores) is within 3 % of the teacher's fast sampler, applied here by hand."""
    state = load_checkpoint(distilled / "best_model.pth")
    scores, config = state["distill"]["scores"], config_from_json(state["config"])
    within = [s for s in (4, 2, 1) if scores[f"student {s}"]["p1"] <= 1.03 * scores["teacher"]["p1"]]
    assert config.distill.fast_tolerance == 0.03 and config.distill.fast_steps == min(within, default=0)
    code, out, err = run_main(eval_fc_mp_adv_3d, ["--ckpt-dir", str(distilled), "--best", "--pflow", "--fast",
                                                  "--out", str(tmp_path), "est"], monkeypatch, capsys)
    fast = f"distilled, {min(within)} steps" if within else f"{config.fast.deterministic}, " \
        f"{config.fast.deterministic_steps} steps"
    assert code == 0 and f"fast: {fast}" in out, (out, err)


def test_fast_picks_a_gated_student_and_the_api_too(distilled, tmp_path, monkeypatch, capsys):
    """A student that passed its gate (here set so by hand) is --fast's sampler on the command line and in the API."""
    state = load_checkpoint(distilled / "best_model.pth")
    config = config_from_json(state["config"])
    config.distill.fast_steps = 1
    (tmp_path / "run").mkdir()
    save_checkpoint(state | {"config": config_to_json(config)}, tmp_path / "run" / "best_model.pth")
    code, out, err = run_main(eval_fc_mp_adv_3d, ["--ckpt-dir", str(tmp_path / "run"), "--best", "--pflow", "--fast",
                                                  "--out", str(tmp_path), "est"], monkeypatch, capsys)
    assert code == 0 and "fast: distilled, 1 steps" in out, (out, err)
    prior = PosePrior.from_checkpoint(tmp_path / "run")
    prior.config.fast.bf16 = False  # (--fast adds bf16 where it is native: the same numbers only in fp32)
    kps = np.random.default_rng(0).normal(0, 0.2, (5, 17, 2))
    one = prior.estimate(kps, pflow=True, fast=True)
    assert one.shape == (5, 1, 17, 3) and np.isfinite(one).all()
    assert np.allclose(one, prior.estimate(kps, method="distilled", steps=1))
    den = prior.denoise(np.zeros((3, 17, 3)), method="distilled", steps=1)
    assert den.shape == (3, 17, 3)


def test_fast_keeps_the_teachers_sampler_where_the_task_imputes(distilled, tmp_path, monkeypatch, capsys):
    """The gate measures the student on estimation, which imputes nothing: on comp3d (the observation imputed)
    --fast is the teacher's fast sampler, on the command line and in the API, while est keeps the student; a
    student asked for by name still runs there."""
    state = load_checkpoint(distilled / "best_model.pth")
    config = config_from_json(state["config"])
    config.distill.fast_steps = 1
    (tmp_path / "run").mkdir()
    save_checkpoint(state | {"config": config_to_json(config)}, tmp_path / "run" / "best_model.pth")
    teacher = f"fast: {config.fast.deterministic}, {config.fast.deterministic_steps} steps"
    for task, says in ((["comp3d", "--jlist", "right_leg"], teacher), (["est"], "fast: distilled, 1 steps")):
        code, out, err = run_main(eval_fc_mp_adv_3d, ["--ckpt-dir", str(tmp_path / "run"), "--best", "--pflow",
                                                      "--fast", "--out", str(tmp_path / task[0]), *task], monkeypatch,
                                  capsys)
        assert code == 0 and says in out, (task, out, err)
    prior = PosePrior.from_checkpoint(tmp_path / "run")
    plain = PosePrior.from_checkpoint(tmp_path / "run")
    plain.config.distill.fast_steps = 0  # --fast without a student: the teacher's fast sampler
    for p in (prior, plain):
        p.config.fast.bf16 = False
    pose = np.random.default_rng(1).normal(0, 0.2, (4, 17, 3))
    legs = np.zeros(17, bool)
    legs[[1, 2, 3]] = True
    fast = prior.complete_3d(pose, legs, pflow=True, fast=True)
    assert np.allclose(fast, plain.complete_3d(pose, legs, pflow=True, fast=True))
    assert not np.allclose(fast, prior.complete_3d(pose, legs, method="distilled", steps=1))


def test_distillation_refuses_what_it_cannot_do(distilled, trained_run, tmp_path, monkeypatch, capsys):
    code, _, err = run_main(distill_cli, ["--ckpt-dir", str(distilled), "--ckpt-root", str(tmp_path)], monkeypatch,
                            capsys)
    assert code == 2 and "already distilled" in err and err.count("\n") == 1
    code, _, err = run_main(distill_cli, ["--ckpt-dir", str(trained_run), "--steps", "3", "--ckpt-root",
                                          str(tmp_path)], monkeypatch, capsys)
    assert code == 2 and "--steps must divide distill.first_steps" in err
    code, _, err = run_main(distill_cli, ["--ckpt-dir", str(trained_run), "--twin", "--ckpt-root", str(tmp_path)],
                            monkeypatch, capsys)
    assert code == 2 and "carries no students; --twin gives a distilled run's student a twin" in err
    for flag, says in (("--config.distill.predict=eps", "distill.fit_share (0.1) cannot take effect with "
                                                        "distill.predict=eps"),
                       ("--config.distill.predict=eps+x", "distill.predict = 'eps+x' must be one of eps, eps+v, v, x"),
                       ("--config.distill.t_start=0", "distill.t_start = 0.0 must be >= 0.1"),
                       ("--config.distill.spread_power=1.5", "distill.spread_power = 1.5 must be <= 1"),
                       ("--config.distill.spread_share=0.9", "distill.fit_share (0.1) and distill.spread_share (0.9) "
                                                             "leave no minutes for the students' rounds"),
                       ("--config.distill.spread_draws=4", "distill.spread_draws (4) cannot take effect with "
                                                           "distill.spread_share=0"),
                       ("--config.distill.spread_passes=2", "distill.spread_passes (2) cannot take effect with "
                                                            "distill.spread_share=0"),
                       ("--config.distill.spread_distance=pose", "distill.spread_distance (pose) cannot take effect "
                                                                 "with distill.spread_share=0"),
                       ("--config.distill.spread_power=1", "distill.spread_power (1.0) cannot take effect with "
                                                           "distill.spread_share=0"),
                       ("--config.distill.twin_candidates=3", "distill.twin_candidates (3) cannot take effect with "
                                                              "distill.spread_share=0"),
                       ("--config.distill.twin_candidates=0", "distill.twin_candidates = 0 must be >= 1"),
                       ("--config.distill.twin_t_start=0.6", "distill.twin_t_start (0.6) cannot take effect with "
                                                             "distill.spread_share=0"),
                       ("--config.distill.twin_t_start=1.5", "distill.twin_t_start = 1.5 must be <= 1")):
        code, _, err = run_main(distill_cli, ["--ckpt-dir", str(trained_run), "--ckpt-root", str(tmp_path), flag],
                                monkeypatch, capsys)
        assert code == 2 and says in err and err.count("\n") == 1, (flag, err)
    assert not any(tmp_path.iterdir())  # nothing written
    code, _, err = run_main(eval_fc_mp_adv_3d, ["--ckpt-dir", str(trained_run), "--sampler", "distilled", "--steps",
                                                "4", "--out", str(tmp_path), "est"], monkeypatch, capsys)
    assert code == 2 and "carries no student for 4 steps" in err
    with pytest.raises(ToolkitError, match="no student for 8 steps"):
        PosePrior.from_checkpoint(distilled).estimate(np.zeros((1, 17, 2)), method="distilled", steps=8)


def test_the_benchmark_sets_two_runs_students_of_one_teacher_side_by_side(distilled, pose_student, tmp_path):
    res = run_module("run.benchmark", "--sections", "distill", "--ckpt-dir", f"{distilled},{pose_student}",
                     "--poses", "12", "--poses-multi", "3", "--json", str(tmp_path / "b.json"))
    assert res.returncode == 0, res.stderr[-3000:]
    every = json.loads((tmp_path / "b.json").read_text())["rows"]
    rows = [r for r in every if r["setting"] == "est S=1, deterministic"]
    names = [r["variant"] for r in rows]
    assert len(names) == 2 + 3 + 2  # drift 1000, drift_2m 20, the students 4, 2, 1 and 4, 2 of the two runs
    stochastic = {split: [r["variant"] for r in every if r["setting"] == f"est S=20, stochastic{split}"]
                  for split in ("", ", validation rows")}  # em 1000, ddim 50 and the students, on both splits
    assert len(stochastic[""]) == 2 + 3 + 2 and stochastic[", validation rows"] == stochastic[""]
    assert rows[0]["ratio"] == 1.0 and [r["nfe"] for r in rows[2:]] == [4, 2, 1, 4, 2]
    scores = load_checkpoint(pose_student / "checkpoint.pth")["distill"]["scores"]
    ratio = scores["student 2"]["p1"] / scores["teacher"]["p1"]
    assert names[-1] == f"student, 2 steps (x, x; validation {ratio:.3f}x the teacher's fast sampler)"
    assert names[2].startswith("student, 4 steps (student, eps+v; validation ")
    state = load_checkpoint(pose_student / "checkpoint.pth")  # the same students beside another teacher: refused
    state["model_state_dict"]["post_dense.bias"] = state["model_state_dict"]["post_dense.bias"] + 1
    (tmp_path / "other").mkdir()
    save_checkpoint(state, tmp_path / "other" / "checkpoint.pth")
    res = run_module("run.benchmark", "--sections", "distill", "--ckpt-dir", f"{distilled},{tmp_path / 'other'}",
                     "--json", str(tmp_path / "c.json"))
    assert res.returncode == 2 and "distilled from another teacher" in res.stderr
    assert not (tmp_path / "c.json").exists()


def test_the_benchmarks_config_seed_is_the_seed_the_runs_sample_with(distilled, detector_table, tmp_path):
    """--config.seed reaches the runs the distill section scores: another seed draws other S = 20 hypotheses, the
    run's own seed given again reproduces the default to the digit. A network field there, any field with the
    budget section alone, and the detector's table given two ways to two values cannot take effect (one line,
    exit 2, nothing written)."""
    def s20(name: str, *flags: str) -> list[float]:
        res = run_module("run.benchmark", "--sections", "distill", "--ckpt-dir", str(distilled), "--poses", "2",
                         "--poses-multi", "2", "--json", str(tmp_path / name), *flags)
        assert res.returncode == 0, res.stderr[-3000:]
        rows = json.loads((tmp_path / name).read_text())["rows"]
        return [r["value"] for r in rows if r["setting"].startswith("est S=20")]

    seed = load_prior(distilled).config.seed
    default, again = s20("a.json"), s20("b.json", f"--config.seed={seed}")
    other = s20("c.json", f"--config.seed={seed + 1}")
    assert again == default and len(default) == 2 * (2 + 3)  # em 1000, ddim 50, students 4, 2, 1; test and val
    assert all(a != b for a, b in zip(default, other, strict=True))
    for flags, says in ((["--sections", "distill", "--config.model.hidden_dim=64"],
                         "--config.model.hidden_dim=64 cannot take effect: it sets the network of the sampling"),
                        (["--sections", "budget", "--config.seed=3"],
                         "--config.seed=3 cannot take effect: the budget section"),
                        (["--sections", "distill", "--detector-table", detector_table,
                          f"--config.eval.detector_table={tmp_path / 'other.json'}"], "disagree")):
        res = run_module("run.benchmark", "--ckpt-dir", str(distilled), "--json", str(tmp_path / "e.json"), *flags)
        assert res.returncode == 2 and says in res.stderr and res.stderr.count("\n") == 1, res.stderr[-2000:]
    assert not (tmp_path / "e.json").exists()
