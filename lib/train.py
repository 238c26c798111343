"""Training: a small train state, a step function (score_sde's get_step_fn), a monitor, and the loop that wires them.

Randomness of step k comes from a generator seeded with (seed, k, rank) and the data order of epoch e from
(seed, e), so a resumed run continues exactly without storing RNG states. Under torchrun the global batch is
split over ranks; rank 0 alone logs and writes.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ml_collections
import numpy as np
import torch
from tensorboardX import SummaryWriter
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from lib import dist
from lib.builders import (
    bf16_supported,
    build_model,
    build_optimizer,
    build_score_fn,
    build_sde,
    frames_of,
    load_data,
    load_weights,
)
from lib.checkpoint import load_checkpoint, save_checkpoint
from lib.config_utils import config_to_json, validate_config
from lib.data import PoseData
from lib.ema import ExponentialMovingAverage
from lib.errors import RunInterruptedError, ToolkitError
from lib.evaluate import sample_task
from lib.io import pid_alive, remove_stale_temps, write_json, write_text
from lib.lift import pose_stats
from lib.losses import Batch, get_loss_fn
from lib.metrics import mpjpe, mpjpe_root, per_action
from lib.model import ScoreFn
from lib.sampling import SamplerConfig
from lib.sde import SDE
from lib.skeleton import flip_pose
from lib.tasks.est import estimation
from lib.visualize import plot_learning_curves

log = logging.getLogger("gfpose")


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 4099 + rank) % (2 ** 63)


def warmup_steps(config: ml_collections.ConfigDict) -> int:
    o = config.optim
    return int(o.warmup_frac * config.training.n_iters) if o.warmup_frac > 0 else o.warmup


def learning_rate(config: ml_collections.ConfigDict, step: int) -> float:
    """Linear warm-up, then constant (the paper's optim.schedule) or a cosine decay to optim.lr_final * lr at
    training.n_iters (a python float, so checkpoints load with weights_only=True)."""
    o, warm = config.optim, max(warmup_steps(config), 1)
    if step + 1 < warm or o.schedule == "constant":
        return float(o.lr * min((step + 1) / warm, 1.0))
    progress = min((step + 1 - warm) / max(config.training.n_iters - warm, 1), 1.0)
    return float(o.lr * (o.lr_final + (1.0 - o.lr_final) * 0.5 * (1.0 + math.cos(math.pi * progress))))


def ema_decay(config: ml_collections.ConfigDict) -> float:
    """model.ema_rate, or with model.ema_halflife > 0 the decay whose half-life is that fraction of the run."""
    h = config.model.ema_halflife
    return config.model.ema_rate if h <= 0 else 0.5 ** (1.0 / max(h * config.training.n_iters, 1.0))


@dataclass
class TrainState:
    """Everything a step changes; its checkpoint is the official U3D layout plus our config and best metric."""

    model: torch.nn.Module
    ema: ExponentialMovingAverage
    optimizer: torch.optim.Optimizer
    step: int = 0
    best: float = math.inf
    pose_stats: dict | None = None    # the training skeleton, for lifting (lib/lift.pose_stats)

    @classmethod
    def create(cls, config: ml_collections.ConfigDict, device: torch.device) -> TrainState:
        torch.manual_seed(config.seed)  # identical initial weights on every rank and in every run
        model = build_model(config).to(device)
        return cls(model, ExponentialMovingAverage(model.parameters(), ema_decay(config)),
                   build_optimizer(config, model.parameters()))

    def checkpoint(self, config: ml_collections.ConfigDict, epoch: int, with_optimizer: bool) -> dict:
        state = {"model_state_dict": self.model.state_dict(), "ema": self.ema.state_dict(), "epoch": epoch,
                 "step": self.step, "config": config_to_json(config), "best_metric": self.best}
        if self.pose_stats is not None:
            state["pose_stats"] = self.pose_stats
        if with_optimizer:
            state["optimizer_state_dict"] = self.optimizer.state_dict()
        return state

    def restore(self, path: Path) -> None:
        state = load_checkpoint(path)
        load_weights(self.model, self.ema, state, path)
        if "optimizer_state_dict" in state:
            self.optimizer.load_state_dict(state["optimizer_state_dict"])  # moves its state to the parameters
        self.step, self.best = int(state["step"]), float(state.get("best_metric", math.inf))

    def ema_model(self) -> torch.nn.Module:
        """A copy of the network holding the EMA weights, in eval mode."""
        model = copy.deepcopy(self.model).eval()
        self.ema.copy_to(model.parameters())
        return model


def get_step_fn(config: ml_collections.ConfigDict, sde: SDE, net: torch.nn.Module
                ) -> Callable[[TrainState, Batch], torch.Tensor]:
    """step_fn(state, batch): warm-up lr, DSM loss through `net` (the model, or its DDP wrapper), gradient clip,
    Adam, EMA; returns the detached loss."""
    loss_fn = get_loss_fn(sde, config.training)
    score_fn = ScoreFn(net, sde)
    amp = config.training.amp and bf16_supported(next(net.parameters()).device)
    clip = config.optim.grad_clip

    def step_fn(state: TrainState, batch: Batch) -> torch.Tensor:
        for group in state.optimizer.param_groups:
            group["lr"] = learning_rate(config, state.step)
        with torch.autocast(batch.x0.device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(score_fn, batch)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(state.model.parameters(), clip)
        state.optimizer.step()
        state.ema.update(state.model.parameters())
        state.step += 1
        return loss.detach()

    return step_fn


class Batches:
    """The training rows on the device, served as per-rank batches in a seeded order per epoch."""

    def __init__(self, config: ml_collections.ConfigDict, data: PoseData, device: torch.device):
        frames, t = frames_of(config), config.training
        self.x, self.cond = data.gt3d(frames).to(device), data.cond2d(frames).to(device)  # [N, J, 3]
        self.batch, self.seed, self.flip = t.batch_size, config.seed, config.data.flip
        self.per_rank = t.batch_size // dist.world_size()
        self.steps_per_epoch = len(data) // t.batch_size
        self._perm, self._epoch = None, -1

    def __call__(self, step: int) -> Batch:
        epoch, offset = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(step_seed(self.seed, epoch, 0) + 17)
            self._perm, self._epoch = torch.randperm(len(self.x), generator=g).to(self.x.device), epoch
        lo = offset * self.batch + dist.rank() * self.per_rank
        idx = self._perm[lo:lo + self.per_rank]
        torch.manual_seed(step_seed(self.seed, step, dist.rank()))
        x0, cond = self.x[idx], self.cond[idx]
        if self.flip:
            flip = (torch.rand(self.per_rank, device=x0.device) < 0.5)[:, None, None]
            x0, cond = torch.where(flip, flip_pose(x0), x0), torch.where(flip, flip_pose(cond), cond)
        return Batch(x0, cond)


def mean_pose_p1(train: PoseData, test: PoseData) -> float:
    """The trivial baseline: the mean root-relative training pose placed at each test root (mm, over actions)."""
    rel = train.pose_cam - train.pose_cam[:, :1]
    gt = torch.from_numpy(test.pose_cam).float()
    err = mpjpe_root(torch.from_numpy(rel.mean(0)).float().expand_as(gt), gt).numpy()
    return per_action({"p1": err}, test.action_name)["p1"]["Average"]


class Monitor:
    """Single-hypothesis estimation on a fixed subset of the test rows with the deterministic monitor sampler;
    P1 as the paper defines it (and the root-aligned MPJPE), averaged over actions."""

    def __init__(self, config: ml_collections.ConfigDict, test: PoseData, device: torch.device):
        e = config.eval
        self.config, self.device, self.sde = config, device, build_sde(config)
        self.data = test if len(test) <= e.train_max_poses else test.subset(
            np.linspace(0, len(test) - 1, e.train_max_poses).round().astype(int))
        self.sampler = SamplerConfig(method=e.train_method, steps=e.train_steps, schedule=e.train_schedule,
                                     eps=config.sampling.eps)
        self.sampler.validate(self.sde)
        self.task = estimation(self.data.cond2d(frames_of(config)))

    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        pred, _, _ = sample_task(build_score_fn(model, self.sde, self.config), self.sde, self.task, self.sampler, 1,
                                 self.config.eval.batch_size, self.config.seed, self.device, progress=False)
        mm = self.data.rows.network_to_camera(pred[:, 0], frames_of(self.config))
        gt = torch.from_numpy(self.data.pose_cam).float()
        table = per_action({"p1": mpjpe(mm, gt).numpy(), "p1_root": mpjpe_root(mm, gt).numpy()},
                           self.data.action_name)
        return {k: v["Average"] for k, v in table.items()}

    def describe(self) -> str:
        return f"{len(self.data)} test poses, {self.sampler.method} {self.sampler.steps} steps"


class RunFolder:
    """A run folder that is never overwritten by accident and never shared by two live runs (a lock file)."""

    def __init__(self, workdir: Path, resume: bool, overwrite: bool):
        """Refuse (one line) a folder in use or holding a run that is neither resumed nor to be overwritten."""
        self.workdir, self.lock = workdir, workdir / ".lock"
        if dist.is_main():
            self._check(resume, overwrite)

    def _check(self, resume: bool, overwrite: bool) -> None:
        if self.lock.exists():
            pid = self.lock.read_text().strip()
            if pid.isdigit() and pid_alive(int(pid)):
                raise ToolkitError(f"run folder {self.workdir} is in use by a live run (process {pid}); wait for "
                                   f"it or choose another --name")
        done = [f for f in ("checkpoint.pth", "best_model.pth") if (self.workdir / f).exists()]
        if done and not (resume or overwrite):
            raise ToolkitError(f"run folder {self.workdir} already holds {' and '.join(done)}; resume it with "
                               f"--restore-dir {self.workdir}, replace it with --overwrite, or choose another --name")

    def claim(self) -> None:
        """Make the folder, clear what a killed run left, and hold the lock."""
        if dist.is_main():
            self.workdir.mkdir(parents=True, exist_ok=True)
            remove_stale_temps(self.workdir)
            self.lock.write_text(str(os.getpid()))
        dist.barrier()

    def release(self) -> None:
        if dist.is_main():
            self.lock.unlink(missing_ok=True)


class StopSignals:
    """SIGINT and SIGTERM (what schedulers send) ask the loop to stop at the next step boundary; a second one
    stops at once."""

    def __enter__(self) -> StopSignals:
        self.received: int | None = None
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)


def setup_logging(workdir: Path | None) -> None:
    """Rank 0 logs to the console and to workdir/log.txt; other ranks only warn."""
    log.handlers.clear()
    log.propagate = False
    log.setLevel(logging.INFO if dist.is_main() else logging.WARNING)
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    handlers = [logging.StreamHandler()]
    if workdir is not None and dist.is_main():
        handlers.append(logging.FileHandler(workdir / "log.txt"))
    for h in handlers:
        h.setFormatter(fmt)
        log.addHandler(h)


class _Loop:
    """The training loop's bookkeeping: logging, evaluation, checkpoints."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: Path, state: TrainState, batches: Batches,
                 monitor: Monitor):
        self.config, self.workdir, self.state, self.batches, self.monitor = config, workdir, state, batches, monitor
        self.writer = SummaryWriter(str(workdir / "tb")) if dist.is_main() else None
        self.losses: list[torch.Tensor] = []
        self.last = (time.monotonic(), state.step)
        self.start = time.monotonic()
        self.history: list[dict[str, float]] = []   # the monitor over wall-clock time (learning curve)
        self.eval_spent, self.eval_time = 0.0, None   # seconds in evaluations, and the last one's
        self.fit_mark: tuple[int, float] | None = None   # (step, time without evaluations) the step time counts from

    def save(self, name: str) -> None:
        if dist.is_main():
            epoch = self.state.step // self.batches.steps_per_epoch
            save_checkpoint(self.state.checkpoint(self.config, epoch, name == "checkpoint.pth"), self.workdir / name)

    def log_loss(self, bar: tqdm) -> None:
        t, step = self.config.training, self.state.step
        loss = float(dist.all_reduce_mean(torch.stack(self.losses).mean()))
        now = time.monotonic()
        rate = (step - self.last[1]) * t.batch_size / max(now - self.last[0], 1e-9)
        self.losses, self.last = [], (now, step)
        bar.set_postfix(loss=f"{loss:.3f}", samples_s=f"{rate:.0f}")
        if self.writer is not None:
            for k, v in (("loss", loss), ("samples_per_s", rate), ("lr", learning_rate(self.config, step - 1))):
                self.writer.add_scalar(f"train/{k}", v, step)
        log.info("step %d: loss %.4f, %.0f samples/s", step, loss, rate)

    def evaluate(self) -> float:
        tick = time.monotonic()
        scores = self.monitor(self.state.ema_model())
        self.eval_time = time.monotonic() - tick
        self.eval_spent += self.eval_time
        self.history.append({"step": self.state.step, "minutes": (time.monotonic() - self.start) / 60, **scores})
        if dist.is_main():
            write_json(self.workdir / "monitor.json", self.history)
        log.info("step %d: P1 %.2f mm (root-aligned MPJPE %.2f) on %s", self.state.step, scores["p1"],
                 scores["p1_root"], self.monitor.describe())
        if self.writer is not None:
            for k, v in scores.items():
                self.writer.add_scalar(f"eval/{k}", v, self.state.step)
        if not math.isfinite(scores["p1"]):
            raise ToolkitError(f"the monitor's P1 is {scores['p1']} at step {self.state.step}: training diverged; "
                               f"lower optim.lr or check the data")
        if scores["p1"] < self.state.best:
            self.state.best = scores["p1"]
            self.save("best_model.pth")
        return scores["p1"]

    def fit_budget(self, bar: tqdm) -> None:
        """training.budget_minutes: from the measured time per step (after the first 10, evaluations excluded) and
        per evaluation, set n_iters (and what depends on it: warm-up, decay, EMA half-life) so that the run ends
        within the budget. Called at step 30 (with a first evaluation to time it) and at each log until half the
        budget has passed, then fixed."""
        t, state = self.config.training, self.state
        if self.eval_time is None:
            self.evaluate()
        now = time.monotonic()
        if self.fit_mark is None or state.step <= self.fit_mark[0]:
            self.fit_mark = (state.step, now - self.eval_spent)
            return
        step_time = (now - self.eval_spent - self.fit_mark[1]) / (state.step - self.fit_mark[0])
        per_step = step_time + (self.eval_time / t.eval_every if t.eval_every else 0.0)
        remaining = 60.0 * t.budget_minutes - (now - self.start) - self.eval_time  # the final evaluation
        n_iters = state.step + max(int(dist.all_reduce_mean(torch.tensor(remaining / per_step))), 1)
        if abs(n_iters - t.n_iters) > 0.01 * t.n_iters:  # (re-fits that change little are not worth a log line)
            t.n_iters, bar.total = n_iters, n_iters
            state.ema.decay = ema_decay(self.config)
            if dist.is_main():
                write_text(self.workdir / "config.json", config_to_json(self.config))
            log.info("budget %.1f min: %.3f s per step, %.2f s per evaluation -> n_iters %d, warm-up %d, EMA decay "
                     "%.5f", t.budget_minutes, step_time, self.eval_time, n_iters, warmup_steps(self.config),
                     state.ema.decay)

    def fitting(self) -> bool:
        t = self.config.training
        return t.budget_minutes > 0 and time.monotonic() - self.start < 30.0 * t.budget_minutes

    def draw(self) -> None:
        if dist.is_main() and self.history:
            plot_learning_curves({self.workdir.name: self.history}, self.workdir / "learning_curve.png")


