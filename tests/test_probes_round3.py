"""Bad input and silent results found by the third round of probes, by class. Each error probe starts from a command
that succeeds without the bad value, asserts one line that names the flag, file or argument and what was expected,
and compares every file of the working folder before and after, byte for byte; each accepted probe checks values."""
from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from lib.api import PosePrior
from lib.errors import ToolkitError, first_line
from lib.keypoints import keypoints_from
from lib.tasks.observe import observe_2d
from run import benchmark, eval_fc_mp_adv_3d, lift, prepare_data, train_fc_adv_3d, visualize
from tests.helpers import POSE, cmu_bvh_text, overrides, run_main, tiny_config

KPS = np.stack([POSE[:, [0, 2]] * [0.25, -0.25] + [600.0, 700.0]] * 12)  # [12, 17, 2] pixels: a person, 12 frames


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under folder, by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _error(module, argv: list[str], monkeypatch, capsys, *names: str) -> str:
    code, _, err = run_main(module, argv, monkeypatch, capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert all(n in err for n in names), (names, err)
    return err


def _coco(path: Path, ids: list, people: int = 1, track=lambda t, k: k, nan_joint: int | None = None) -> Path:
    dets = []
    for i, image in enumerate(ids):
        for k in range(people):
            kp = np.concatenate([KPS[i % 12] + 300.0 * k, np.ones((17, 1))], -1)
            if nan_joint is not None and i == 0:
                kp[nan_joint] = np.nan
            d = {"image_id": image, "category_id": 1, "score": 0.9 - 0.1 * k,
                 "keypoints": [None if np.isnan(v) else float(v) for v in kp.ravel()]}
            if track is not None:
                d["track_id"] = track(i, k)
            dets.append(d)
    path.write_text(json.dumps(dets).replace("null", "NaN"))
    return path


@pytest.fixture(scope="module")
def prior(trained_run):
    return PosePrior.from_checkpoint(trained_run, best=False)


# ------------------------------------------------------------------------------------------------- the API

API_REFUSED = [
    (lambda p: p.lift(KPS, "h36m", image_size=(1920,)), "image_size must be (width, height)"),
    (lambda p: p.lift(KPS, "h36m", image_size="1920x1080"), "image_size must be (width, height)"),
    (lambda p: p.run_task("not a task"), "task must be a lib.tasks.Task"),
    (lambda p: PosePrior(None, p.config), "model must be a torch.nn.Module"),
    (lambda p: p.estimate(torch.zeros(2, 17, 2, device="meta")), "keypoints must be an array of numbers in memory"),
    (lambda p: p.estimate(np.zeros((2, 17, 2)) + 1j), "keypoints must hold real numbers"),
    (lambda p: p.estimate(np.full((2, 17, 2), 0.3e6)), "normalised coordinates"),
    (lambda p: p.estimate(KPS[:2]), "for pixels pass camera="),
    (lambda p: p.estimate(np.zeros((2, 17, 2)), seed=2 ** 63), "seed must be a whole number between 0 and"),
    (lambda p: p.estimate(np.zeros((2, 17, 2)), seed=2 ** 64 + 1), "seed must be a whole number between 0 and"),
    (lambda p: p.run_task(observe_2d(torch.full((2, 17, 3), float("nan")), None, "condition-only")),
     "task.condition contains NaN"),
]


@pytest.mark.parametrize("call,message", API_REFUSED, ids=[m for _, m in API_REFUSED])
def test_the_api_refuses_with_one_line(prior, call, message):
    with pytest.raises(ToolkitError) as e:
        call(prior)
    assert message in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_an_empty_missing_list_is_estimation(prior):
    kps = np.random.default_rng(0).normal(0, 0.2, (3, 17, 2))
    a = prior.complete_2d(kps, [], hypotheses=2, steps=3, seed=5, completion="condition-only")
    b = prior.complete_2d(kps, np.zeros(17, bool), hypotheses=2, steps=3, seed=5, completion="condition-only")
    assert a.shape == (3, 2, 17, 3) and np.array_equal(a, b)


def test_one_hypothesis_with_a_reduction_is_said(prior):
    kps = np.random.default_rng(0).normal(0, 0.2, (2, 17, 2))
    with pytest.warns(UserWarning, match="one hypothesis: the pose is that hypothesis and its uncertainty is 0"):
        pose, unc = prior.estimate(kps, hypotheses=1, steps=3, reduce="refined")
    assert pose.shape == (2, 17, 3) and (unc == 0).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prior.estimate(kps, hypotheses=2, steps=3, reduce="mean")  # no warning with hypotheses to reduce


# ------------------------------------------------------------------------------------------- lift's input

def test_frames_with_numbered_names_are_in_natural_order_and_others_in_file_order(tmp_path):
    ids = [f"frame_{i}" for i in (3, 11, 0, 2, 10, 1, 4, 5, 6, 7, 8, 9)]
    kps = keypoints_from(_coco(tmp_path / "a.json", ids), "coco")
    assert kps.frames == [f"frame_{i}" for i in range(12)]
    assert any("ordered by the numbers" in n for n in kps.notes)
    order = kps.xy[:, 0, 0, 0]  # frame_k carries KPS[position of frame_k in the file] (all equal): by position
    assert kps.frames[0] == "frame_0" and np.isfinite(order).all()
    kps = keypoints_from(_coco(tmp_path / "b.json", ["b", "a", "c"]), "coco")
    assert kps.frames == ["b", "a", "c"] and any("not all numbered" in n for n in kps.notes)
    kps = keypoints_from(_coco(tmp_path / "c.json", [str(i) for i in (10, 2, 1)]), "coco")
    assert kps.frames == ["1", "2", "10"]


def test_two_people_with_one_track_id_are_not_mixed(tmp_path):
    kps = keypoints_from(_coco(tmp_path / "t.json", list(range(4)), people=2, track=lambda t, k: 7), "coco")
    assert (kps.track[:, 0] == 7).all() and (kps.track[:, 1] == -1).all()
    assert any("share a track id" in n and "track 7" in n for n in kps.notes)


def test_a_nan_joint_in_coco_is_completed_as_in_an_npy(prior, tmp_path):
    res = prior.lift(_coco(tmp_path / "n.json", list(range(3)), nan_joint=9), "coco", image_size=(1920, 1080))
    assert res.valid.all() and res.completed[0, 0, 13] and not res.completed[1, 0, 13]  # COCO 9 = left wrist


def test_lift_refuses_an_npz_and_its_own_input_folder(trained_run, tmp_path, monkeypatch, capsys):
    np.savez(tmp_path / "results.npz", pred3d=np.zeros((1, 2, 1, 17, 3)))
    before = _files(tmp_path)
    _error(lift, [str(tmp_path / "results.npz"), "--format", "h36m", "--ckpt-dir", str(trained_run), "--image-size",
                  "1000", "1000", "--out", str(tmp_path / "out")], monkeypatch, capsys, "results.npz",
           "is an .npz archive, not an .npy keypoints array")
    frames = tmp_path / "openpose"
    frames.mkdir()
    for t in range(3):
        body = np.concatenate([np.tile(KPS[t, :1], (25, 1)) + np.arange(25)[:, None] * 7.0, np.ones((25, 1))], -1)
        (frames / f"f_{t}.json").write_text(json.dumps({"people": [{"pose_keypoints_2d": body.ravel().tolist()}]}))
    before = _files(tmp_path)
    _error(lift, [str(frames), "--format", "openpose", "--ckpt-dir", str(trained_run), "--image-size", "1000", "1000",
                  "--out", str(frames)], monkeypatch, capsys, "--out", "is the input folder")
    assert _files(tmp_path) == before


# ------------------------------------------------------------------------------------------ output paths

def test_eval_refuses_to_write_over_its_results_or_a_users_file(trained_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    base = ["--ckpt-dir", str(trained_run), "--out", str(out), "--steps", "3", "--sample", "8", "est"]
    code, _, err = run_main(eval_fc_mp_adv_3d, base, monkeypatch, capsys)  # the base command succeeds
    assert code == 0, err
    (tmp_path / "notes.json").write_text("my notes, not metrics\n")
    before = _files(tmp_path)
    _error(eval_fc_mp_adv_3d, ["--json", str(out / "results.npz"), *base], monkeypatch, capsys, "--json",
           "is the results file itself")
    _error(eval_fc_mp_adv_3d, ["--json", str(tmp_path / "notes.json"), *base], monkeypatch, capsys,
           "notes.json", "is not a file this tool writes there")
    assert _files(tmp_path) == before


def test_benchmark_never_replaces_a_users_json_or_markdown(tmp_path, monkeypatch, capsys):
    (tmp_path / "mine.json").write_text('{"my": "numbers"}\n')
    (tmp_path / "mine.md").write_text("# My notes\n")
    before = _files(tmp_path)
    for flag, name in (("--json", "mine.json"), ("--markdown", "mine.md")):
        _error(benchmark, ["--sections", "sampling", flag, str(tmp_path / name)], monkeypatch, capsys, flag, name,
               "is not a file this tool writes there")
    assert _files(tmp_path) == before


def test_lift_never_replaces_a_users_file_in_out(trained_run, tmp_path, monkeypatch, capsys):
    np.save(tmp_path / "kps.npy", KPS)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "poses.json").write_text("my own poses\n")
    (tmp_path / "pic").mkdir()
    (tmp_path / "pic" / "poses.png").write_text("my own picture\n")
    before = _files(tmp_path)
    for out, name in (("out", "poses.json"), ("pic", "poses.png")):
        _error(lift, [str(tmp_path / "kps.npy"), "--format", "h36m", "--ckpt-dir", str(trained_run), "--image-size",
                      "1000", "1000", "--hypo", "1", "--out", str(tmp_path / out)], monkeypatch, capsys, name,
               "is not a file this tool writes there")
    assert _files(tmp_path) == before


def test_overwrite_replaces_only_what_training_writes(trained_run, data_root, tmp_path, monkeypatch, capsys):
    run = tmp_path / "tiny"
    shutil.copytree(trained_run, run)
    (run / "notes.txt").write_text("what I tried\n")
    (run / "lift").mkdir()
    (run / "lift" / "poses.json").write_text("{}\n")
    (run / "results.npz").write_bytes(b"results")
    kept = {k: v for k, v in _files(run).items() if k in ("notes.txt", "lift/poses.json", "results.npz")}
    old = (run / "checkpoint.pth").read_bytes()
    argv = ["--config", "configs/subvp/synthetic_small.py", "--name", "tiny", "--ckpt-root", str(tmp_path),
            "--overwrite", *overrides(tiny_config(data_root))]
    code, _, err = run_main(train_fc_adv_3d, argv, monkeypatch, capsys)
    assert code == 0, err
    after = _files(run)
    assert all(after[k] == v for k, v in kept.items()) and after["checkpoint.pth"] != old
    assert not any(k.startswith(".replaced-") for k in after)


# ------------------------------------------------------------------------------------- said, not silent

def test_resuming_a_file_without_optimizer_state_says_so(trained_run, data_root, tmp_path, monkeypatch, capsys):
    run = tmp_path / "r"
    run.mkdir()
    state = torch.load(trained_run / "checkpoint.pth", weights_only=True)
    state.pop("optimizer_state_dict")
    torch.save(state, run / "checkpoint.pth")
    argv = ["--config", "configs/subvp/synthetic_small.py", "--name", "r", "--ckpt-root", str(tmp_path),
            "--restore-dir", str(run), *overrides(tiny_config(data_root)), "--config.training.n_iters=40"]
    code, _, err = run_main(train_fc_adv_3d, argv, monkeypatch, capsys)
    assert code == 0, err
    assert "holds no optimizer state" in err and "not an exact resume" in err


def test_visualize_refuses_flags_a_lift_output_cannot_use(tmp_path, monkeypatch, capsys):
    t, p = 2, 1
    np.savez(tmp_path / "poses.npz", pose3d=np.zeros((t, p, 17, 3)) + POSE, valid=np.ones((t, p), bool),
             keypoints2d=np.zeros((t, p, 17, 2)), root_depth=np.full((t, p), 4000.0), camera=np.ones(4) * 1000)
    before = _files(tmp_path)
    for flag in (["--vis-gt"], ["--aggregate", "refined"]):
        _error(visualize, ["--input", str(tmp_path / "poses.npz"), *flag, "--out", str(tmp_path / "x.png")],
               monkeypatch, capsys, flag[0], "is a lift's poses.npz")
    assert _files(tmp_path) == before


def test_a_bvh_without_a_subject_number_is_said(tmp_path, monkeypatch, capsys):
    (tmp_path / "walk.bvh").write_text(cmu_bvh_text())
    (tmp_path / "131_01.bvh").write_text(cmu_bvh_text())
    code, out, err = run_main(prepare_data, ["cmu", "--bvh", str(tmp_path / "walk.bvh"), str(tmp_path / "131_01.bvh"),
                                             "--test-subjects", "131", "--out", str(tmp_path / "data")],
                              monkeypatch, capsys)
    assert code == 0, err
    assert "note: walk.bvh: no subject and trial in the name" in out


# ----------------------------------------------------------------------------- nothing left behind

def test_failed_commands_leave_no_empty_folders(trained_run, tmp_path, monkeypatch, capsys):
    _error(eval_fc_mp_adv_3d, ["--ckpt-dir", str(trained_run), "--out", str(tmp_path / "a" / "b"), "--hypo", "0",
                               "est"], monkeypatch, capsys, "eval.hypo = 0 must be >= 1")
    _error(train_fc_adv_3d, ["--config", "configs/subvp/synthetic_small.py", "--name", "x", "--ckpt-root",
                             str(tmp_path / "root" / "deeper"), "--config.training.batch_size=0"], monkeypatch,
           capsys, "training.batch_size = 0 must be >= 1")
    _error(train_fc_adv_3d, ["--config", "configs/subvp/synthetic_small.py", "--name", "x", "--ckpt-root",
                             str(tmp_path / "root2"), "--config.data.root=" + str(tmp_path / "nodata")],
           monkeypatch, capsys, "data file", "--config.data.root")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ the advice

@pytest.mark.parametrize("value", ["abc", "nan", "inf", "0", "-5", "5,,x"])
def test_every_numeric_flag_has_one_parse(value, tmp_path, monkeypatch, capsys):
    bad = value.split(",")[-1]  # a list is refused at its first bad item
    _error(benchmark, ["--sections", "budget", "--budget-minutes", value, "--json", str(tmp_path / "b.json")],
           monkeypatch, capsys, "--budget-minutes must be a number > 0 and <= 10000", repr(bad))
    assert not any(tmp_path.iterdir())


def test_the_advice_fits_the_case(trained_run, data_root, tmp_path, monkeypatch, capsys):
    err = _error(train_fc_adv_3d, ["--config", "configs/subvp/synthetic_small.py", "--name", "r", "--ckpt-root",
                                   str(tmp_path), "--restore-dir", str(trained_run), *overrides(tiny_config(data_root)),
                                   "--config.model.hidden_dim=128"], monkeypatch, capsys,
                 "model.hidden_dim is 128 here", "use the config it was trained with")
    assert "drop --config" not in err  # train needs its --config
    np.save(tmp_path / "spot.npy", np.full((3, 17, 2), 500.0))
    _error(lift, [str(tmp_path / "spot.npy"), "--format", "h36m", "--ckpt-dir", str(trained_run), "--image-size",
                  "1000", "1000", "--out", str(tmp_path / "o")], monkeypatch, capsys, "degenerate",
           "check the coordinates")
    os.symlink(tmp_path / "loop", tmp_path / "loop")
    _error(lift, [str(tmp_path / "loop"), "--format", "h36m", "--ckpt-dir", str(trained_run), "--image-size", "1000",
                  "1000", "--out", str(tmp_path / "o")], monkeypatch, capsys, "symbolic link that leads nowhere")


def test_long_messages_are_cut_between_words():
    text = first_line(ValueError("word " * 60))
    assert text.endswith(" ...") and len(text) <= 164 and text[:-4].split(" ")[-1] == "word"


def test_long_work_shows_progress_off_a_terminal(capsys):
    """Off a terminal (pytest's captured stderr) a line every `every` seconds of a clock (a fake one here: 10 s per
    item), and none at the end or when disabled."""
    from lib.progress import progress

    ticks = iter(range(0, 1000, 10))
    assert list(progress(range(7), 7, "lifting", every=25, clock=lambda: next(ticks))) == list(range(7))
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["lifting: 3/7 (43 %, 30 s)", "lifting: 6/7 (86 %, 60 s)"]
    assert list(progress(range(3), 3, "x", enabled=False)) == [0, 1, 2] and not capsys.readouterr().err


def test_an_npz_that_is_not_one_is_named_without_pickle_advice(tmp_path, monkeypatch, capsys):
    (tmp_path / "results.npz").write_text(json.dumps({"task": "est", "table": {}}))
    err = _error(visualize, ["--input", str(tmp_path / "results.npz"), "--out", str(tmp_path / "x.png")], monkeypatch,
                 capsys, "results.npz", "not numpy's .npz format")
    assert "pickle" not in err
