"""Shared fixtures: a tiny synthetic dataset and a tiny trained run (CPU, seconds)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from configs.subvp.synthetic_small import get_config
from lib.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)


def tiny_config(data_root: Path):
    config = get_config()
    config.data.root = str(data_root)
    config.model.hidden_dim = 64
    config.model.embed_dim = 32
    config.training.batch_size = 64
    config.training.n_iters = 30
    config.training.max_minutes = 0.0
    config.training.log_every = 10
    config.training.eval_every = 15
    config.training.snapshot_every = 10
    config.optim.warmup = 5
    config.eval.train_steps = 5
    config.eval.train_max_poses = 40
    config.eval.batch_size = 64
    config.sampling.steps = 20
    return config


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, seed=0, train_frames=2, test_frames=1)
    return root


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, data_root) -> Path:
    """A run folder trained for 30 steps."""
    from lib.train import train

    workdir = tmp_path_factory.mktemp("runs") / "tiny"
    train(tiny_config(data_root), workdir)
    return workdir


def run_module(module: str, *args: str, torchrun: int = 0, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run `python -m module args` (or under torchrun) from the repository root."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", module, *args]
    if torchrun:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={torchrun}",
               "-m", module, *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def overrides(config) -> list[str]:
    """--config.x.y=value items that turn the small config into `config` (for sub-process tests)."""
    base = get_config().to_dict()
    out = []
    for section, fields in config.to_dict().items():
        if isinstance(fields, dict):
            out += [f"--config.{section}.{k}={v}" for k, v in fields.items() if base[section][k] != v]
    return out
