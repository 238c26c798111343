"""Session fixtures: a tiny synthetic dataset, a tiny trained run and the synthetic detector's table (CPU, seconds)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from lib.data import load_split
from lib.detnoise import fit_table
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


@pytest.fixture(scope="session")
def detector_table(data_root, tmp_path_factory) -> str:
    """The synthetic detector's error table, fitted on the training rows (as make detected-demo does)."""
    gt = load_split(data_root, "synthetic_train.pkl", "", "train", 1, True)
    det = load_split(data_root, "synthetic_train.pkl", "synthetic_dt.pkl", "train", 1, False)
    path = tmp_path_factory.mktemp("table") / "synthetic_detector.json"
    path.write_text(json.dumps(fit_table(gt.pose_img[..., :2], det.det2d, det.det_conf, "synthetic")))
    return str(path)
