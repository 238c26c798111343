"""The benchmark's baseline is a correct sampler, and run.benchmark produces every section's rows."""
from __future__ import annotations

import json

import torch

from lib.benchmark import reference_em
from lib.sde import SubVPSDE
from tests.conftest import run_module
from tests.test_sde_sampling import MU, GaussianEps


def test_reference_loop_recovers_a_gaussian_and_copies_every_step():
    sde = SubVPSDE()
    torch.manual_seed(0)
    cond = torch.zeros(4000, 17, 3)
    traj = reference_em(GaussianEps(sde, MU, 0.5), sde, cond, torch.ones_like(cond), steps=500)
    assert len(traj) == 500 and traj[-1].shape == (4000, 17, 3)
    x = torch.from_numpy(traj[-1])
    assert (x.mean(0) - MU).abs().max() < 0.06
    assert abs(x.std(0).mean() - 0.5) < 0.03


def test_benchmark_command_line(trained_run, tmp_path):
    out = tmp_path / "bench.json"
    res = run_module("run.benchmark", "--config", "configs/subvp/synthetic_small.py", "--ckpt-dir", str(trained_run),
                     "--config.model.hidden_dim=64", "--config.model.embed_dim=32",
                     "--config.training.batch_size=32", "--batch", "16", "--steps", "2", "--train-steps", "2",
                     "--poses", "4", "--poses-multi", "2", "--ref-steps", "10", "--variants", "ours",
                     "--json", str(out))
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(out.read_text())
    sections = {r["section"] for r in report["rows"]}
    assert sections == {"sampling", "training", "accuracy", "time", "bf16 check"}
    assert "CPU" in report["device"] and "x baseline" in res.stdout
    acc = [r for r in report["rows"] if r["section"] == "accuracy"]
    assert {r["setting"] for r in acc} == {"est S=1", "est S=20", "comp3d right leg"}
    assert all(r["ratio"] > 0 for r in report["rows"] if r["ratio"] is not None)
    ref = next(r for r in acc if r["variant"].startswith("em 10 (reference)"))
    assert ref["ratio"] == 1.0 and ref["nfe"] == 10