def _should_stop(start: float, max_minutes: float, stop: StopSignals) -> tuple[bool, bool]:
    """(out of time, signalled), agreed by all ranks."""
    flags = torch.tensor([float(max_minutes > 0 and time.monotonic() - start > 60.0 * max_minutes),
                          float(stop.received is not None)])
    flags = dist.all_reduce_mean(flags)
    return bool(flags[0] > 0), bool(flags[1] > 0)


def _run_loop(loop: _Loop, step_fn: Callable, net: torch.nn.Module, stop: StopSignals) -> str:
    """Steps until n_iters, max_minutes or a signal; returns why it stopped."""
    t, state = loop.config.training, loop.state
    start = time.monotonic()
    with logging_redirect_tqdm([log]), tqdm(total=t.n_iters, initial=state.step, desc="training", dynamic_ncols=True,
                                             disable=None if dist.is_main() else True) as bar:
        net.train()
        fit_steps = (state.step + 10, state.step + 30)  # the step time counts from the 10th step
        while state.step < t.n_iters:
            loop.losses.append(step_fn(state, loop.batches(state.step)))
            bar.update(1)
            if loop.fitting() and (state.step in fit_steps or state.step % t.log_every == 0):
                loop.fit_budget(bar)
                net.train()
            if state.step % t.log_every == 0:
                loop.log_loss(bar)
            if t.eval_every and state.step % t.eval_every == 0:
                loop.evaluate()
                net.train()
            if t.snapshot_every and state.step % t.snapshot_every == 0:
                loop.save("checkpoint.pth")
            if state.step % 10 == 0:
                limit = t.max_minutes or t.budget_minutes * 1.1  # a budget run ends on time even if mis-estimated
                out_of_time, signalled = _should_stop(start, limit, stop)
                if signalled:
                    return "signal"
                if out_of_time:
                    return f"time limit ({limit:g} min)"
    return "n_iters"


