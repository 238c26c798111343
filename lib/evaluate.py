"""Running tasks over datasets (sharded over ranks) and the metrics of each task."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from lib import dist
from lib.builders import build_score_fn
from lib.data import PoseData, denormalize, image_to_camera, normalize, project
from lib.metrics import joint_errors, mpjpe, pa_mpjpe, per_action, procrustes_align
from lib.model import ScoreFn
from lib.sampling import SamplerConfig, sample, saved_steps
from lib.sde import SDE
from lib.skeleton import SYMMETRIC_BONES, bone_lengths
from lib.tasks import (
    Task,
    completion_2d,
    completion_3d,
    denoising,
    estimation,
    fixed_missing,
    generation,
    random_missing,
)


def chunk_seed(seed: int, chunk: int) -> int:
    return (seed * 1_000_003 + chunk) % (2 ** 63)


def sample_task(score_fn: ScoreFn, sde: SDE, task: Task, cfg: SamplerConfig, hypo: int, batch_size: int,
                seed: int, device: torch.device, save_every: int = 0, progress: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """Sample S hypotheses per task row, sharded over ranks by fixed-size chunks.

    Chunk c always uses the generator seeded with (seed, c), so the result does not depend on the
    number of ranks. Returns samples [B, S, J, 3], optionally the trajectory [T, B, S, J, 3] (on the
    CPU, on every rank), and the network evaluations per sample (averaged over this rank's chunks).
    """
    rep = task.repeat(hypo)
    n = len(rep)
    n_chunks = math.ceil(n / batch_size)
    ws = dist.world_size()
    c0, c1 = dist.split(n_chunks, ws, dist.rank())
    outs, trajs = [], []
    nfe_start = score_fn.nfe
    for c in tqdm(range(c0, c1), desc=f"sampling ({cfg.method}, {cfg.steps} steps)", leave=False,
                  disable=not (progress and dist.is_main())):
        sub = rep.slice(c * batch_size, min(n, (c + 1) * batch_size)).to(device)
        gen = torch.Generator(device=device).manual_seed(chunk_seed(seed, c))
        x, traj = sample(score_fn, sde, sub, cfg, gen, save_every)
        outs.append(x.float().cpu())
        if save_every:
            trajs.append(torch.stack(traj).float().cpu())  # [T, chunk, J, 3]
    j = task.condition.shape[1]
    local = torch.cat(outs) if outs else torch.zeros(0, j, 3)
    bounds = [dist.split(n_chunks, ws, r) for r in range(ws)]  # chunk range of each rank
    rows = [min(n, b * batch_size) - min(n, a * batch_size) for a, b in bounds]
    comm = dist.comm_device(device)
    samples = dist.gather_rows(local.to(comm), rows).cpu().reshape(len(task), hypo, j, 3)
    traj_all = None
    if save_every:
        t_len = saved_steps(cfg, task.t_start, save_every)
        local_t = torch.cat(trajs, 1) if trajs else torch.zeros(t_len, 0, j, 3)
        gathered = dist.gather_rows(local_t.transpose(0, 1).contiguous().to(comm), rows).cpu()
        traj_all = gathered.transpose(0, 1).reshape(-1, len(task), hypo, j, 3)
    nfe = (score_fn.nfe - nfe_start) / max(1, c1 - c0)
    return samples, traj_all, nfe


def to_camera_mm(pred: torch.Tensor, data: PoseData, image_size: float, scale: float) -> torch.Tensor:
    """Network-space poses [N, ..., J, 3] (rows aligned with data) -> camera frame, mm."""
    pix = denormalize(pred.double() / scale, image_size)
    return image_to_camera(pix, torch.from_numpy(data.cam), torch.from_numpy(data.box),
                           torch.from_numpy(data.root_depth)).float()


def pose_to_network(pose_cam: np.ndarray, data: PoseData, image_size: float, scale: float) -> torch.Tensor:
    """Camera-frame poses [N, J, 3] mm -> network space with each row's camera, box and root depth."""
    uv = project(pose_cam, data.cam)
    ratio = (data.box[:, 2] - data.box[:, 0] + 1.0) / 2000.0
    z = ratio[:, None] * (pose_cam[..., 2] - data.root_depth[:, None])
    img = np.concatenate([uv, z[..., None]], -1)
    return torch.from_numpy(normalize(img, image_size) * scale).float()


def estimation_metrics(pred_mm: torch.Tensor, gt_mm: torch.Tensor, actions: np.ndarray
                       ) -> dict[str, dict[str, float]]:
    """P1/P2 per action (min and mean over hypotheses) and diversity. pred [B, S, J, 3], gt [B, J, 3]."""
    p1 = mpjpe(pred_mm, gt_mm[:, None])  # [B, S]
    p2 = pa_mpjpe(pred_mm, gt_mm[:, None].expand_as(pred_mm))
    rel = pred_mm - pred_mm[..., :1, :]
    spread = (rel - rel.mean(1, keepdim=True)).square().sum(-1).mean(1)  # [B, J] mean squared spread
    diversity = (2.0 * spread).sqrt().mean(-1)  # RMS pairwise joint distance between hypotheses
    errors = {"P1 (min over S)": p1.min(1).values, "P2 (min over S)": p2.min(1).values,
              "P1 (mean over S)": p1.mean(1), "P2 (mean over S)": p2.mean(1), "diversity": diversity}
    return per_action({k: v.numpy() for k, v in errors.items()}, actions)


def completion_metrics(pred_mm: torch.Tensor, gt_mm: torch.Tensor, missing: torch.Tensor, actions: np.ndarray
                       ) -> dict[str, dict[str, float]]:
    """P1/P2 over all joints and over the missing joints (min over hypotheses). missing: [B, J] bool."""
    gt = gt_mm[:, None].expand_as(pred_mm)
    miss = missing[:, None].expand(pred_mm.shape[:3]).float()
    aligned = procrustes_align(pred_mm, gt)
    errors = {
        "P1 all joints": joint_errors(pred_mm, gt),
        "P2 all joints": mpjpe(aligned, gt.float(), root=None),
        "P1 missing joints": joint_errors(pred_mm, gt, miss),
        "P2 missing joints": (((aligned - gt).norm(dim=-1) * miss).sum(-1) / miss.sum(-1).clamp_min(1)),
    }
    return per_action({k: v.min(1).values.numpy() for k, v in errors.items()}, actions)


def denoise_metrics(noisy_mm: torch.Tensor, pred_mm: torch.Tensor, gt_mm: torch.Tensor, actions: np.ndarray
                    ) -> dict[str, dict[str, float]]:
    errors = {"P1 noisy input": mpjpe(noisy_mm, gt_mm), "P2 noisy input": pa_mpjpe(noisy_mm, gt_mm),
              "P1 denoised": mpjpe(pred_mm, gt_mm), "P2 denoised": pa_mpjpe(pred_mm, gt_mm)}
    return per_action({k: v.numpy() for k, v in errors.items()}, actions)


# ---------------------------------------------------------------------------------------------------
# Generation: plausibility of poses that have no camera. Poses are compared in an approximate metric
# frame: root-relative normalised coordinates divided by the median pixels-per-mm of the training boxes.


def approx_mm(pose: torch.Tensor, image_size: float, scale: float, px_per_mm: float) -> torch.Tensor:
    """Network-space poses [N, J, 3] -> root-relative, roughly millimetres (weak perspective)."""
    p = pose / scale * (image_size / 2.0) / px_per_mm
    return p - p[..., :1, :]


def _body_axes(pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    right = torch.nn.functional.normalize(pose[:, 1] - pose[:, 4], dim=-1)
    up = torch.nn.functional.normalize(pose[:, 8] - pose[:, 0], dim=-1)
    forward = torch.nn.functional.normalize(torch.cross(up, right, dim=-1), dim=-1)
    return right, up, forward


def within_limits(pose: torch.Tensor) -> torch.Tensor:
    """[N] bool: knees not hyperextended (< 15 deg), elbows not folded (> 20 deg), head above the thorax."""
    right, up, _ = _body_axes(pose)
    ok = torch.ones(pose.shape[0], dtype=torch.bool)
    for hip, knee, ankle in ((1, 2, 3), (4, 5, 6)):
        thigh, shin = pose[:, knee] - pose[:, hip], pose[:, ankle] - pose[:, knee]
        # flexion about the right axis: the shin turns backwards relative to the thigh
        signed = torch.atan2((torch.cross(thigh, shin, dim=-1) * -right).sum(-1), (thigh * shin).sum(-1))
        ok &= signed > -math.radians(15)
    for sho, elb, wri in ((11, 12, 13), (14, 15, 16)):
        a, b = pose[:, sho] - pose[:, elb], pose[:, wri] - pose[:, elb]
        cos = (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(1e-9)
        ok &= cos < math.cos(math.radians(20))
    ok &= ((pose[:, 10] - pose[:, 8]) * up).sum(-1) > 0
    return ok


def _pairwise_mpjpe(a: torch.Tensor, b: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """[N, M] MPJPE between root-relative poses a [N, J, 3] and b [M, J, 3]."""
    return torch.cat([(a[i:i + chunk, None] - b[None]).norm(dim=-1).mean(-1) for i in range(0, len(a), chunk)])


def generation_metrics(samples: dict[str, torch.Tensor], train: torch.Tensor, max_ref: int = 5000
                       ) -> dict[str, dict[str, float]]:
    """Plausibility figures for each set of root-relative poses (~mm) against the training poses."""
    ref = train[torch.linspace(0, len(train) - 1, min(max_ref, len(train))).long()]
    ref_bones = bone_lengths(ref).mean(0)  # [16]
    table: dict[str, dict[str, float]] = {}
    for name, poses in samples.items():
        bones = bone_lengths(poses)
        left = bones[:, [i for i, _ in SYMMETRIC_BONES]]
        right = bones[:, [j for _, j in SYMMETRIC_BONES]]
        sub = poses[:500]
        pair = _pairwise_mpjpe(sub, sub)
        n = len(sub)
        table[name] = {
            "bone length error (mm)": float((bones - ref_bones).abs().mean()),
            "left/right asymmetry (mm)": float((left - right).abs().mean()),
            "within joint limits (%)": float(100.0 * within_limits(poses).float().mean()),
            "diversity (mm)": float(pair.sum() / max(1, n * (n - 1))),
            "nearest training pose (mm)": float(_pairwise_mpjpe(poses[:1000], ref).min(1).values.mean()),
        }
    return table


# ---------------------------------------------------------------------------------------------------
# Whole evaluations, shared by run/eval_fc_mp_adv_3d.py and run/denoise_fc_adv_3d.py.


@dataclass
class EvalOptions:
    task: str                               # est | comp2d | comp3d | gen | den
    sampler: SamplerConfig
    hypo: int = 1
    batch_size: int = 1000
    seed: int = 0
    use_gt_2d: bool = False
    save_every: int = 0                     # keep every k-th diffusion state (0: final only)
    randj: int = 0                          # completion: random missing joints per pose
    jlist: list[int] | None = None          # completion: fixed missing joints
    num_gen: int = 1000                     # gen: number of poses
    noise_type: str = "gaussian"            # den
    noise_std: float = 5.0                  # den: mm
    t_start: float = 0.05                   # den
    progress: bool = True                   # progress bar on rank 0


@dataclass
class EvalResult:
    tables: dict[str, dict[str, dict[str, float]]]   # title -> metric -> column -> value
    arrays: dict[str, np.ndarray]                     # results.npz content (DESIGN.md section 6)
    nfe: float                                        # network evaluations per sample
    seconds: float


def _noisy_camera(data: PoseData, kind: str, std: float, seed: int) -> np.ndarray:
    """Camera-frame poses with zero-mean noise of standard deviation std mm per coordinate."""
    g = np.random.default_rng(seed)
    shape = data.pose_cam.shape
    if kind == "gaussian":
        noise = g.normal(0.0, std, shape)
    elif kind == "uniform":
        noise = g.uniform(-std * math.sqrt(3.0), std * math.sqrt(3.0), shape)
    else:
        raise ValueError(f"unknown noise type '{kind}'; choose gaussian or uniform")
    return data.pose_cam + noise


def evaluate_task(model: torch.nn.Module, sde: SDE, config, test: PoseData, train: PoseData | None,
                  opts: EvalOptions, device: torch.device) -> EvalResult:
    """Build the task from the data, sample (sharded over ranks), and compute that task's metrics."""
    d = config.data
    size, scale = d.image_size, d.scale
    score_fn = build_score_fn(model, sde, config)
    extra: dict[str, np.ndarray] = {}
    gt = test.gt3d(size, scale)
    cond2d = test.cond2d(size, scale, opts.use_gt_2d)
    missing = None
    if opts.task in ("comp2d", "comp3d"):
        gen = torch.Generator().manual_seed(opts.seed)
        missing = (random_missing(len(test), opts.randj, gen, d.num_joints) if opts.randj
                   else fixed_missing(len(test), opts.jlist, d.num_joints))
        extra["missing"] = missing.numpy()[None, :, None]
    if opts.task == "est":
        task = estimation(cond2d)
    elif opts.task == "comp2d":
        task = completion_2d(cond2d, missing)
    elif opts.task == "comp3d":
        task = completion_3d(gt, missing)
    elif opts.task == "gen":
        task = generation(opts.num_gen, d.num_joints)
    elif opts.task == "den":
        noisy_cam = _noisy_camera(test, opts.noise_type, opts.noise_std, opts.seed)
        task = denoising(pose_to_network(noisy_cam, test, size, scale), opts.t_start)
        extra["noisy3d"] = (task.x_init / scale).numpy()[None, :, None]
    else:
        raise ValueError(f"unknown task '{opts.task}'")
    start = time.monotonic()
    samples, traj, nfe = sample_task(score_fn, sde, task, opts.sampler, opts.hypo, opts.batch_size, opts.seed,
                                     device, opts.save_every, opts.progress)
    seconds = time.monotonic() - start
    arrays = {"pred3d": ((traj if traj is not None else samples[None]) / scale).numpy()}
    if opts.task != "gen":
        arrays["gt3d"] = (gt / scale).numpy()[None, :, None]
    if opts.task in ("est", "comp2d"):
        arrays["input2d"] = (task.condition[..., :2] / scale).numpy()[None, :, None]
    arrays.update(extra)
    gt_mm = torch.from_numpy(test.pose_cam).float()
    tables: dict[str, dict[str, dict[str, float]]] = {}
    if opts.task == "est":
        tables[f"est: 3D from {'GT' if opts.use_gt_2d else 'detected'} 2D, S = {opts.hypo} (mm)"] = \
            estimation_metrics(to_camera_mm(samples, test, size, scale), gt_mm, test.action_name)
    elif opts.task in ("comp2d", "comp3d"):
        tables[f"{opts.task}: {int(missing.sum(1).float().mean())} missing joints per pose, S = {opts.hypo} (mm)"] = \
            completion_metrics(to_camera_mm(samples, test, size, scale), gt_mm, missing, test.action_name)
    elif opts.task == "den":
        tables[f"den: {opts.noise_type} noise, std {opts.noise_std} mm, t = {opts.t_start} (mm)"] = \
            denoise_metrics(torch.from_numpy(noisy_cam).float(), to_camera_mm(samples[:, 0], test, size, scale),
                            gt_mm, test.action_name)
    else:
        px_per_mm = float(np.median((train.box[:, 2] - train.box[:, 0] + 1.0) / 2000.0))
        held_out = test.subset(np.linspace(0, len(test) - 1, min(len(test), opts.num_gen)).astype(int))
        sets = {"generated": samples[:, 0], "held-out real poses": held_out.gt3d(size, scale)}
        tables["gen: plausibility (approx. mm, weak perspective)"] = generation_metrics(
            {k: approx_mm(v, size, scale, px_per_mm) for k, v in sets.items()},
            approx_mm(train.gt3d(size, scale), size, scale, px_per_mm))
    return EvalResult(tables=tables, arrays=arrays, nfe=nfe, seconds=seconds)
