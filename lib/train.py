"""Training: a small train state, a step function (score_sde's get_step_fn), a monitor, and the loop that wires them.

Randomness of step k comes from a generator seeded with (seed, k, rank) and the data order of epoch e from
(seed, e), so a resumed run continues exactly without storing RNG states. Under torchrun the global batch is
split over ranks; rank 0 alone logs and writes. The schedules follow the run's progress (lib/schedule.py); the
monitor that picks best_model.pth scores the validation rows (lib/data.load_train_val), never the test rows
unless training.select_on = 'test' asks for the paper's behaviour.
"""
from __future__ import annotations

import copy
import logging
import math
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
from lib.augment import new_people_and_views, up_axis
from lib.builders import build_model, build_optimizer, build_score_fn, build_sde, frames_of
from lib.checkpoint import load_checkpoint, save_checkpoint
from lib.config_utils import config_to_json, validate_config
from lib.data import PoseData, detector_kinds, load_data, load_train_val
from lib.detnoise import DetectorNoise, load_table
from lib.ema import ExponentialMovingAverage
from lib.errors import RunInterruptedError, ToolkitError
from lib.io import write_json, write_text
from lib.keypoints import USED
from lib.lift import pose_stats
from lib.loader import load_weights, resume_checkpoint
from lib.losses import Batch, get_loss_fn, mask_rates
from lib.metrics import mpjpe, mpjpe_root, per_action
from lib.model import ScoreFn
from lib.resolve import monitor_sampler, use_bf16
from lib.run_folder import RunFolder, StopSignals, setup_logging
from lib.sampling import SamplerConfig
from lib.schedule import Progress, ema_decay, learning_rate
from lib.sde import SDE
from lib.sharded import sample_task
from lib.skeleton import flip_pose
from lib.tasks.est import estimation
from lib.visualize import plot_learning_curves

log = logging.getLogger("gfpose")


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 4099 + rank) % (2 ** 63)


@dataclass
class TrainState:
    """Everything a step changes; its checkpoint is the official U3D layout plus our config and best metric."""

    model: torch.nn.Module
    ema: ExponentialMovingAverage
    optimizer: torch.optim.Optimizer
    step: int = 0
    best: float = math.inf
    elapsed: float = 0.0                  # training seconds of the runs this one resumes (budget runs)
    pose_stats: dict | None = None        # the training skeleton, for lifting (lib/lift.pose_stats)
    pose_bank: torch.Tensor | None = None   # [R, J, 3] normalised training poses, for warm starts (lib/lookup.py)
    progress: Progress | None = None      # where the run is (lib/schedule.py); set by the loop

    @classmethod
    def create(cls, config: ml_collections.ConfigDict, device: torch.device) -> TrainState:
        torch.manual_seed(config.seed)  # identical initial weights on every rank and in every run
        model = build_model(config).to(device)
        return cls(model, ExponentialMovingAverage(model.parameters(), config.model.ema_rate),
                   build_optimizer(config, model.parameters()))

    def checkpoint(self, config: ml_collections.ConfigDict, epoch: int, with_optimizer: bool) -> dict:
        elapsed = self.progress.elapsed() if self.progress is not None else self.elapsed
        state = {"model_state_dict": self.model.state_dict(), "ema": self.ema.state_dict(), "epoch": epoch,
                 "step": self.step, "config": config_to_json(config), "best_metric": self.best,
                 "elapsed_seconds": float(elapsed)}
        if self.pose_stats is not None:
            state["pose_stats"] = self.pose_stats
        if self.pose_bank is not None:
            state["pose_bank"] = self.pose_bank
        if with_optimizer:
            state["optimizer_state_dict"] = self.optimizer.state_dict()
        return state

    def restore(self, path: Path) -> None:
        state = load_checkpoint(path)
        load_weights(self.model, self.ema, state, path)
        if "optimizer_state_dict" in state:
            self.optimizer.load_state_dict(state["optimizer_state_dict"])  # moves its state to the parameters
        else:  # a distilled run's or a shipped prior's file: the weights go on, Adam's moments start at zero
            log.warning("warning: %s holds no optimizer state (a distilled run or a shipped prior): Adam starts "
                        "afresh, so this is not an exact resume of the run that wrote it", path)
        self.step, self.best = int(state["step"]), float(state.get("best_metric", math.inf))
        self.elapsed = float(state.get("elapsed_seconds", 0.0))

    def ema_model(self) -> torch.nn.Module:
        """A copy of the network holding the EMA weights, in eval mode."""
        model = copy.deepcopy(self.model).eval()
        self.ema.copy_to(model.parameters())
        return model


