"""Session fixtures: a tiny synthetic dataset and a tiny trained run (CPU, seconds)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from lib.synthetic import generate
from tests.helpers import tiny_config

torch.set_num_threads(1)


@pytest.fixture(autouse=True, scope="session")
def private_cache(tmp_path_factory) -> None:
    """The last-results pointer (a per-user cache) goes to a temporary folder, for sub-processes too."""
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("cache"))


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
