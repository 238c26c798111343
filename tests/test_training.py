"""Loss and masking, a short training run, exact resume, atomic checkpoints, DDP under torchrun."""
from __future__ import annotations

import fcntl
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from lib.builders import build_model, frames_of
from lib.checkpoint import load_checkpoint, save_checkpoint
from lib.config_utils import apply_overrides, parse_override, validate_config
from lib.data import load_data
from lib.errors import ToolkitError
from lib.losses import random_condition_mask
from lib.skeleton import PARTS
from lib.train import Monitor, train
from tests.helpers import ROOT, overrides, run_module, tiny_config


def test_condition_masks():
    torch.manual_seed(0)
    assert torch.equal(random_condition_mask(50, 17, 1.0, 0.0, 0.0, "cpu"), torch.zeros(50, 17, 3))
    assert torch.equal(random_condition_mask(50, 17, 0.0, 0.0, 0.0, "cpu"), torch.ones(50, 17, 3))
    part = random_condition_mask(200, 17, 0.0, 1.0, 0.0, "cpu")[..., 0]  # [B, J]
    dropped = [tuple(torch.nonzero(row == 0).flatten().tolist()) for row in part]
    assert set(dropped) <= {tuple(sorted(v)) for v in PARTS.values()} and len(set(dropped)) == 5
    joint = random_condition_mask(200, 17, 0.0, 0.0, 1.0, "cpu")
    assert ((joint[..., 0] == 0).sum(1) == 1).all()
    mixed = random_condition_mask(20000, 17, 0.1, 0.1, 0.1, "cpu")
    assert abs(float((mixed.sum((1, 2)) == 0).float().mean()) - 0.1) < 0.01


def test_training_writes_run_and_loss_decreases(trained_run):
    for name in ("checkpoint.pth", "best_model.pth", "config.json", "log.txt"):
        assert (trained_run / name).is_file()
    assert any((trained_run / "tb").iterdir())
    state = torch.load(trained_run / "checkpoint.pth", weights_only=True)  # safe format
    assert state["step"] == 30 and "optimizer_state_dict" in state and "config" in state
    assert isinstance(state["optimizer_state_dict"]["param_groups"][0]["lr"], float)
    losses = [float(line.split("loss ")[1].split(",")[0]) for line in (trained_run / "log.txt").read_text().splitlines()
              if ": loss " in line]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert json.loads((trained_run / "config.json").read_text())["model"]["hidden_dim"] == 64


def test_resume_is_exact(tmp_path, data_root):
    config = tiny_config(data_root)
    # a schedule that does not depend on n_iters (the paper's), so that a 10-step run is the first half of a 20
    config.optim.schedule, config.model.ema_halflife = "constant", 0.0
    config.training.n_iters = 20
    config.training.eval_every = 0
    straight = train(config, tmp_path / "straight")
    config.training.n_iters = 10
    train(config, tmp_path / "resumed")
    config.training.n_iters = 20
    resumed = train(config, tmp_path / "resumed", restore_dir=tmp_path / "resumed")
    assert straight["step"] == resumed["step"] == 20
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pth")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pth")
    for k, v in a["model_state_dict"].items():
        assert torch.equal(v, b["model_state_dict"][k]), k
    for x, y in zip(a["ema"]["shadow_params"], b["ema"]["shadow_params"], strict=True):
        assert torch.equal(x, y)


def test_restore_dir_missing(tmp_path, data_root):
    with pytest.raises(ToolkitError, match="holds no checkpoint.pth"):
        train(tiny_config(data_root), tmp_path / "x", restore_dir=tmp_path / "nowhere")