def get_step_fn(config: ml_collections.ConfigDict, sde: SDE, net: torch.nn.Module
                ) -> Callable[[TrainState, Batch], torch.Tensor]:
    """step_fn(state, batch): advance the run's progress, set the learning rate and EMA decay it gives
    (lib/schedule.py), DSM loss through `net` (the model, or its DDP wrapper), gradient clip, Adam, EMA; returns
    the detached loss."""
    module = net.module if isinstance(net, torch.nn.parallel.DistributedDataParallel) else net
    loss_fn = get_loss_fn(sde, config.training, getattr(module, "predicts_pose", False))
    score_fn = ScoreFn(net, sde)
    constrain = getattr(module, "constrain", None)  # the regression baseline's max-norm (lib/regression.py)
    amp = use_bf16(config.training.amp, next(net.parameters()).device)
    clip = config.optim.grad_clip

    def step_fn(state: TrainState, batch: Batch) -> torch.Tensor:
        advanced = state.progress.advance(state.step + 1)
        for group in state.optimizer.param_groups:
            group["lr"] = learning_rate(config, state.step, state.progress.value)
        state.ema.decay = ema_decay(config, advanced)
        batch.rates = mask_rates(config.training, state.progress.value)
        with torch.autocast(batch.x0.device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(score_fn, batch)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(state.model.parameters(), clip)
        state.optimizer.step()
        if constrain is not None:
            constrain()
        state.ema.update(state.model.parameters())
        state.step += 1
        return loss.detach()

    return step_fn


class Batches:
    """The training rows on the device, served as per-rank batches in a seeded order per epoch; optionally flipped,
    and with a detector's errors on a share of the 2D conditions (config.detnoise, lib/detnoise.py)."""

    def __init__(self, config: ml_collections.ConfigDict, data: PoseData, device: torch.device):
        frames, training = frames_of(config), config.training
        self.x, self.cond = data.gt3d(frames).to(device), data.cond2d(frames).to(device)  # [N, J, 3]
        self.batch, self.seed, self.flip = training.batch_size, config.seed, config.data.flip
        self.per_rank = training.batch_size // dist.world_size()
        self.steps_per_epoch = len(data) // training.batch_size
        self._perm, self._epoch = None, -1
        d = config.data
        self.rotate, self.bone_scale, self.augment_p, self.frames = d.rotate, d.bone_scale, d.augment_p, frames
        self.augments = d.rotate > 0 or d.bone_scale > 0
        if self.augments:  # the rows in camera mm, to change and project again
            self.rows = tuple(torch.from_numpy(a).double().to(device) for a in (data.pose_cam, data.cam, data.box,
                                                                                  data.root_depth))
            self.axis = up_axis(self.rows[0])
        n = config.detnoise
        self.noise = DetectorNoise.from_table(load_table(n.table), n.tail) if n.table else None
        self.noise_p = n.p
        self.unused = torch.tensor([k not in USED for k in detector_kinds(n.format)], device=device)  # [J]

    def __call__(self, step: int) -> Batch:
        epoch, offset = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(step_seed(self.seed, epoch, 0) + 17)
            self._perm, self._epoch = torch.randperm(len(self.x), generator=g).to(self.x.device), epoch
        lo = offset * self.batch + dist.rank() * self.per_rank
        idx = self._perm[lo:lo + self.per_rank]
        torch.manual_seed(step_seed(self.seed, step, dist.rank()))
        x0, cond = self.x[idx], self.cond[idx]
        if self.augments:  # new people and views for a share of the batch (lib/augment.py)
            new = torch.rand(len(idx), device=idx.device) < self.augment_p
            pick = idx[new]
            x_new, c_new = new_people_and_views(*(r[pick] for r in self.rows), self.frames, self.axis, self.rotate,
                                                self.bone_scale)
            x0, cond = x0.clone(), cond.clone()
            x0[new], cond[new] = x_new, c_new
        if self.flip:
            flip = (torch.rand(self.per_rank, device=x0.device) < 0.5)[:, None, None]
            x0, cond = torch.where(flip, flip_pose(x0), x0), torch.where(flip, flip_pose(cond), cond)
        if self.noise is None:
            return Batch(x0, cond)
        noisy, dropped = self.noise.apply(cond[..., :2])
        hit = (torch.rand(self.per_rank, device=x0.device) < self.noise_p)[:, None]  # [B, 1]
        cond = torch.cat([torch.where(hit[..., None], noisy, cond[..., :2]), cond[..., 2:]], -1)
        return Batch(x0, cond, dropped=hit & (dropped | self.unused))


def pose_bank(data: PoseData, frames, size: int = 4096) -> torch.Tensor:
    """Up to `size` evenly spaced training poses, normalised (network space / data scale), that a checkpoint carries
    for the 'nearest' warm start of completion (lib/refine.warm_start)."""
    idx = np.linspace(0, len(data) - 1, min(size, len(data))).round().astype(int)
    return data.subset(idx).gt3d(frames) / frames.scale


def mean_pose_p1(train: PoseData, test: PoseData) -> float:
    """The trivial baseline: the mean root-relative training pose placed at each test root (mm, over actions)."""
    rel = train.pose_cam - train.pose_cam[:, :1]
    gt = torch.from_numpy(test.pose_cam).float()
    err = mpjpe_root(torch.from_numpy(rel.mean(0)).float().expand_as(gt), gt).numpy()
    return per_action({"p1": err}, test.action_name)["p1"]["Average"]


class Monitor:
    """Single-hypothesis estimation on a fixed subset of the selection rows (validation, or the test split with
    training.select_on = 'test') with the deterministic monitor sampler; P1 as the paper defines it (and the
    root-aligned MPJPE), averaged over actions. With hypo = S > 1 (a stochastic sampler) also the oracle, P1 of the
    best of S per pose; P1 is the first hypothesis's."""

    def __init__(self, config: ml_collections.ConfigDict, rows: PoseData, device: torch.device,
                 sampler: SamplerConfig | None = None, hypo: int = 1):
        most = config.monitor.max_poses
        self.config, self.device, self.sde, self.hypo = config, device, build_sde(config), hypo
        self.split = "validation" if config.training.select_on == "val" else "test"
        self.data = rows if len(rows) <= most else rows.subset(np.linspace(0, len(rows) - 1, most).round().astype(int))
        self.sampler = sampler or monitor_sampler(config, device)  # (distillation scores its students with it)
        self.task = estimation(self.data.cond2d(frames_of(config)))

    def __call__(self, model: torch.nn.Module, score_fn: ScoreFn | None = None) -> dict[str, float]:
        """Scores of a model's EMA copy (or of a given score, e.g. one with distilled students)."""
        score_fn = score_fn or build_score_fn(model, self.sde, self.config)
        pred, _, _ = sample_task(score_fn, self.sde, self.task, self.sampler, self.hypo, self.config.eval.batch_size,
                                 self.config.seed, self.device, progress=False)
        mm = self.data.rows.network_to_camera(pred, frames_of(self.config))  # [N, S, J, 3]
        gt = torch.from_numpy(self.data.pose_cam).float()[:, None]          # [N, 1, J, 3]
        errors = {"p1": mpjpe(mm[:, 0], gt[:, 0]).numpy(), "p1_root": mpjpe_root(mm[:, 0], gt[:, 0]).numpy()}
        if self.hypo > 1:
            errors["oracle"] = mpjpe(mm, gt).min(1).values.numpy()
        table = per_action(errors, self.data.action_name)
        return {k: v["Average"] for k, v in table.items()}

    def describe(self) -> str:
        hypo = f", S = {self.hypo}" if self.hypo > 1 else ""
        return f"{len(self.data)} {self.split} poses, {self.sampler.method} {self.sampler.steps} steps{hypo}"


class TrainingLoop:
    """The training loop's bookkeeping: logging, evaluation, checkpoints."""

    def __init__(self, config: ml_collections.ConfigDict, workdir: Path, state: TrainState, batches: Batches,
                 monitor: Monitor, folder: RunFolder):
        self.config, self.workdir, self.state, self.batches, self.monitor = config, workdir, state, batches, monitor
        self.folder = folder
        self.writer = SummaryWriter(str(workdir / "tb")) if dist.is_main() else None
        self.losses: list[torch.Tensor] = []
        self.last = (time.monotonic(), state.step)
        self.history: list[dict[str, float]] = []   # the monitor over wall-clock time (learning curve)

    def save(self, name: str) -> None:
        if dist.is_main():
            epoch = self.state.step // self.batches.steps_per_epoch
            save_checkpoint(self.state.checkpoint(self.config, epoch, name == "checkpoint.pth"), self.workdir / name)
            if name == "checkpoint.pth":
                self.folder.saved()

    def log_loss(self, bar: tqdm) -> None:
        training, step = self.config.training, self.state.step
        loss = float(dist.all_reduce_mean(torch.stack(self.losses).mean()))
        now = time.monotonic()
        rate = (step - self.last[1]) * training.batch_size / max(now - self.last[0], 1e-9)
        self.losses, self.last = [], (now, step)
        lr = self.state.optimizer.param_groups[0]["lr"]
        bar.set_postfix(loss=f"{loss:.3f}", samples_s=f"{rate:.0f}")
        if self.writer is not None:
            for k, v in (("loss", loss), ("samples_per_s", rate), ("lr", lr), ("progress", self.state.progress.value)):
                self.writer.add_scalar(f"train/{k}", v, step)
        log.info("step %d: loss %.4f, %.0f samples/s, lr %.3g, %.1f %% of the run", step, loss, rate, lr,
                 100 * self.state.progress.value)

    def evaluate(self) -> float:
        """Score the EMA weights; the best so far is best_model.pth. A budget run keeps the time of an evaluation
        and a save in reserve, so that the final ones fit the budget."""
        tick = self.state.progress.clock()
        scores = self.monitor(self.state.ema_model())
        self.history.append({"step": self.state.step, "minutes": self.state.progress.elapsed() / 60, **scores})
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
        self.state.progress.reserve = 2.0 * (self.state.progress.clock() - tick)
        return scores["p1"]

    def draw(self) -> None:
        if dist.is_main() and self.history:
            plot_learning_curves({self.workdir.name: self.history}, self.workdir / "learning_curve.png")


def _should_stop(start: float, max_minutes: float, stop: StopSignals) -> tuple[bool, bool]:
    """(out of time, signalled), agreed by all ranks."""
    flags = torch.tensor([float(max_minutes > 0 and time.monotonic() - start > 60.0 * max_minutes),
                          float(stop.received is not None)])
    flags = dist.all_reduce_mean(flags)
    return bool(flags[0] > 0), bool(flags[1] > 0)


def _run_loop(loop: TrainingLoop, step_fn: Callable, net: torch.nn.Module, stop: StopSignals) -> str:
    """Steps until the run's progress reaches 1 (n_iters steps, or the budget spent), max_minutes or a signal;
    returns why it stopped."""
    training, state = loop.config.training, loop.state
    start = time.monotonic()
    total = None if state.progress.timed else training.n_iters
    with logging_redirect_tqdm([log]), tqdm(total=total, initial=state.step, desc="training", dynamic_ncols=True,
                                             disable=None if dist.is_main() else True) as bar:
        net.train()
        while not state.progress.done():
            loop.losses.append(step_fn(state, loop.batches(state.step)))
            bar.update(1)
            if state.step % training.log_every == 0:
                loop.log_loss(bar)
            if training.eval_every and state.step % training.eval_every == 0:
                loop.evaluate()
                net.train()
            if training.snapshot_every and state.step % training.snapshot_every == 0:
                loop.save("checkpoint.pth")
            if state.step % 10 == 0:
                out_of_time, signalled = _should_stop(start, training.max_minutes, stop)
                if signalled:
                    return "signal"
                if out_of_time:
                    return f"time limit ({training.max_minutes:g} min)"
    return f"budget of {training.budget_minutes:g} min" if state.progress.timed else "n_iters"


def train(config: ml_collections.ConfigDict, workdir: str | Path, restore_dir: str | Path | None = None,
          overwrite: bool = False, clock: Callable[[], float] = time.monotonic) -> dict[str, float]:
    """Train (or resume) a prior; rank 0 writes checkpoint.pth, best_model.pth, config.json, log.txt, tb/.

    The run folder is locked before anything else happens (lib/run_folder.py). clock: the seconds a budget run
    spends (lib/schedule.Progress)."""
    validate_config(config)
    device, workdir = dist.init(), Path(workdir)
    training, ws = config.training, dist.world_size()
    if training.batch_size % ws:
        raise ToolkitError(f"training.batch_size ({training.batch_size}) must be divisible by the number of ranks "
                           f"({ws})")
    sampler = monitor_sampler(config, device)  # checked before any file is written
    restore = resume_checkpoint(restore_dir, config) if restore_dir is not None else None
    resume = restore is not None and Path(restore_dir).resolve() == workdir.resolve()
    with RunFolder(workdir, resume=resume, overwrite=overwrite) as folder:
        train_data, val_data = load_train_val(config)
        if len(train_data) < training.batch_size:
            raise ToolkitError(f"the training set has {len(train_data)} rows, fewer than training.batch_size "
                               f"({training.batch_size}); lower the batch size or data.train_sample")
        selection = val_data if val_data is not None else load_data(config, "test")
        return _train(config, workdir, restore, device, train_data, selection,
                      Monitor(config, selection, device, sampler), folder, clock)


def _train(config: ml_collections.ConfigDict, workdir: Path, restore: Path | None, device: torch.device,
           train_data: PoseData, selection: PoseData, monitor: Monitor, folder: RunFolder,
           clock: Callable[[], float]) -> dict[str, float]:
    setup_logging(workdir)
    if folder.aside is not None:
        log.info("--overwrite: the previous run's files wait in %s until this run saves its first checkpoint",
                 folder.aside)
    state = TrainState.create(config, device)
    state.pose_stats = pose_stats(train_data.pose_cam, train_data.pose_img, train_data.cam)
    state.pose_bank = pose_bank(train_data, frames_of(config))
    if restore is not None:
        state.restore(restore)
        log.info("resumed from %s at step %d", restore.parent, state.step)
    ws = dist.world_size()
    net = (torch.nn.parallel.DistributedDataParallel(state.model, device_ids=[device] if device.type == "cuda"
                                                     else None) if ws > 1 else state.model)
    batches = Batches(config, train_data, device)
    baseline = mean_pose_p1(train_data, selection)
    state.progress = Progress(config, state.step, state.elapsed, clock)  # the budget's clock starts here
    loop = TrainingLoop(config, workdir, state, batches, monitor, folder)
    if dist.is_main():
        write_text(workdir / "config.json", config_to_json(config))
        log.info("training on %d rows (%d steps per epoch), %d ranks on %s, %d parameters; %s", len(train_data),
                 batches.steps_per_epoch, ws, device, sum(p.numel() for p in state.model.parameters()),
                 f"a budget of {config.training.budget_minutes:g} min" if state.progress.timed
                 else f"{config.training.n_iters} steps")
        log.info("model selection on %s; the mean training pose at the true root gives P1 %.1f mm there",
                 monitor.describe(), baseline)
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
        else loop.history[-1]["p1"] if loop.history else state.best
    rate = (state.step - start_step) * config.training.batch_size / max(elapsed, 1e-9)
    if dist.is_main():
        log.info("stopped at step %d (%s) after %.1f min, %.0f training samples/s, lr %.3g at the end; final P1 "
                 "%.2f mm, best %.2f mm (%s)", state.step, reason, elapsed / 60, rate,
                 state.optimizer.param_groups[0]["lr"], p1, state.best, monitor.split)
        loop.writer.close()
    loop.draw()
    dist.barrier()
    return {"step": state.step, "p1": p1, "best_p1": state.best, "samples_per_s": rate, "mean_pose_p1": baseline,
            "minutes": state.progress.elapsed() / 60, "lr": state.optimizer.param_groups[0]["lr"],
            "reason": reason}
