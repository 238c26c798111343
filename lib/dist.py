"""torchrun-ready distributed helpers: plain `python` is world size 1, torchrun gives gloo (CPU) or nccl (GPU)."""
from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


def init() -> torch.device:
    """Initialise the process group from torchrun's environment (if any) and pick this rank's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=timedelta(minutes=30))
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def rank() -> int:
    """This process's rank (from torchrun's environment also after the process group is gone)."""
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def comm_device(device: torch.device) -> torch.device:
    """Where tensors must live for collectives: the GPU under nccl, else the CPU."""
    if dist.is_initialized() and dist.get_backend() == "nccl":
        return device
    return torch.device("cpu")


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def split(n: int, parts: int, index: int) -> tuple[int, int]:
    """Contiguous range [start, stop) of part `index` when n items are split into `parts` near-equal parts."""
    base, extra = divmod(n, parts)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


def gather_rows(local: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Concatenate each rank's contiguous rows (rank r holds sizes[r]) in rank order, on every rank."""
    if not dist.is_initialized():
        return local
    ws = world_size()
    longest = max(sizes)
    padded = torch.zeros((longest,) + tuple(local.shape[1:]), dtype=local.dtype, device=local.device)
    padded[:local.shape[0]] = local
    buckets = [torch.empty_like(padded) for _ in range(ws)]
    dist.all_gather(buckets, padded)  # padding is internal to the transfer and trimmed here
    return torch.cat([b[:s] for b, s in zip(buckets, sizes, strict=True)])


def all_reduce_mean(value: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
        value /= world_size()
    return value


def same_on_all_ranks(tensors: list[torch.Tensor], device: torch.device) -> bool:
    """True if every rank holds exactly rank 0's values (checks that DDP kept replicas in sync)."""
    if not dist.is_initialized():
        return True
    flat = torch.cat([t.detach().reshape(-1).float() for t in tensors]).to(comm_device(device))
    ref = flat.clone()
    dist.broadcast(ref, src=0)
    ok = torch.tensor([float(torch.equal(flat, ref))], device=flat.device)
    dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item() == 1.0)

