"""Speed and accuracy measurements, each side by side with its baseline in the same run.

Baselines are the paper's own: for accuracy, its samplers (drift-only `--pflow` and Euler-Maruyama, N = 1000
on its grid), which this toolkit reproduces to 1e-5 (tests/test_golden.py); for speed, the paper's own code
(`PaperCode`: a checkout of Embracing/GFPose run in a subprocess with the same weights and data).
"""
from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ml_collections
import numpy as np
import torch

from lib.builders import build_score_fn, frames_of
from lib.config_utils import with_fields
from lib.data import PoseData
from lib.detnoise import detector_noise
from lib.errors import ToolkitError
from lib.evaluate import EvalSettings, evaluate
from lib.losses import Batch
from lib.model import ScoreFn
from lib.resolve import use_bf16
from lib.robust import RobustSettings
from lib.sampling import SamplerConfig
from lib.schedule import Progress
from lib.sde import SDE
from lib.sharded import sample_task
from lib.skeleton import parse_joint_list
from lib.tasks import TASKS, EvalInputs, options_from
from lib.tasks.est import estimation
from lib.train import TrainState, get_step_fn


@dataclass
class Row:
    section: str
    variant: str
    setting: str
    nfe: float                   # network evaluations per sample (0 where it does not apply)
    value: float
    unit: str
    ratio: float | None = None   # value / the section's baseline value in the same setting
    extra: dict = dataclasses.field(default_factory=dict)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 1) -> float:
    """Best wall time of `repeats` calls after one warm-up call (device work included)."""
    fn()
    best = math.inf
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


# ---------------------------------------------------------------------------------------- the paper's code


@dataclass
class PaperCode:
    """The paper's sampler and training loop, run from a checkout of Embracing/GFPose in a subprocess by `script`
    (the command line that drives the paper's code: run/paper_reference.py, which the caller names)."""

    repo: Path
    device: torch.device
    script: Path

    def _run(self, args: list[str], dims: tuple[int, int, int], ckpt: Path | None = None) -> dict:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.json"
            cmd = [sys.executable, str(self.script), "--repo", str(self.repo), "--hidden", str(dims[0]),
                   "--embed", str(dims[1]), "--blocks", str(dims[2]), "--device", str(self.device),
                   "--report", str(report)] + (["--ckpt", str(ckpt)] if ckpt else []) + args
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                raise ToolkitError(f"the paper's code failed ({res.stderr.strip().splitlines()[-1:]}); check "
                                   f"--paper-repo and that scipy is installed (pip install scipy)")
            return json.loads(report.read_text())

    def sample(self, ckpt: Path, dims: tuple[int, int, int], condition: np.ndarray, task: str, pflow: bool,
               steps: int, batch: int, jlist: str | None = None, seed: int = 0) -> tuple[np.ndarray, float]:
        """The paper's get_sampling_fn on network-space conditions [B, J, 3]: final states and seconds."""
        with tempfile.TemporaryDirectory() as tmp:
            inputs, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
            np.savez(inputs, condition=condition.astype(np.float32))
            args = ["sample", "--inputs", str(inputs), "--out", str(out), "--task", task, "--steps", str(steps),
                    "--batch", str(batch), "--seed", str(seed)] + (["--pflow"] if pflow else [])
            report = self._run(args + (["--jlist", jlist] if jlist else []), dims, ckpt)
            return np.load(out)["x"], report["seconds"]

    def train_rate(self, dims: tuple[int, int, int], data_root: str, train_file: str, steps: int, batch: int
                   ) -> float:
        args = ["train", "--data-root", data_root, "--train-file", train_file, "--steps", str(steps),
                "--batch", str(batch)]
        return self._run(args, dims)["samples_per_s"]


