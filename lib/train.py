"""Training loop: DSM with random condition masking, EMA, warm-up, clipping, DDP, exact resume.

Randomness of step k comes from a generator seeded with (seed, k, rank) and the data order of epoch e
from (seed, e), so a resumed run continues exactly without storing RNG states.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from pathlib import Path

import ml_collections
import numpy as np
import torch
from tensorboardX import SummaryWriter
from tqdm import tqdm

from lib import dist
from lib.builders import (
    build_model,
    build_optimizer,
    build_sampler_config,
    build_score_fn,
    build_sde,
    load_data,
    load_weights,
)
from lib.checkpoint import load_checkpoint, save_checkpoint
from lib.config_utils import config_to_json
from lib.data import PoseData
from lib.ema import ExponentialMovingAverage
from lib.errors import ToolkitError
from lib.evaluate import sample_task, to_camera_mm
from lib.losses import dsm_loss
from lib.metrics import mpjpe, per_action
from lib.model import ScoreFn
from lib.sde import SDE
from lib.skeleton import flip_pose
from lib.tasks import estimation

log = logging.getLogger("gfpose")


def setup_logging(workdir: Path | None) -> None:
    """Rank 0 logs to the console (through tqdm) and to workdir/log.txt; other ranks stay quiet."""
    log.handlers.clear()
    log.propagate = False
    log.setLevel(logging.INFO if dist.is_main() else logging.WARNING)
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")

    class _Tqdm(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            tqdm.write(self.format(record))

    console = _Tqdm()
    console.setFormatter(fmt)
    log.addHandler(console)
    if workdir is not None and dist.is_main():
        file = logging.FileHandler(workdir / "log.txt")
        file.setFormatter(fmt)
        log.addHandler(file)


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 4099 + rank) % (2 ** 63)


def mean_pose_p1(train: PoseData, test: PoseData) -> float:
    """P1 of always predicting the mean root-relative training pose (the trivial baseline)."""
    rel = train.pose_cam - train.pose_cam[:, :1]
    mean = torch.from_numpy(rel.mean(0)).float()
    gt = torch.from_numpy(test.pose_cam).float()
    err = mpjpe(mean.expand_as(gt), gt).numpy()
    return per_action({"mean pose": err}, test.action_name)["mean pose"]["Average"]


def evaluate_p1(model: torch.nn.Module, config: ml_collections.ConfigDict, test: PoseData,
                device: torch.device) -> float:
    """Protocol-1 MPJPE (averaged over actions) of single-hypothesis estimation with the eval sampler."""
    d, e = config.data, config.eval
    sde = build_sde(config)
    cfg = build_sampler_config(config, sde, method=e.train_method, steps=e.train_steps)
    task = estimation(test.cond2d(d.image_size, d.scale, d.use_gt_2d))
    pred, _, _ = sample_task(build_score_fn(model, sde, config), sde, task, cfg, 1, e.batch_size, config.seed, device,
                          progress=False)
    err = mpjpe(to_camera_mm(pred[:, 0], test, d.image_size, d.scale), torch.from_numpy(test.pose_cam).float())
    return per_action({"P1": err.numpy()}, test.action_name)["P1"]["Average"]


def _eval_subset(test: PoseData, max_poses: int) -> PoseData:
    if len(test) <= max_poses:
        return test
    return test.subset(np.linspace(0, len(test) - 1, max_poses).round().astype(int))


def train_step(score_fn: ScoreFn, sde: SDE, model: torch.nn.Module, opt: torch.optim.Optimizer,
               ema: ExponentialMovingAverage, x0: torch.Tensor, cond: torch.Tensor,
               config: ml_collections.ConfigDict, step: int, mask: torch.Tensor | None = None) -> torch.Tensor:
    """One optimiser step on a batch already on the device (x0, cond: [B, J, 3]); returns the detached loss.

    mask: [B, J, 3] condition masks; drawn from the config's masking probabilities when not given.
    """
    t, o = config.training, config.optim
    for group in opt.param_groups:  # linear warm-up, stored as a python float
        group["lr"] = float(o.lr * min((step + 1) / max(o.warmup, 1), 1.0))
    with torch.autocast(x0.device.type, dtype=torch.bfloat16, enabled=t.amp and x0.is_cuda):
        loss = dsm_loss(score_fn, sde, x0, cond, (t.mask_whole_p, t.mask_part_p, t.mask_joint_p), t.cond_3d_p, t.eps,
                        mask)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if o.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip)
    opt.step()
    ema.update(model.parameters())
    return loss.detach()


def train(config: ml_collections.ConfigDict, workdir: str | Path, restore_dir: str | Path | None = None
          ) -> dict[str, float]:
    """Train (or resume) a prior; rank 0 writes checkpoint.pth, best_model.pth, config.json, log.txt, events."""
    device = dist.init()
    workdir = Path(workdir)
    if dist.is_main():
        workdir.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    setup_logging(workdir)
    t, d = config.training, config.data
    ws, rank = dist.world_size(), dist.rank()
    if t.batch_size % ws:
        raise ToolkitError(f"training.batch_size ({t.batch_size}) must be divisible by the number of ranks ({ws})")
    train_data, test_data = load_data(config, "train"), load_data(config, "test")
    if len(train_data) < t.batch_size:
        raise ToolkitError(f"the training set has {len(train_data)} rows, fewer than training.batch_size "
                           f"({t.batch_size}); lower the batch size or data.train_sample")
    x_all = train_data.gt3d(d.image_size, d.scale).to(device)  # [N, J, 3]
    c_all = train_data.cond2d(d.image_size, d.scale, d.use_gt_2d).to(device)  # [N, J, 3]
    eval_data = _eval_subset(test_data, config.eval.train_max_poses)

    torch.manual_seed(config.seed)  # identical initial weights on every rank and in every run
    model = build_model(config).to(device)
    ema = ExponentialMovingAverage(model.parameters(), config.model.ema_rate)
    opt = build_optimizer(config, model.parameters())
    step, best = 0, math.inf
    if restore_dir is not None:
        step, best = _restore(Path(restore_dir) / "checkpoint.pth", model, ema, opt)
        log.info("resumed from %s at step %d", restore_dir, step)
    train_model = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda"
                                                             else None) if ws > 1 else model)
    sde = build_sde(config)
    score_fn = ScoreFn(train_model, sde)
    per_rank = t.batch_size // ws
    steps_per_epoch = len(train_data) // t.batch_size
    writer = SummaryWriter(str(workdir / "tb")) if dist.is_main() else None
    baseline_p1 = mean_pose_p1(train_data, test_data)
    if dist.is_main():
        (workdir / "config.json").write_text(config_to_json(config))
        log.info("training on %d rows (%d steps per epoch), %d ranks on %s, %d parameters", len(train_data),
                 steps_per_epoch, ws, device, sum(p.numel() for p in model.parameters()))
        log.info("baseline: predicting the mean training pose gives P1 %.1f mm", baseline_p1)

    def save(name: str) -> None:
        if not dist.is_main():
            return
        state = {"model_state_dict": model.state_dict(), "ema": ema.state_dict(),
                 "epoch": step // steps_per_epoch, "step": step, "config": config_to_json(config),
                 "best_metric": best}
        if name == "checkpoint.pth":
            state["optimizer_state_dict"] = opt.state_dict()
        save_checkpoint(state, workdir / name)

    def evaluate() -> float:
        nonlocal best
        eval_model = copy.deepcopy(model).eval()
        ema.copy_to(eval_model.parameters())
        p1 = evaluate_p1(eval_model, config, eval_data, device)
        log.info("step %d: P1 %.2f mm on %d test poses (%s, %d steps)", step, p1, len(eval_data),
                 config.eval.train_method, config.eval.train_steps)
        if writer is not None:
            writer.add_scalar("eval/p1", p1, step)
        if p1 < best:
            best = p1
            save("best_model.pth")
        return p1

    start, start_step, perm, perm_epoch = time.monotonic(), step, None, -1
    losses: list[torch.Tensor] = []
    last_log, last_log_step = time.monotonic(), step
    bar = tqdm(total=t.n_iters, initial=step, desc="training", disable=not dist.is_main(), dynamic_ncols=True)
    model.train()
    stop_reason = "n_iters"
    try:
        while step < t.n_iters:
            epoch, offset = divmod(step, steps_per_epoch)
            if epoch != perm_epoch:
                g = torch.Generator().manual_seed(step_seed(config.seed, epoch, 0) + 17)
                perm, perm_epoch = torch.randperm(len(train_data), generator=g).to(device), epoch
            lo = offset * t.batch_size + rank * per_rank
            idx = perm[lo:lo + per_rank]
            torch.manual_seed(step_seed(config.seed, step, rank))
            x0, cond = x_all[idx], c_all[idx]
            if d.flip:
                flip = (torch.rand(per_rank, device=device) < 0.5)[:, None, None]
                x0, cond = torch.where(flip, flip_pose(x0), x0), torch.where(flip, flip_pose(cond), cond)
            losses.append(train_step(score_fn, sde, model, opt, ema, x0, cond, config, step))
            step += 1
            bar.update(1)
            if step % t.log_every == 0:
                mean_loss = float(dist.all_reduce_mean(torch.stack(losses).mean()))
                now = time.monotonic()
                rate = (step - last_log_step) * t.batch_size / (now - last_log)
                losses, last_log, last_log_step = [], now, step
                bar.set_postfix(loss=f"{mean_loss:.3f}", samples_s=f"{rate:.0f}")
                if writer is not None:
                    writer.add_scalar("train/loss", mean_loss, step)
                    writer.add_scalar("train/samples_per_s", rate, step)
                    writer.add_scalar("train/lr", opt.param_groups[0]["lr"], step)
                log.info("step %d: loss %.4f, %.0f samples/s", step, mean_loss, rate)
            if t.eval_every and step % t.eval_every == 0:
                evaluate()
                model.train()
            if t.snapshot_every and step % t.snapshot_every == 0:
                save("checkpoint.pth")
            if t.max_minutes > 0 and step % 10 == 0:
                out_of_time = torch.tensor(float(time.monotonic() - start > 60.0 * t.max_minutes))
                if float(dist.all_reduce_mean(out_of_time)) > 0:
                    stop_reason = f"max_minutes ({t.max_minutes})"
                    break
    except KeyboardInterrupt:
        log.warning("interrupted at step %d: saving checkpoint.pth", step)
        save("checkpoint.pth")
        dist.barrier()
        raise
    finally:
        bar.close()
    elapsed = time.monotonic() - start
    if ws > 1:
        same = dist.same_on_all_ranks(list(model.parameters()) + ema.shadow_params, device)
        log.info("parameters and EMA %s on all %d ranks", "identical" if same else "DIFFER", ws)
    samples_per_s = (step - start_step) * t.batch_size / max(elapsed, 1e-9)
    save("checkpoint.pth")
    p1 = evaluate() if not (t.eval_every and step % t.eval_every == 0) else best
    if dist.is_main():
        log.info("stopped at step %d (%s) after %.1f min, %.0f training samples/s; best P1 %.2f mm",
                 step, stop_reason, elapsed / 60, samples_per_s, best)
        writer.close()
    dist.barrier()
    return {"step": step, "p1": p1, "best_p1": best, "samples_per_s": samples_per_s,
            "mean_pose_p1": baseline_p1}


def _restore(path: Path, model: torch.nn.Module, ema: ExponentialMovingAverage, opt: torch.optim.Optimizer
             ) -> tuple[int, float]:
    if not path.parent.is_dir():
        raise ToolkitError(f"--restore-dir {path.parent} does not exist; give the folder of an earlier run "
                           f"(checkpoint/NAME)")
    state = load_checkpoint(path)
    load_weights(model, ema, state, path)
    if "optimizer_state_dict" in state:
        opt.load_state_dict(state["optimizer_state_dict"])  # moves its state to the parameters' device
    return int(state["step"]), float(state.get("best_metric", math.inf))
