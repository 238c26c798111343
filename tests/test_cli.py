"""Command lines: the five tasks end to end, torchrun equivalence, and one-line errors for bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import run_module

EVAL = "run.eval_fc_mp_adv_3d"


def _eval(run, *args, torchrun=0, out=None):
    return run_module(EVAL, "--ckpt-dir", str(run), "--steps", "8", "--out", str(out or run), *args,
                      torchrun=torchrun)


def test_tasks_end_to_end(trained_run, tmp_path):
    res = _eval(trained_run, "--hypo", "3", "--proto2", "--json", str(tmp_path / "est.json"), "--save", "trajs",
                "--traj-frames", "4", "est")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "P1 oracle (min over S)" in res.stdout and "P2 oracle (min over S)" in res.stdout and "Average" in res.stdout
    metrics = json.loads((tmp_path / "est.json").read_text())
    assert metrics["nfe"] == 8 and "diversity" in metrics["table"]
    assert metrics["titles"]["p1"] == "P1 oracle (min over S)" and "p1@jpma" in metrics["table"]
    npz = np.load(trained_run / "results.npz")
    n = npz["gt3d"].shape[1]
    assert npz["pred3d"].shape == (4, n, 3, 17, 3) and npz["gt3d"].shape == (1, n, 1, 17, 3)
    for args in (("comp2d", "--jlist", "right_leg,13"), ("comp3d", "--randj", "3"), ("gen", "--num", "20")):
        res = _eval(trained_run, "--pflow", *args, out=tmp_path)
        assert res.returncode == 0, res.stderr[-2000:]
        if args[0] == "comp3d":  # one hypothesis: its error, no oracle, aggregate or uncertainty rows
            assert " P1, missing joints " in res.stdout and "oracle" not in res.stdout, res.stdout
            assert "uncertainty" not in res.stdout and "refined" not in res.stdout
            assert "no model: nearest training pose on the seen joints, missing joints" in res.stdout
    res = _eval(trained_run, "--completion", "impute", "comp2d", "--randj", "2", out=tmp_path)
    assert res.returncode == 0 and "2 missing joints per pose, completion 'impute'" in res.stdout, res.stderr[-2000:]
    res = run_module("run.denoise_fc_adv_3d", "--ckpt-dir", str(trained_run), "--out", str(tmp_path),
                     "--steps", "100", "den", "--std", "10", "--t", "0.05")
    assert res.returncode == 0 and "P1 noisy input" in res.stdout, res.stderr[-2000:]


@pytest.mark.slow
def test_torchrun_sampling_equals_single_process(trained_run, tmp_path):
    args = ("--hypo", "3", "--batch", "16", "comp3d", "--randj", "2")
    one = _eval(trained_run, *args, out=tmp_path / "one")
    two = _eval(trained_run, *args, out=tmp_path / "two", torchrun=2)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    a, b = np.load(tmp_path / "one" / "results.npz"), np.load(tmp_path / "two" / "results.npz")
    assert np.array_equal(a["pred3d"], b["pred3d"]) and np.array_equal(a["missing"], b["missing"])


@pytest.mark.slow
def test_gen_num_under_torchrun_and_gpus(trained_run, tmp_path):
    """torchrun's own parser takes --num for --numa-binding: --num-poses works under it, and --gpus relaunches
    with the arguments out of its reach, so --num works there too."""
    res = _eval(trained_run, "gen", "--num-poses", "12", out=tmp_path / "a", torchrun=2)
    assert res.returncode == 0, res.stderr[-3000:]
    res = _eval(trained_run, "--gpus", "2", "gen", "--num", "12", out=tmp_path / "b")
    assert res.returncode == 0, res.stderr[-3000:]
    for run in ("a", "b"):
        assert np.load(tmp_path / run / "results.npz")["pred3d"].shape == (1, 12, 1, 17, 3)


@pytest.mark.parametrize("args,message", [
    (("--hypo", "0", "est"), "eval.hypo = 0 must be >= 1"),
    (("comp2d", "--randj", "9"), "--randj must be between 1 and 8"),
    (("comp3d", "--jlist", "1,17"), "out of range"),
    (("comp3d", "--jlist", "left_tail"), "unknown joint or part"),
    (("--config.sampling.method=magic", "est"), "sampling.method = 'magic' must be one of"),
    (("--config.model.widht=3", "est"), "unknown config field"),
])
def test_eval_bad_input(trained_run, args, message):
    res = _eval(trained_run, *args)
    assert res.returncode == 2 and message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_bad_paths_and_values(trained_run, tmp_path):
    res = run_module(EVAL, "--ckpt-dir", str(tmp_path / "none"), "est")
    assert res.returncode == 2 and "does not exist" in res.stderr
    res = run_module(EVAL, "--ckpt-dir", str(tmp_path), "--best", "est")
    assert res.returncode == 2 and "best_model.pth not found" in res.stderr
    for args, message in ((("--t", "0"), "--t must be in (0, 1]"),
                          (("--std", "-1"), "--std must be between 0 and 1000")):
        res = run_module("run.denoise_fc_adv_3d", "--ckpt-dir", str(trained_run), "den", *args)
        assert res.returncode == 2 and message in res.stderr, res.stderr
    res = run_module("run.train_fc_adv_3d", "--config", "configs/subvp/synthetic_small.py", "--name", "x",
                     "--ckpt-root", str(tmp_path), f"--config.data.root={tmp_path / 'synthetic'}")
    assert res.returncode == 2 and "not found" in res.stderr and "prepare_data synthetic" in res.stderr
