"""Training schedules as functions of the run's progress p in [0, 1] (learning rate, EMA half-life).

A run's progress is its step count over training.n_iters, or, with training.budget_minutes, the wall-clock time
it has spent over its budget. Because the schedules follow p, a budget run ends on its schedule (warm-up done,
cosine decayed to its final value, EMA averaged over the right share of the run) however fast or slow its steps
were, including on a machine that was busy for a while (README 'Training on a budget').
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

import ml_collections
import torch

from lib import dist


def learning_rate(config: ml_collections.ConfigDict, step: int, progress: float) -> float:
    """Linear warm-up, then constant (the paper's optim.schedule) or a cosine decay to optim.lr_final * lr at p = 1.

    The warm-up lasts optim.warmup_frac of the run when that is > 0 (the decay then spans the rest), else
    optim.warmup steps (the paper's 5000; the decay then spans the whole run, the warm-up's steps capping it).
    A python float, so that checkpoints load with weights_only=True."""
    o = config.optim
    if o.warmup_frac > 0:
        warm, done = o.warmup_frac, progress
    else:
        warm, done = 1.0, (step + 1) / max(o.warmup, 1)
    if done < warm or o.schedule == "constant":
        return float(o.lr * min(done / warm, 1.0))
    start = o.warmup_frac  # the decay runs from the end of a fractional warm-up (0 for a warm-up in steps) to p = 1
    decay = min(max((progress - start) / max(1.0 - start, 1e-12), 0.0), 1.0)
    return float(o.lr * (o.lr_final + (1.0 - o.lr_final) * 0.5 * (1.0 + math.cos(math.pi * decay))))


def ema_decay(config: ml_collections.ConfigDict, progress_step: float) -> float:
    """model.ema_rate, or with model.ema_halflife = h > 0 the decay of one step that advanced the run by
    progress_step: 0.5 ** (progress_step / h), so the average's half-life is h of the run in steps or in time."""
    h = config.model.ema_halflife
    return config.model.ema_rate if h <= 0 else 0.5 ** (progress_step / h)


class Progress:
    """How far a run is: p = steps / n_iters, or with a budget p = seconds spent / seconds available.

    The seconds available are the budget less a reserve for what follows the last step (the final evaluation and
    checkpoint), measured while the run goes. `elapsed` carries over a resume. Under torchrun every rank uses the
    mean of the ranks' clocks, so learning rates and EMA decays are identical on all ranks."""

    def __init__(self, config: ml_collections.ConfigDict, step: int, elapsed: float = 0.0,
                 clock: Callable[[], float] = time.monotonic):
        training = config.training
        self.budget = 60.0 * training.budget_minutes
        self.n_iters = training.n_iters
        self.reserve = 0.0
        self.elapsed_before = elapsed
        self.clock = clock  # seconds; the tests give a clock of their own
        self.started = clock()
        self.value = self._at(step)

    @property
    def timed(self) -> bool:
        return self.budget > 0

    def elapsed(self) -> float:
        """Wall-clock seconds of training so far, this run and the runs it resumes."""
        return self.elapsed_before + self.clock() - self.started

    def _at(self, step: int) -> float:
        if not self.timed:
            return min(step / self.n_iters, 1.0)
        spent = float(dist.all_reduce_mean(torch.tensor(self.elapsed(), dtype=torch.float64)))
        return min(spent / max(self.budget - self.reserve, 1e-9), 1.0)

    def advance(self, step: int) -> float:
        """Progress after `step` steps (never decreasing); returns how much this call advanced it."""
        before = self.value
        self.value = max(self._at(step), before)
        return self.value - before

    def done(self) -> bool:
        return self.value >= 1.0