def train(config: ml_collections.ConfigDict, workdir: str | Path, restore_dir: str | Path | None = None,
          overwrite: bool = False) -> dict[str, float]:
    """Train (or resume) a prior; rank 0 writes checkpoint.pth, best_model.pth, config.json, log.txt, tb/."""
    validate_config(config)
    device, workdir = dist.init(), Path(workdir)
    t, ws = config.training, dist.world_size()
    if t.batch_size % ws:
        raise ToolkitError(f"training.batch_size ({t.batch_size}) must be divisible by the number of ranks ({ws})")
    folder = RunFolder(workdir, resume=restore_dir is not None and Path(restore_dir).resolve() == workdir.resolve(),
                       overwrite=overwrite)
    train_data, test_data = load_data(config, "train"), load_data(config, "test")
    if len(train_data) < t.batch_size:
        raise ToolkitError(f"the training set has {len(train_data)} rows, fewer than training.batch_size "
                           f"({t.batch_size}); lower the batch size or data.train_sample")
    monitor = Monitor(config, test_data, device)
    folder.claim()
    try:
        return _train(config, workdir, restore_dir, device, train_data, test_data, monitor)
    finally:
        folder.release()


def _train(config: ml_collections.ConfigDict, workdir: Path, restore_dir: str | Path | None, device: torch.device,
           train_data: PoseData, test_data: PoseData, monitor: Monitor) -> dict[str, float]:
    setup_logging(workdir)
    state = TrainState.create(config, device)
    state.pose_stats = pose_stats(train_data.pose_cam, train_data.pose_img)
    if restore_dir is not None:
        path = Path(restore_dir) / "checkpoint.pth"
        if not path.is_file():
            raise ToolkitError(f"--restore-dir {restore_dir} holds no checkpoint.pth; give the folder of an earlier "
                               f"run (checkpoint/NAME)")
        state.restore(path)
        log.info("resumed from %s at step %d", restore_dir, state.step)
    ws = dist.world_size()
    net = (torch.nn.parallel.DistributedDataParallel(state.model, device_ids=[device] if device.type == "cuda"
                                                     else None) if ws > 1 else state.model)
    batches = Batches(config, train_data, device)
    loop = _Loop(config, workdir, state, batches, monitor)
    baseline = mean_pose_p1(train_data, test_data)
    if dist.is_main():
        write_text(workdir / "config.json", config_to_json(config))
        log.info("training on %d rows (%d steps per epoch), %d ranks on %s, %d parameters", len(train_data),
                 batches.steps_per_epoch, ws, device, sum(p.numel() for p in state.model.parameters()))
        log.info("baseline: the mean training pose at the true root gives P1 %.1f mm", baseline)
    start, start_step = time.monotonic(), state.step
    with StopSignals() as stop:
        reason = _run_loop(loop, get_step_fn(config, build_sde(config), net), net, stop)
        loop.save("checkpoint.pth")
        if reason == "signal":
            log.warning("%s at step %d: saved checkpoint.pth", signal.Signals(stop.received).name, state.step)
            raise RunInterruptedError(stop.received, state.step)
    elapsed = time.monotonic() - start
    if ws > 1:
        same = dist.same_on_all_ranks(list(state.model.parameters()) + state.ema.shadow_params, device)
        log.info("parameters and EMA %s on all %d ranks", "identical" if same else "DIFFER", ws)
    p1 = loop.evaluate() if not (config.training.eval_every and state.step % config.training.eval_every == 0) \
        else state.best
    rate = (state.step - start_step) * config.training.batch_size / max(elapsed, 1e-9)
    if dist.is_main():
        log.info("stopped at step %d (%s) after %.1f min, %.0f training samples/s; best P1 %.2f mm",
                 state.step, reason, elapsed / 60, rate, state.best)
        loop.writer.close()
    loop.draw()
    dist.barrier()
    return {"step": state.step, "p1": p1, "best_p1": state.best, "samples_per_s": rate, "mean_pose_p1": baseline}
