"""Sampling many rows: the memory check, and fixed-size chunks sharded over ranks (every caller's chunked sampler:
the evaluation, the API, the training monitor, distillation and the benchmark)."""
from __future__ import annotations

import math
import os

import torch

from lib import dist
from lib.errors import ToolkitError
from lib.model import ScoreFn
from lib.progress import progress as progress_of
from lib.sampling import SamplerConfig, sample, saved_steps
from lib.sde import SDE
from lib.tasks.base import Task


def available_memory(device: torch.device) -> int:
    """Bytes free for new tensors on the device: CUDA's free memory, else the host's available memory."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_fits(rows: int, hypotheses: int, device: torch.device, states: int = 1, joints: int = 17) -> None:
    """Refuse, before anything is allocated, N inputs x S hypotheses (keeping `states` states of each) that would
    not fit: the samples, the repeated task (condition, masks, observation) and the states, float32."""
    need = rows * hypotheses * joints * 3 * 4 * (6 + states)
    free = available_memory(device)
    if need > 0.5 * free:
        raise ToolkitError(f"{rows} inputs x {hypotheses} hypotheses{f' x {states} saved states' if states > 1 else ''}"
                           f" need about {need / 1e9:.1f} GB, more than half of the {free / 1e9:.1f} GB free on "
                           f"{device.type}; sample fewer at a time (fewer hypotheses, --sample K, or the inputs in "
                           f"parts)")


def chunk_seed(seed: int, chunk: int) -> int:
    return (seed * 1_000_003 + chunk) % (2 ** 63)


def sample_task(score_fn: ScoreFn, sde: SDE, task: Task, cfg: SamplerConfig, hypo: int, batch_size: int,
                seed: int, device: torch.device, save_every: int = 0, progress: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor | None, float]:
    """Sample S hypotheses per task row, sharded over ranks by fixed-size chunks.

    Chunk c always uses the generator seeded with (seed, c), so the result does not depend on the number of
    ranks. Returns samples [B, S, J, 3], optionally the trajectory [T, B, S, J, 3] (on the CPU, on every
    rank), and the network evaluations per sample (averaged over this rank's chunks).
    """
    check_fits(len(task), hypo, device, saved_steps(cfg, save_every) if save_every else 1, task.condition.shape[1])
    rep = task.repeat(hypo)
    n, j = len(rep), task.condition.shape[1]
    n_chunks = math.ceil(n / batch_size)
    ws = dist.world_size()
    c0, c1 = dist.split(n_chunks, ws, dist.rank())
    outs, trajs = [], []
    nfe_start = score_fn.nfe
    for c in progress_of(range(c0, c1), c1 - c0, f"sampling ({cfg.method}, {cfg.steps} steps)",
                         progress and dist.is_main()):
        sub = rep.slice(c * batch_size, min(n, (c + 1) * batch_size)).to(device)
        gen = torch.Generator(device=device).manual_seed(chunk_seed(seed, c))
        x, traj = sample(score_fn, sde, sub, cfg, gen, save_every)
        outs.append(x.float().cpu())
        if save_every:
            trajs.append(torch.stack(traj).float().cpu())  # [T, chunk, J, 3]
    local = torch.cat(outs) if outs else torch.zeros(0, j, 3)
    rows = [min(n, b * batch_size) - min(n, a * batch_size) for a, b in (dist.split(n_chunks, ws, r)
                                                                          for r in range(ws))]
    comm = dist.comm_device(device)
    samples = dist.gather_rows(local.to(comm), rows).cpu().reshape(len(task), hypo, j, 3)
    traj_all = None
    if save_every:
        local_t = torch.cat(trajs, 1) if trajs else torch.zeros(saved_steps(cfg, save_every), 0, j, 3)
        gathered = dist.gather_rows(local_t.transpose(0, 1).contiguous().to(comm), rows).cpu()
        traj_all = gathered.transpose(0, 1).reshape(-1, len(task), hypo, j, 3)
    return samples, traj_all, (score_fn.nfe - nfe_start) / max(1, c1 - c0)
