"""Every command of the paper's README runs as typed (with overrides that make the model small), in a folder laid
out like the paper's: configs/, data/h36m/{h36m_train,h36m_test,h36m_sh_dt_ft}.pkl, checkpoint/."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lib.synthetic import generate
from tests.helpers import ROOT, run_module

CFG = ["--config", "configs/subvp/h36m_ncsnpp_deep_continuous.py"]
SMALL = ["--config.model.hidden_dim=64", "--config.model.embed_dim=32"]
TRAIN = ["--config.training.n_iters=20", "--config.training.batch_size=64", "--config.training.eval_every=10",
         "--config.training.log_every=10", "--config.optim.warmup=5", "--config.monitor.max_poses=20"]
EVAL = [*CFG, "--ckpt-dir", "checkpoint/u3d", "--best", "--sample", "640"]


@pytest.fixture(scope="module")
def paper_folder(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("paper")
    (work / "configs").symlink_to(ROOT / "configs")
    gen = work / "gen"
    generate(gen, seed=0, train_frames=2, test_frames=1)
    (work / "data" / "h36m").mkdir(parents=True)
    for ours, theirs in (("synthetic_train", "h36m_train"), ("synthetic_test", "h36m_test"),
                         ("synthetic_dt", "h36m_sh_dt_ft")):
        shutil.move(gen / f"{ours}.pkl", work / "data" / "h36m" / f"{theirs}.pkl")
    return work


def _run(work: Path, module: str, *args: str):
    res = run_module(module, *args, cwd=work, timeout=600)
    assert res.returncode == 0, (module, args, res.stderr[-3000:])
    return res


@pytest.mark.slow
def test_the_papers_readme_commands(paper_folder):
    work = paper_folder
    _run(work, "run.train_fc_adv_3d", *CFG, "--name", "u3d", *SMALL, *TRAIN)
    assert (work / "checkpoint" / "u3d" / "best_model.pth").is_file()
    est = _run(work, "run.eval_fc_mp_adv_3d", *EVAL, "--gpus", "4", "--hypo", "200", "--save", "results", *SMALL, "est")
    assert "P1 oracle (min over S)" in est.stdout and "P1 of the refined pose" in est.stdout
    assert np.load(work / "checkpoint" / "u3d" / "results.npz")["pred3d"].shape[2] == 200
    _run(work, "run.eval_fc_mp_adv_3d", *EVAL, "--gpus", "1", "--hypo", "1", "--pflow", "--save", "trajs", *SMALL,
         "est")
    _run(work, "run.visualize", "--num-human", "1", "--num-hypo", "80", "--vis-gt")
    for args in (("--randj", "2"), ("--jlist", "1,2,3")):
        _run(work, "run.eval_fc_mp_adv_3d", *EVAL, "--gpus", "4", "--hypo", "200", "--save", "results", *SMALL,
             "comp2d", *args)
    _run(work, "run.visualize", "--num-human", "1", "--num-hypo", "40", "--vis-gt")
    for args in (("--randj", "3"), ("--jlist", "1,2,3,4,5,6")):
        _run(work, "run.eval_fc_mp_adv_3d", *EVAL, "--gpus", "1", "--hypo", "1", "--pflow", "--save", "trajs", *SMALL,
             "comp3d", *args)
    _run(work, "run.visualize", "--num-human", "1", "--num-hypo", "1", "--vis-gt")
    _run(work, "run.eval_fc_mp_adv_3d", *EVAL, "--gpus", "1", "--hypo", "1", "--save", "trajs", *SMALL, "gen")
    _run(work, "run.visualize", "--num-human", "40", "--num-hypo", "1", "--num-perline", "5")
    den = _run(work, "run.denoise_fc_adv_3d", *CFG, "--ckpt-dir", "checkpoint/u3d", "--best", "--save", *SMALL,
               "den", "--noise-type", "gaussian", "--std", "5", "--t", "0.05")
    assert "P1 denoised, the paper's" in den.stdout and "P1 denoised, drift integrated" in den.stdout
    vis = _run(work, "run.visualize", "--num-human", "1", "--num-hypo", "1", "--vis-gt")
    assert (work / "checkpoint" / "u3d" / "results.html").is_file() and "results.html" in vis.stdout
