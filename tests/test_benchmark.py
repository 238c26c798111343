"""run.benchmark produces every section's rows, side by side with the paper's samplers, and the docs table."""
from __future__ import annotations

import json

from tests.helpers import run_module


def test_benchmark_command_line(trained_run, tmp_path):
    out, md = tmp_path / "bench.json", tmp_path / "bench.md"
    res = run_module("run.benchmark", "--ckpt-dir", str(trained_run), "--config", "configs/subvp/synthetic_small.py",
                     "--config.model.hidden_dim=64", "--config.model.embed_dim=32",
                     "--config.training.batch_size=32", "--batch", "16", "--steps", "2", "--train-steps", "2",
                     "--poses", "4", "--poses-multi", "2", "--json", str(out), "--markdown", str(md), timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(out.read_text())
    assert {r["section"] for r in report["rows"]} >= {"accuracy", "sampling", "training"}
    assert "CPU" in report["device"] and "x baseline" in res.stdout
    acc = [r for r in report["rows"] if r["section"] == "accuracy"]
    assert {r["setting"] for r in acc} == {"est S=1, deterministic", "comp3d right leg, deterministic",
                                           "est S=1, stochastic", "est S=20, stochastic",
                                           "comp3d right leg, stochastic"}
    first = {r["setting"]: r for r in reversed(acc)}  # the first row of each setting is the paper's sampler
    assert first["est S=1, deterministic"]["variant"] == "drift 1000 (the paper's --pflow)"
    assert first["est S=1, stochastic"]["variant"] == "em 1000 (the paper's default)"
    assert all(r["nfe"] == 1000 for r in first.values())
    # every ratio is to the paper's sampler in its own setting, and the noise floor is a separate draw of it
    base = first["est S=1, deterministic"]
    fast = next(r for r in acc if "(--pflow --fast)" in r["variant"] and r["setting"] == "est S=1, deterministic")
    assert fast["nfe"] == 20 and abs(fast["ratio"] - fast["value"] / base["value"]) < 1e-9
    floor = next(r for r in acc if r["variant"] == "drift 1000, another initial state")
    assert floor["value"] != base["value"] and abs(floor["ratio"] - floor["value"] / base["value"]) < 1e-9
    assert "## accuracy" in md.read_text() and "drift 1000 (the paper's --pflow)" in md.read_text()