def test_atomic_save_keeps_last_good_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pth"
    save_checkpoint({"model_state_dict": {"w": torch.ones(2)}}, path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # a kill in the middle of writing

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint({"model_state_dict": {"w": torch.zeros(2)}}, path)
    assert torch.equal(load_checkpoint(path)["model_state_dict"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pth"]


def test_config_overrides():
    config = tiny_config("x")
    items = ["model.hidden_dim=128", "data.flip=false", "optim.lr=1e-3", "sampling.method=dpm2m"]
    apply_overrides(config, dict(parse_override(config, item) for item in items))
    assert config.model.hidden_dim == 128 and config.data.flip is False and config.sampling.method == "dpm2m"
    assert build_model(config).pre_dense.out_features == 128
    for bad, msg in (("model.hiden_dim=3", "unknown config field"), ("model.hidden_dim=1.5", "whole number"),
                     ("nosection.a=1", "unknown config section"), ("data.flip=maybe", "true or false"),
                     ("model=3", "unknown config field")):
        with pytest.raises(ToolkitError, match=msg):
            parse_override(config, bad)
    with pytest.raises(ToolkitError, match="model.hidden_dim=512 cannot take effect: trained"):
        apply_overrides(config, {"model.hidden_dim": 512}, lambda key: "trained" if key.startswith("model.") else None)


@pytest.mark.slow
def test_torchrun_two_process_training(tmp_path, data_root):
    config = tiny_config(data_root)
    config.training.n_iters = 6
    config.training.eval_every = 3
    res = run_module("run.train_fc_adv_3d", "--config", "configs/subvp/synthetic_small.py", "--name", "ddp",
                     "--ckpt-root", str(tmp_path), *overrides(config), torchrun=2)
    assert res.returncode == 0, res.stderr[-3000:]
    log = (tmp_path / "ddp" / "log.txt").read_text()
    assert "2 ranks" in log and "parameters and EMA identical on all 2 ranks" in log
    assert load_checkpoint(tmp_path / "ddp" / "checkpoint.pth")["step"] == 6


@pytest.mark.slow
@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_save_and_exit_with_their_code(tmp_path, data_root, sig, code):
    config = tiny_config(data_root)
    config.training.n_iters = 10_000_000
    config.training.eval_every = 0
    config.training.snapshot_every = 0
    cmd = [sys.executable, "-m", "run.train_fc_adv_3d", "--config", "configs/subvp/synthetic_small.py",
           "--name", "stop", "--ckpt-root", str(tmp_path), *overrides(config)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = tmp_path / "stop" / "log.txt"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (log.is_file() and ": loss " in log.read_text()):
        time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    last = err.strip().splitlines()[-1]
    assert proc.returncode == code and last.startswith(f"stopped by {sig.name} at step"), err[-2000:]
    assert load_checkpoint(tmp_path / "stop" / "checkpoint.pth")["step"] >= 10
    assert not _locked(tmp_path / "stop")  # the lock went with the process


def _locked(workdir) -> bool:
    """Whether a live process holds the run folder's lock."""
    fd = os.open(workdir / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def test_run_folder_is_never_overwritten_by_accident(trained_run, data_root, tmp_path):
    before = (trained_run / "best_model.pth").read_bytes()
    with pytest.raises(ToolkitError, match="already holds .*--restore-dir.*--overwrite"):
        train(tiny_config(data_root), trained_run)
    assert (trained_run / "best_model.pth").read_bytes() == before
    work = tmp_path / "locked"
    work.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], "
                               "os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); "
                               "time.sleep(60)", str(work / ".lock")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"  # a live run holds the folder
    try:
        with pytest.raises(ToolkitError, match="in use by a live run"):
            train(tiny_config(data_root), work)
    finally:
        holder.kill()
        holder.wait()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (work / f".checkpoint.tmp-{dead.pid}.pth").write_bytes(b"partial")  # a killed writer's half-written file
    config = tiny_config(data_root)
    config.training.n_iters, config.training.eval_every = 2, 0
    train(config, work)
    assert sorted(p.name for p in work.iterdir() if p.name.startswith(".")) == [".lock"]
    assert load_checkpoint(work / "checkpoint.pth")["step"] == 2


def test_two_starts_at_the_same_instant_cannot_share_a_folder(data_root, tmp_path):
    """The lock is taken before the data are loaded: of two runs started together on one --name, one refuses."""
    config = tiny_config(data_root)
    config.training.n_iters, config.training.eval_every = 20, 0
    cmd = [sys.executable, "-m", "run.train_fc_adv_3d", "--config", "configs/subvp/synthetic_small.py", "--name",
           "same", "--ckpt-root", str(tmp_path), *overrides(config)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    codes = sorted(r[2] for r in results)
    assert codes == [0, 2], results
    refused = next(r for r in results if r[2] == 2)[1]
    assert "in use by a live run" in refused or "already holds" in refused, refused
    assert (tmp_path / "same" / "log.txt").read_text().count("training on") == 1


def test_overwrite_keeps_the_old_run_until_the_new_one_saves(trained_run, data_root, tmp_path, monkeypatch):
    import shutil

    import lib.train

    work = tmp_path / "run"
    shutil.copytree(trained_run, work)
    old_best = (work / "best_model.pth").read_bytes()
    config = tiny_config(data_root)
    config.training.n_iters, config.training.eval_every, config.training.snapshot_every = 4, 0, 0

    def crash(*args, **kwargs):
        raise ToolkitError("simulated failure before the first checkpoint")

    monkeypatch.setattr(lib.train, "get_step_fn", crash)
    with pytest.raises(ToolkitError, match="simulated failure"):
        train(config, work, overwrite=True)
    assert (work / "best_model.pth").read_bytes() == old_best  # put back as it was
    assert not [p for p in work.iterdir() if p.name.startswith(".replaced-")]
    monkeypatch.undo()
    train(config, work, overwrite=True)
    assert load_checkpoint(work / "checkpoint.pth")["step"] == 4
    assert load_checkpoint(work / "best_model.pth")["step"] == 4  # the new run's, not the old one beside it
    assert not [p for p in work.iterdir() if p.name.startswith(".replaced-")]


def _fast_learner(data_root, n_iters: int):
    """A small recipe that learns placement quickly (the budget recipe's settings, data scale 5)."""
    config = tiny_config(data_root)
    config.model.hidden_dim, config.model.embed_dim = 128, 64
    config.data.scale, config.data.use_gt_2d = 5.0, True
    config.training.batch_size, config.training.n_iters, config.training.log_every = 256, n_iters, 100
    config.training.eval_every = n_iters // 4
    config.optim.lr, config.optim.schedule, config.optim.warmup_frac = 3e-3, "cosine", 0.05
    config.model.ema_halflife = 0.05
    config.monitor.steps, config.monitor.max_poses = 20, 120
    return config


def test_the_monitor_and_the_loss_fall(tmp_path, data_root):
    """The monitor samples with the deterministic sampler (drift_2m, the fast form of the paper's --pflow) and
    scores the paper's P1; the best checkpoint is the one it ranks first.

    Bounds set over seeds 42, 1, 2, 3, each with the CPU's own kernels and with ATEN_CPU_CAPABILITY=default (8 runs):
    the first evaluation's P1 fell 11-60x by the last (bound 5x: a margin of 2.2x on the worst run) and the logged
    loss 5.3-5.7x from its first value (bound 3x: a margin of 1.8x). The final P1 itself (101-678 mm against the mean
    pose's 204) depends on the kernels and the seed, and is not asserted."""
    summary = train(_fast_learner(data_root, 1200), tmp_path / "run")
    history = json.loads((tmp_path / "run" / "monitor.json").read_text())
    p1 = [h["p1"] for h in history]
    losses = [float(v) for v in re.findall(r"step \d+: loss ([\d.]+)", (tmp_path / "run" / "log.txt").read_text())]
    assert len(p1) == 4 and p1[-1] < p1[0] / 5, (p1, summary)
    assert len(losses) == 12 and losses[-1] < losses[0] / 3, losses
    assert summary["best_p1"] == min(p1) and (tmp_path / "run" / "learning_curve.png").is_file()
    best = load_checkpoint(tmp_path / "run" / "best_model.pth")
    assert best["best_metric"] == min(p1) and "pose_stats" in best


def test_a_budget_run_ends_on_time_on_its_schedule_after_a_slow_start(tmp_path, data_root, monkeypatch):
    """The schedule follows the share of the budget spent, not a step count fitted once: with a clock that the steps
    advance (a fake one: 0.05 s a step while the run is in its first half, a busy machine; 0.005 s after), the run
    ends when the budget is spent (6 s: 60 or 61 slow steps, then fast ones to 6 s), with its last step at the final
    learning rate, whatever the real time was."""
    import lib.train

    config = _fast_learner(data_root, 0)
    config.training.budget_minutes, config.training.eval_every, config.training.log_every = 0.1, 100, 50
    config.optim.lr_final = 0.1
    real = lib.train.get_step_fn
    now, steps = [0.0], {"slow": 0, "fast": 0}

    def clocked(*args):
        step_fn = real(*args)

        def step(state, batch):
            slow = state.progress.value < 0.5
            now[0] += 0.05 if slow else 0.005
            steps["slow" if slow else "fast"] += 1
            return step_fn(state, batch)
        return step

    monkeypatch.setattr(lib.train, "get_step_fn", clocked)
    summary = train(config, tmp_path / "run", clock=lambda: now[0])
    assert summary["reason"] == "budget of 0.1 min"
    assert abs(summary["minutes"] - 0.1) < 0.01 / 60, summary  # the budget, to a step of the clock
    assert 60 <= steps["slow"] <= 61 and 6.0 <= 0.05 * steps["slow"] + 0.005 * steps["fast"] < 6.0 + 0.0051, steps
    assert abs(summary["lr"] - config.optim.lr * config.optim.lr_final) < 1e-9  # the cosine ended at its final value
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "a budget of 0.1 min" in log and "(budget of 0.1 min)" in log
    assert json.loads((tmp_path / "run" / "config.json").read_text())["training"]["n_iters"] == 0


def test_a_run_length_is_given_once():
    config = tiny_config("x")
    config.training.budget_minutes = 5.0
    with pytest.raises(ToolkitError, match="both set the length of the run"):
        validate_config(config)
    config.training.n_iters, config.training.budget_minutes = 0, 0.0
    with pytest.raises(ToolkitError, match="both leave open the length of the run"):
        validate_config(config)


def test_learning_rate_and_ema_schedules_follow_the_runs_progress():
    from lib.schedule import ema_decay, learning_rate

    config = tiny_config("x")
    config.optim.lr, config.optim.warmup = 1.0, 10
    config.optim.schedule, config.optim.warmup_frac, config.model.ema_halflife = "constant", 0.0, 0.0
    # the paper's: warm-up over 10 steps, then constant
    assert learning_rate(config, 0, 0.01) == 0.1 and learning_rate(config, 9, 0.1) == 1.0
    assert learning_rate(config, 99, 1.0) == 1.0
    config.optim.schedule, config.optim.lr_final = "cosine", 0.1  # a warm-up in steps: the decay spans all of p
    assert abs(learning_rate(config, 9, 0.1) - (0.1 + 0.45 * (1 + math.cos(0.1 * math.pi)))) < 1e-12
    assert abs(learning_rate(config, 99, 1.0) - 0.1) < 1e-12
    config.optim.warmup_frac = 0.2  # warm-up over 20 % of the run, then half way through the decay at p = 0.6
    assert abs(learning_rate(config, 5, 0.1) - 0.5) < 1e-12
    assert abs(learning_rate(config, 50, 0.6) - (0.1 + 0.9 * 0.5)) < 1e-12
    assert config.model.ema_rate == ema_decay(config, 0.01)
    config.model.ema_halflife = 0.1
    assert abs(ema_decay(config, 0.01) ** 10 - 0.5) < 1e-12  # ten steps of 1 % each: a half-life of 10 %
    assert abs(ema_decay(config, 0.05) - 0.5 ** 0.5) < 1e-12  # a slow step (5 % of the run) decays more


def test_the_monitors_oracle_is_the_best_of_s_hypotheses(data_root, monkeypatch):
    """Hypotheses made by hand in camera mm: every joint moved 30 mm in x, 10 mm in depth or 20 mm in y, in an order
    that changes with the row. The oracle is 10 mm whatever the order (the mean over S would be 20, the first
    hypothesis 30 or 20); P1 is the first hypothesis's."""
    config = tiny_config(data_root)
    rows = load_data(config, "test")
    monitor = Monitor(config, rows, torch.device("cpu"), hypo=3)
    gt = torch.from_numpy(monitor.data.pose_cam).float()  # [N, J, 3]
    moves = torch.tensor([[30.0, 0.0, 0.0], [0.0, 0.0, 10.0], [0.0, 20.0, 0.0]])
    order = torch.stack([moves.roll(i % 2, 0) for i in range(len(gt))])  # [N, S, 3]
    made = torch.stack([monitor.data.rows.camera_to_network(gt + order[:, s, None], frames_of(config))
                        for s in range(3)], 1)  # [N, S, J, 3] in network space
    monkeypatch.setattr("lib.train.sample_task", lambda *args, **kwargs: (made, None, 1.0))
    scores = monitor(torch.nn.Linear(1, 1), score_fn=object())
    assert scores["oracle"] == pytest.approx(10.0, abs=0.01)
    first = order[:, 0].norm(dim=-1)  # the first hypothesis's error of each row (every joint moved alike)
    assert first.min() == 20 and first.max() == 30 and 20 < scores["p1"] < 30
    assert "oracle" not in Monitor(config, rows, torch.device("cpu"))(torch.nn.Linear(1, 1), score_fn=object())


def test_validation_rows_are_held_out_training_sequences_never_test_rows(data_root):
    from lib.data import load_train_val
    from lib.safe_pickle import load_pickle

    config = tiny_config(data_root)
    train_rows, val = load_train_val(config)
    test = load_data(config, "test")
    seq = lambda d: set(zip(d.subject.tolist(), d.action.tolist(), d.subaction.tolist(), strict=True))  # noqa: E731
    assert seq(val) and not seq(val) & seq(train_rows) and not seq(val) & seq(test)
    assert set(val.subject.tolist()) == {1, 5, 6, 7, 8}  # spread over the training subjects
    assert abs(len(seq(val)) / (len(seq(val)) + len(seq(train_rows))) - config.data.val_fraction) < 0.01
    config.data.val_subjects = "8"
    train_rows, val = load_train_val(config)
    assert set(val.subject.tolist()) == {8} and 8 not in set(train_rows.subject.tolist())
    config.training.select_on = "test"  # the paper's: every training row, and the monitor on the test split
    train_rows, val = load_train_val(config)
    assert val is None and len(train_rows) == len(load_pickle(data_root / "synthetic_train.pkl"))


def test_select_on_test_is_the_papers_monitor(data_root, tmp_path, monkeypatch, capsys):
    from run import train_fc_adv_3d
    from tests.helpers import run_main

    config = tiny_config(data_root)
    config.training.n_iters, config.training.eval_every = 4, 4
    code, _, err = run_main(train_fc_adv_3d, ["--config", "configs/subvp/synthetic_small.py", "--name", "paper",
                                              "--ckpt-root", str(tmp_path), "--select-on", "test",
                                              *overrides(config)], monkeypatch, capsys)
    assert code == 0, err
    log = (tmp_path / "paper" / "log.txt").read_text()
    assert "model selection on 40 test poses" in log