def model_dims(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
    m = config.model
    return m.hidden_dim, m.embed_dim, m.n_blocks


# --------------------------------------------------------------------------------------------- accuracy


@dataclass
class Candidate:
    name: str
    sampler: SamplerConfig
    seed_offset: int = 0      # another seed: the Monte-Carlo noise floor of the comparison
    students: dict | None = None  # the distilled students the 'distilled' sampler takes (lib/distill.py)


@dataclass
class Scenario:
    """One accuracy comparison: a task on a subset of the test rows, a baseline (the first) and its challengers."""

    name: str
    task: str
    options: dict
    hypo: int
    data: PoseData
    candidates: list[Candidate]
    paper_check: bool = False     # also run the paper's own code (--pflow) on the same inputs
    completion: str = "condition"  # how completion uses the observation (the paper's, so its own code checks ours)
    section: str = "accuracy"
    robust: bool = False          # robust conditioning of detected 2D (lib/robust.py), whatever the config says


def _scores(table: dict, task: str) -> dict[str, float]:
    """P1 first (the row's value), then P2, the root-aligned MPJPE and, with several hypotheses, the refined and
    reproj poses' P1, the diversity and how well the spread ranks the error."""
    keys = ("p1", "p1_missing", "p1_root_missing", "p2") if task.startswith("comp") else ("p1", "p1_root", "p2")
    keys += tuple(k for k in ("p1@refined", "p1@reproj", "diversity", "unc_corr") if k in table)
    return {k: table[k]["Average"] for k in keys}


def accuracy_rows(settings: list[Scenario], model: torch.nn.Module, sde: SDE, config: ml_collections.ConfigDict,
                  device: torch.device, paper: PaperCode | None = None, ckpt: Path | None = None,
                  progress: Callable[[str], None] = print) -> list[Row]:
    """P1 (the paper's), the root-aligned MPJPE (for comp3d over the missing joints) and P2 of each candidate, as
    ratios to the setting's baseline; with `paper`, the paper's own code on the same inputs as a cross-check."""
    rows, frames, detector = [], frames_of(config), detector_noise(config.eval.detector_table)
    score_fns: dict[int, ScoreFn] = {}  # one per set of students, built once
    for st in settings:
        unit = TASKS[st.task]
        opts = options_from(unit, st.options)
        forced = with_fields(config, {"robust.mode": "on" if st.robust else "off"})
        ctx = EvalInputs(frames, st.data, hypo=st.hypo, seed=config.seed, completion=st.completion,
                      min_conf=config.eval.min_conf, reproj_sigma=config.eval.reproj_sigma,
                      reproj_temper=config.eval.reproj_temper, detector=detector,
                      robust=RobustSettings.from_config(forced))
        base = None
        for c in st.candidates:
            if id(c.students) not in score_fns:
                score_fns[id(c.students)] = build_score_fn(model, sde, config, c.students)
            score_fn = score_fns[id(c.students)]
            res = evaluate(unit, opts, ctx, score_fn, sde, c.sampler,
                           EvalSettings(st.hypo, config.eval.batch_size, config.seed + c.seed_offset, progress=False),
                           config, device)
            scores = _scores(res.table, st.task)
            base = base or scores
            rows.append(_row(c.name, st.name, res.nfe, scores, base, res.seconds, st.section))
            progress(f"  {st.name}: {c.name}: P1 {scores['p1']:.2f} ({scores['p1'] / base['p1']:.3f})")
        if paper is not None and st.paper_check:
            rows.append(_paper_accuracy(st, paper, ckpt, config, ctx, base))
    return rows


def _paper_accuracy(st: Scenario, paper: PaperCode, ckpt: Path, config: ml_collections.ConfigDict, ctx: EvalInputs,
                    base: dict[str, float]) -> Row:
    """The paper's code (--pflow, N = 1000) on the setting's inputs, scored by the task's own metrics."""
    unit = TASKS[st.task]
    opts = options_from(unit, st.options)
    prep = unit.build(ctx, opts)
    jlist = ",".join(map(str, parse_joint_list(opts.jlist))) if st.task.startswith("comp") else None
    x, seconds = paper.sample(ckpt, model_dims(config), prep.task.condition.numpy(), st.task, True,
                              config.model.num_scales, config.eval.batch_size, jlist)
    scores = _scores(unit.metrics({"paper": torch.from_numpy(x)[:, None]}, ctx, prep, opts), st.task)
    return _row("the paper's code, --pflow 1000", st.name, config.model.num_scales, scores, base, seconds)


def _row(variant: str, setting: str, nfe: float, scores: dict[str, float], base: dict[str, float], seconds: float,
         section: str = "accuracy") -> Row:
    """P1 as the value, the other scores and every ratio to the baseline as extras."""
    rest = {k: v for k, v in scores.items() if k != "p1"}
    ratios = {f"{k} ratio": v / base[k] for k, v in rest.items() if k in base and base[k]}
    return Row(section, variant, setting, nfe, scores["p1"], "P1 mm", scores["p1"] / base["p1"],
               rest | ratios | {"seconds": seconds})


# ------------------------------------------------------------------------------------------------ speed


def sampling_speed(model: torch.nn.Module, sde: SDE, config: ml_collections.ConfigDict, device: torch.device,
                   batches: list[int], steps: int, variants: dict[str, ml_collections.ConfigDict],
                   paper: PaperCode | None) -> list[Row]:
    """Score-network pose-evaluations per second of a sampling loop at each batch: the paper's code (its EM loop,
    host copy every step) when given, and our sampler with each config variant (fp32, bf16, compile)."""
    rows = []
    cfg = SamplerConfig(method="em", steps=steps)
    for batch in batches:
        cond = torch.randn(batch, 17, 3, device=device)
        cond[..., 2] = 0
        task = estimation(cond)
        base = None
        if paper is not None:
            with tempfile.TemporaryDirectory() as tmp:
                ckpt = Path(tmp) / "random.pth"
                torch.save({"model_state_dict": model.state_dict()}, ckpt)
                _, sec = paper.sample(ckpt, model_dims(config), cond.cpu().numpy(), "est", False, steps, batch)
            base = batch * steps / sec
            rows.append(Row("sampling", "the paper's code (EM loop)", f"batch {batch}", steps, base, "pose-evals/s",
                            1.0))
        for name, variant in variants.items():
            fn = build_score_fn(model, sde, variant)
            run = dataclasses.replace(cfg, bf16=use_bf16(variant.sampling.bf16, device))
            sec = timed(lambda fn=fn, task=task, b=batch, run=run: sample_task(fn, sde, task, run, 1, b, 0, device,
                                                                               progress=False), device)
            rate = batch * steps / sec
            base = base or rate
            label = f"{name} (failed here, ran uncompiled)" if fn.compile_failed else name
            rows.append(Row("sampling", label, f"batch {batch}", steps, rate, "pose-evals/s", rate / base))
    return rows


def training_speed(config: ml_collections.ConfigDict, data: PoseData, sde: SDE, device: torch.device, steps: int,
                   paper: PaperCode | None, data_root: str, train_file: str, variants: dict[str, bool]) -> list[Row]:
    """Training samples per second: the paper's loop (its code) when given, and ours (data on the device, batched
    masks), in fp32 and with bf16 autocast where native."""
    batch, rows, base = config.training.batch_size, [], None
    if paper is not None:
        base = paper.train_rate(model_dims(config), data_root, train_file, steps, batch)
        rows.append(Row("training", "the paper's code (DataLoader loop)", f"batch {batch}", 0, base, "samples/s", 1.0))
    frames = frames_of(config)
    x, cond = data.gt3d(frames).to(device), data.cond2d(frames).to(device)
    for name, amp in variants.items():
        cfg = with_fields(config, {"training.amp": amp})

        def run(n: int, cfg=cfg) -> None:
            state = TrainState.create(cfg, device)
            state.progress = Progress(cfg, 0)
            state.model.train()
            step_fn = get_step_fn(cfg, sde, state.model)
            perm = torch.randperm(len(x), device=device)
            for k in range(n):
                idx = perm[(k * batch) % (len(perm) - batch + 1):][:batch]
                step_fn(state, Batch(x[idx], cond[idx]))

        run(2)
        sync(device)
        start = time.perf_counter()
        run(steps)
        sync(device)
        rate = batch * steps / (time.perf_counter() - start)
        base = base or rate
        rows.append(Row("training", name, f"batch {batch}", 0, rate, "samples/s", rate / base))
    return rows

