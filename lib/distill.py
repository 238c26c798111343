"""Progressive distillation of the deterministic sampler (Salimans & Ho 2022): students that take 16, 8, 4, 2, 1 steps.

The paper's --pflow is the drift-only process: a deterministic map from (x_T, condition) to a pose (docs/design.md,
'Samplers'). A round halves the steps: the student starts from its teacher's weights and learns, in one step of the
first-order integrator x'' = A x + B D(x, t) (A = (sigma''/sigma) e^-h, B = alpha'' (1 - e^-2h), h the half log-SNR
step), where the teacher lands in two. Its target data prediction is D* = (x'' - A x) / B and the loss w(t) |D - D*|^2.
The teacher of the first round is the fast deterministic sampler (config.fast, 2 x distill.first_steps steps); each
later round's teacher is the previous student. The states x are the teacher's own trajectories from the start draw
under the training conditions and masks (the loss's, lib/losses.draw_condition), so the students keep est, comp2d and
comp3d.

The students' output (distill.predict, lib/model.Student) is the teacher's noise head, v, the pose, or the teacher's
head and a v head blended by the SNR (eps+v). A new head starts at zero (the teacher's weights cannot be read as v or
x), and first spends distill.fit_share of the minutes learning the teacher's own data prediction at the first
student's states. The weight w(t) belongs to the output: SNR for eps (its own noise-space loss), SNR + 1 for v and
eps+v (|v - v*|^2), max(SNR, 1) for x (Salimans & Ho's truncated SNR). The rest of the minutes (less the stochastic
twin's, below) go to the rounds, round i a share ~ distill.round_growth^i. The students may start at
distill.t_start < T, from the Gaussian that matches the training poses there.

A round may end end to end (distill.end_share of its minutes): the student's whole k-step sampler is unrolled from
the start draw, gradients through every step, and its pose is matched to the first teacher's (the fast sampler's)
from the same draw and condition, |x_0 - x_0*|^2. The halving rounds learn from the previous student, whose errors
they inherit; this phase measures each student against the one teacher that was never distilled.

The last student (the fewest steps, --steps) may then get a stochastic twin (distill.spread_share of the minutes;
Student.stochastic, from its weights): its steps with the reverse SDE's noise between them (eta 1, what S > 1 samples
with) are unrolled from the start draw for distill.spread_draws draws per condition and matched to as many samples
of the teacher's fast stochastic sampler (config.fast: the reverse SDE) by the energy score E|X - Y|^b - E|X - X'|^b / 2
(energy_score): |.| the distance P1 measures, the mean over joints (distill.spread_distance), b distill.spread_power.
The drift-only map the other phases teach lands every draw near one pose, and the noise between fewer than 8 steps
leaves it in states that map never visits. The score is least where the draws are distributed as the teacher's
samples, in their spread as well as their place (Gneiting & Raftery 2007; used to train few-step diffusion samplers
by De Bortoli et al. 2025). The twin has its own weights: trained in the student's, the same score made its
deterministic steps worse (README 'Distilled samplers'). It may also start its steps elsewhere (distill.twin_t_start),
from the data-matched Gaussian there, on a grid of its own. Twins trained alike from other draws differ in their oracle
by more than most settings change it, so distill.twin_candidates twins may share the twin's minutes, each from its own
draws, and the one with the least oracle P1 of distill.twin_hypo samples on the validation rows (lib/train.Monitor)
is kept; the test rows are never seen.

Why progressive distillation and not consistency distillation: the drift-only map is deterministic and its teacher
trajectories are cheap to store whole, so every pair of steps of a trajectory is a training pair; a consistency
model would need the teacher's ODE, which the drift-only process is not (its marginals are not the data's).
"""
from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import ml_collections
import torch

from configs.default_h36m_configs import SETTINGS
from lib import dist
from lib.builders import build_score_fn
from lib.checkpoint import save_checkpoint
from lib.config_utils import config_to_json
from lib.data import PoseData, load_train_val
from lib.ema import ExponentialMovingAverage
from lib.errors import ToolkitError
from lib.loader import LoadedPrior
from lib.losses import draw_condition, mask_rates
from lib.model import ScoreFn, Student
from lib.resolve import resolve_sampler, student_sampler
from lib.run_folder import RunFolder, setup_logging
from lib.sampling import SamplerConfig, make_grid, sample
from lib.schedule import learning_rate
from lib.sde import SDE
from lib.tasks.base import Task
from lib.train import Batches, Monitor

log = logging.getLogger("gfpose")


@dataclass
class Round:
    steps: int               # the student's steps
    loss: float              # its last logged loss
    updates: int             # optimiser steps it made
    minutes: float
    target: str = "distil"   # 'distil': where two teacher steps land; 'fit': the teacher's own data prediction;
                             # 'end': the first teacher's pose, the student's steps unrolled; 'spread': the
                             # teacher's stochastic samples, the stochastic twin's noisy steps unrolled
    oracle: float | None = None  # 'spread' among several candidates: its oracle P1 (mm) on the validation rows,
    kept: bool | None = None     # and whether it was the one kept


def teacher_pairs(teacher: ScoreFn, sde: SDE, cfg: SamplerConfig, condition: torch.Tensor, mask: torch.Tensor,
                  generator: torch.Generator, start: Student | None = None, whole: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The teacher's trajectories from x_T ~ N(0, I) (or from `start`'s draw at its t_start), cut into student steps
    of two teacher steps each: (states x [B * K, J, 3] at the start of each student step, its index k [B * K], the
    teacher's state two steps later [B * K, J, 3]); K = cfg.steps / 2. whole: K = 1, the start and the pose."""
    shape, device = condition.shape, condition.device
    x_start = sde.prior_sample(shape, generator, device) if start is None else start.start(shape, generator, device)
    task = Task(condition=condition, mask=mask, x_init=x_start,
                t_start=sde.T if start is None else float(start.t_start))
    if whole:  # the pose alone: no trajectory kept
        starts, ends = task.x_init[None], sample(teacher, sde, task, cfg, generator)[0][None]  # [1, B, J, 3]
    else:
        _, traj = sample(teacher, sde, task, cfg, generator, save_every=1)
        states = torch.stack([task.x_init] + traj)  # [2K + 1, B, J, 3]
        starts, ends = states[:-1:2], states[2::2]  # [K, B, J, 3]
    k = torch.arange(len(starts), device=device).repeat_interleave(shape[0])
    return starts.flatten(0, 1), k, ends.flatten(0, 1)


def step_coefficients(sde: SDE, schedule: str, steps: int, eps: float, device: torch.device, t_start: float = 1.0
                      ) -> tuple[torch.Tensor, ...]:
    """Per student step k of a grid from t_start: its start time t_k, A_k and B_k of x'' = A x + B D, and C_k, the
    noise of the stochastic form (eta 1): x'' = A x + B D + C z, C = sigma'' sqrt(1 - e^-2h), 0 at the last step,
    whose mean the sampler returns (sampling.noise_removal) (float32 [K] each)."""
    grid = make_grid(sde, schedule, steps, t_start, eps)
    h = sde.lambda_(grid.t_next) - sde.lambda_(grid.t)
    a = sde.sigma(grid.t_next) / sde.sigma(grid.t) * torch.exp(-h)
    b = -sde.alpha(grid.t_next) * torch.expm1(-2.0 * h)
    c = sde.sigma(grid.t_next) * torch.sqrt(-torch.expm1(-2.0 * h))
    c[-1] = 0.0
    return tuple(v.float().to(device) for v in (grid.t, a, b, c))


def loss_weight(sde: SDE, t: torch.Tensor, predict: str) -> torch.Tensor:
    """w(t) [B] of the loss w |D - D*|^2 for a student's output: SNR = alpha^2 / sigma^2 (eps: exactly its noise-space
    loss), SNR + 1 (v and eps+v), max(SNR, 1) (x)."""
    snr = (sde.alpha(t) / sde.sigma(t)) ** 2
    return {"eps": snr, "eps+v": snr + 1.0, "v": snr + 1.0, "x": snr.clamp(min=1.0)}[predict]


def unrolled(student: Student, x: torch.Tensor, condition: torch.Tensor, mask: torch.Tensor,
             coefficients: tuple[torch.Tensor, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """The student's whole sampler from x [B, J, 3] (its start draw): x <- A_k x + B_k D(x, t_k) for every step k,
    as the 'distilled' sampler runs it with eta 0, or, given a generator, + C_k z as it runs with eta 1 (the same
    draws in the same order); differentiable. Returns the pose [B, J, 3]."""
    for t, a, b, c in zip(*coefficients, strict=True):
        x = a * x + b * student.data(x, t.expand(len(x)), condition, mask)
        if generator is not None and c > 0:
            x = x + c * torch.randn(x.shape, generator=generator, device=x.device)
    return x


def energy_score(x: torch.Tensor, y: torch.Tensor, distance: str = "pose", power: float = 1.0) -> torch.Tensor:
    """The energy score of samples x [C, m, J, 3] against samples y [C, n, J, 3] of the same C conditions (m >= 2):
    E|X - Y|^b - E|X - X'|^b / 2 [C], b = power in (0, 1]. |.| is the distance of whole poses (Euclidean in J * 3
    numbers; 'pose') or the mean over joints of their Euclidean distances ('mpjpe'). Either, to such a power, is a
    negative definite kernel, so this is a proper scoring rule (Gneiting & Raftery 2007, kernel and energy scores):
    its expectation is least where X is distributed as Y, so it trains spread as well as place; with 'pose' only
    there (strictly proper). A power below 1 weighs the near samples more."""
    def dist(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # [C, p, 1, J, 3], [C, 1, q, J, 3] -> [C, p, q]
        d2 = (a - b).square()
        if distance == "pose":
            return d2.sum((-2, -1)).add(1e-12).sqrt().pow(power)
        return d2.sum(-1).add(1e-12).sqrt().mean(-1).pow(power)

    cross = dist(x[:, :, None], y[:, None]).mean((1, 2))  # [C]
    m = x.shape[1]
    within = dist(x[:, :, None], x[:, None])  # [C, m, m]; the diagonal (~0) is left out
    within = (within.sum((1, 2)) - within.diagonal(dim1=1, dim2=2).sum(1)) / (m * (m - 1))
    return cross - within / 2


def round_seconds(seconds: float, rounds: int, fit_share: float, growth: float, spread_share: float = 0.0
                  ) -> tuple[float, list[float], float]:
    """The head fit's seconds, each round's and the stochastic twin's: the fit takes fit_share, the twin
    spread_share, round i of the rest a share ~ growth^i."""
    weights = [growth ** i for i in range(rounds)]
    rest = seconds * (1.0 - fit_share - spread_share)
    return seconds * fit_share, [rest * w / sum(weights) for w in weights], seconds * spread_share


class Distiller:
    """Runs the rounds; `students` maps steps -> the EMA weights of each student (a Student in eval mode)."""

    def __init__(self, config: ml_collections.ConfigDict, teacher: torch.nn.Module, sde: SDE, batches,
                 device: torch.device, selection: PoseData | None = None):
        self.config, self.sde, self.batches, self.device = config, sde, batches, device
        self.selection = selection  # the rows twin candidates are chosen on (validation)
        self.teacher = teacher.eval()
        self.students: dict[int, Student] = {}
        self.rounds: list[Round] = []
        self.batch_index = 0

    def first_student(self) -> Student:
        """The teacher's network under the chosen head (a v / x head zeroed) and the training poses' moments."""
        d = self.config.distill
        student = Student(copy.deepcopy(self.teacher), self.sde, d.predict, d.t_start).to(self.device)
        if d.predict in ("v", "x"):  # the teacher's head read as v or x would be noise
            torch.nn.init.zeros_(student.net.post_dense.weight)
            torch.nn.init.zeros_(student.net.post_dense.bias)
        x = self.batches.x  # [N, J, 3] the normalised training poses
        student.start_mean.copy_(x.mean(0))
        student.start_std.copy_(x.std(0))
        return student

    def run(self, final_steps: int, minutes: float) -> dict[int, Student]:
        d = self.config.distill
        first = d.first_steps
        counts = [first // 2 ** r for r in range(int(math.log2(first // final_steps)) + 1)]
        if first % final_steps or counts[-1] != final_steps:
            raise ValueError(f"distill.first_steps ({first}) must be a power-of-two multiple of --steps {final_steps}")
        fit, shares, spread = round_seconds(60.0 * minutes, len(counts), d.fit_share, d.round_growth, d.spread_share)
        teacher_fn = ScoreFn(self.teacher, self.sde)
        cfg = self._sampler(self.config.fast.deterministic, 2 * first)  # the teacher's fast sampler, twice the
        first_teacher = (teacher_fn, cfg)                                 # first student's steps
        student = self.first_student()
        if fit > 0:
            student = self._round(student, teacher_fn, cfg, first, fit, target="fit")
        for steps, seconds in zip(counts, shares, strict=True):
            student = self._round(student, teacher_fn, cfg, steps, seconds * (1.0 - d.end_share))
            if d.end_share > 0:
                student = self._round(student, *first_teacher, steps, seconds * d.end_share, target="end")
            self.students[steps] = student
            teacher_fn = ScoreFn(student, self.sde)
            cfg = self._sampler("drift_ddim", steps)
        if spread > 0:
            student.stochastic = self.twin(student, final_steps, spread)
        return self.students

    def twin(self, student: Student, steps: int, seconds: float) -> Student:
        """The stochastic twin of `student` (of `steps` steps), from its weights, trained for `seconds` against the
        teacher's fast stochastic sampler (the reverse SDE; module docstring). With distill.twin_candidates = K > 1,
        K twins from their own draws share the seconds equally, and the one with the least oracle P1 of
        distill.twin_hypo samples on the selection rows is kept."""
        f, d = self.config.fast, self.config.distill
        k = d.twin_candidates
        cfg = self._sampler(f.stochastic, f.stochastic_steps, f.stochastic_schedule, eta=f.stochastic_eta)
        twins = [self._round(student, ScoreFn(self.teacher, self.sde), cfg, steps, seconds / k, target="spread",
                             candidate=i, t_start=d.twin_t_start) for i in range(k)]
        if k == 1:
            return twins[0]
        rounds = self.rounds[-k:]
        for twin, r in zip(twins, rounds, strict=True):
            r.oracle = self._twin_oracle(student, twin, steps)
        best = min(range(k), key=lambda i: rounds[i].oracle)
        for i, r in enumerate(rounds):
            r.kept = i == best
        log.info("twin candidates' oracle P1 on the selection rows: %s mm; kept candidate %d",
                 ", ".join(f"{r.oracle:.2f}" for r in rounds), best)
        return twins[best]

    def _twin_oracle(self, student: Student, twin: Student, steps: int) -> float:
        """The oracle P1 (mm) of `student` sampled with `twin` (eta fast.stochastic_eta, distill.twin_hypo samples) on
        the selection rows."""
        if self.selection is None:
            raise ValueError("choosing among twin candidates needs the selection rows (Distiller(selection=...))")
        sampler = resolve_sampler(self.config, self.device, given={
            "method": "distilled", "steps": steps, "eta": self.config.fast.stochastic_eta})
        monitor = Monitor(self.config, self.selection, self.device, sampler, hypo=self.config.distill.twin_hypo)
        kept, student.stochastic = student.stochastic, twin
        try:
            score_fn = build_score_fn(self.teacher, self.sde, self.config, {steps: student})
            return monitor(self.teacher, score_fn=score_fn)["oracle"]
        finally:
            student.stochastic = kept

    def _sampler(self, method: str, steps: int, schedule: str | None = None, **given) -> SamplerConfig:
        schedule = schedule or self.config.fast.deterministic_schedule
        return resolve_sampler(self.config, self.device,
                               given={"method": method, "steps": steps, "schedule": schedule} | given)

    def _round(self, init: Student, teacher_fn: ScoreFn, cfg: SamplerConfig, steps: int, seconds: float,
               target: str = "distil", candidate: int = 0, t_start: float = 0.0) -> Student:
        """One round for `seconds`: a student of `steps` steps from `init`; returns its EMA weights (eval mode).
        target (Round.target): 'distil' where the teacher's two steps land; 'fit' the teacher's own data prediction
        at the student's states; 'end' the teacher's pose from the student's start draw, the student unrolled;
        'spread' the teacher's stochastic samples, the student's stochastic form unrolled (energy_score).
        candidate: its own draws (seed) for each of several twins. t_start > 0: the new network's steps start there
        (a twin's own start, distill.twin_t_start), else where init's do."""
        d = self.config.distill
        student = copy.deepcopy(init).train()
        student.stochastic = None  # a twin belongs to the steps it was trained for (Student.stochastic)
        if t_start > 0:
            student.t_start.fill_(t_start)
        ema = ExponentialMovingAverage(student.parameters(), 0.999)
        opt = torch.optim.Adam(student.parameters(), lr=d.lr)
        schedule = ml_collections.ConfigDict({"optim": {"lr": d.lr, "warmup_frac": 0.02, "warmup": 0,
                                                        "schedule": "cosine", "lr_final": 0.0}})
        coefficients = step_coefficients(self.sde, self.config.fast.deterministic_schedule, steps, cfg.eps, self.device,
                                         float(student.t_start))  # its own grid (lib/builders.build_score_fn)
        start, updates, losses, progress = time.monotonic(), 0, [], 0.0
        offset = {"distil": 0, "fit": 1000, "end": 2000, "spread": 3000}[target]
        gen = torch.Generator(device=self.device).manual_seed(self.config.seed + steps + offset + 10_000 * candidate)
        passes = d.spread_passes if target == "spread" else 1
        while progress < 1.0:
            batch_loss, rows, per_batch = self._losses(target, student, teacher_fn, cfg, gen, init, coefficients)
            order = torch.cat([torch.randperm(rows, generator=gen, device=self.device) for _ in range(passes)])
            for lo in range(0, passes * rows - per_batch + 1, per_batch):
                done = min((time.monotonic() - start) / seconds, 1.0)
                for g in opt.param_groups:
                    g["lr"] = learning_rate(schedule, updates, done)
                ema.decay = 0.5 ** (max(done - progress, 1e-9) / d.ema_halflife)
                progress = done
                loss = batch_loss(order[lo:lo + per_batch])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
                opt.step()
                ema.update(student.parameters())
                updates += 1
                losses.append(loss.detach())
                if progress >= 1.0:
                    break
        self.rounds.append(Round(steps, float(torch.stack(losses[-50:]).mean()), updates,
                                 (time.monotonic() - start) / 60, target))
        log.info("%s of %d steps: %d updates in %.1f min, loss %.4f",
                 {"distil": "student", "fit": "head fit", "end": "end to end, student",
                  "spread": "stochastic form, student"}[target], steps, updates, self.rounds[-1].minutes,
                 self.rounds[-1].loss)
        ema.copy_to(student.parameters())
        return student.eval()

    def _losses(self, target: str, student: Student, teacher_fn: ScoreFn, cfg: SamplerConfig,
                gen: torch.Generator, init: Student, coefficients: tuple[torch.Tensor, ...]):
        """A fresh pool of training rows for `target` and the loss of a batch of them: (loss(indices) -> scalar,
        rows in the pool, rows per batch)."""
        d = self.config.distill
        t_k, a_k, b_k, _ = coefficients
        if target == "spread":  # rows are conditions, each with spread_draws teacher samples
            m = d.spread_draws
            cond, mask, y = self._spread_pool(teacher_fn, cfg, gen, m)  # y [C, m, J, 3]

            def loss(idx: torch.Tensor) -> torch.Tensor:
                c, k = cond[idx].repeat_interleave(m, 0), mask[idx].repeat_interleave(m, 0)  # [C * m, ...]
                x = student.start(c.shape, gen, self.device)
                x = unrolled(student, x, c, k, coefficients, gen).unflatten(0, (len(idx), m))  # [C, m, J, 3]
                return energy_score(x, y[idx], d.spread_distance, d.spread_power).mean()

            return loss, len(cond), max(d.batch_size // m, 1)
        x, k, target_x = self._pool(teacher_fn, cfg, gen, init, whole=target == "end")

        def loss(idx: torch.Tensor) -> torch.Tensor:
            xs, kk, t = x[idx], k[idx], t_k[k[idx]]
            cond, mask = self.cond[idx], self.mask[idx]
            if target == "end":  # the pose of the student's whole sampler against the first teacher's
                return (unrolled(student, xs, cond, mask, coefficients) - target_x[idx]).square().sum((1, 2)).mean()
            if target == "fit":  # D_teacher(x, t)
                with torch.no_grad():
                    eps = teacher_fn.eps(xs, t, cond, mask)
                want = (xs - self.sde.sigma(t)[:, None, None] * eps) / self.sde.alpha(t)[:, None, None]
            else:  # D*: where the teacher's two steps land, as a data prediction
                want = (target_x[idx] - a_k[kk][:, None, None] * xs) / b_k[kk][:, None, None]
            # the weight follows the output (loss_weight): unweighted, the steps near T (alpha 0.007 at T = 1) took
            # every gradient from an eps head, whose D = (x - sigma eps) / alpha amplifies its error ~150-fold
            # (README 'Distilled samplers')
            err = (student.data(xs, t, cond, mask) - want).square().sum((1, 2))
            return (loss_weight(self.sde, t, d.predict) * err).mean()

        return loss, len(x), d.batch_size

    def _conditions(self, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
        """About `rows` training conditions and masks (the loss's, lib/losses.draw_condition) from the next batches."""
        parts = []
        for _ in range(max(rows // self.batches.per_rank, 1)):
            batch = self.batches(self.batch_index)
            self.batch_index += 1
            parts.append(draw_condition(batch, mask_rates(self.config.training, 0.0)))
        return torch.cat([c for c, _ in parts]), torch.cat([m for _, m in parts])

    def _pool(self, teacher_fn: ScoreFn, cfg: SamplerConfig, gen: torch.Generator, student: Student,
              whole: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher pairs for distill.pool training rows with their conditions and masks (self.cond / self.mask,
        repeated per student step like the pairs), from the student's start draw. whole: one pair per row instead,
        the start draw and the teacher's pose (step index 0)."""
        condition, mask = self._conditions(self.config.distill.pool)
        with torch.inference_mode():
            x, k, ends = teacher_pairs(teacher_fn, self.sde, cfg, condition, mask, gen, student, whole)
        repeats = len(x) // len(condition)
        self.cond, self.mask = condition.repeat(repeats, 1, 1), mask.repeat(repeats, 1, 1)
        return x.clone(), k.clone(), ends.clone()

    def _spread_pool(self, teacher_fn: ScoreFn, cfg: SamplerConfig, gen: torch.Generator, m: int
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """About distill.pool / m training conditions and masks (at least a batch), and m samples [C, m, J, 3] of the
        teacher's stochastic sampler for each."""
        condition, mask = self._conditions(self.config.distill.pool // m)
        task = Task(condition=condition.repeat_interleave(m, 0), mask=mask.repeat_interleave(m, 0))
        with torch.inference_mode():
            y = sample(teacher_fn, self.sde, task, cfg, gen)[0]
        return condition, mask, y.unflatten(0, (len(condition), m)).clone()


def fast_student(p1: dict[int, float], teacher_p1: float, tolerance: float) -> int:
    """The student --fast uses: the fewest steps whose validation P1 is within `tolerance` (a share) of the teacher's
    fast sampler, or 0 (none: --fast keeps the teacher's sampler)."""
    good = [steps for steps, value in p1.items() if value <= (1.0 + tolerance) * teacher_p1]
    return min(good, default=0)


TWIN_SETTINGS = ("spread_draws", "spread_passes", "spread_distance", "spread_power", "twin_candidates", "twin_hypo",
                 "twin_t_start")


def twin_defaults() -> dict[str, object]:
    """Today's defaults of the twin's settings (TWIN_SETTINGS): what a new twin of an earlier run (--twin) is trained
    with unless the command line says otherwise; the run's stored values describe the twin it had."""
    return {f"distill.{k}": SETTINGS[f"distill.{k}"].default for k in TWIN_SETTINGS}


def check_twin_settings(config: ml_collections.ConfigDict) -> None:
    """Refuse the twin's settings (TWIN_SETTINGS) given for a distillation that trains no twin (spread_share 0)."""
    d = config.distill
    given = [f"distill.{k} ({d[k]})" for k in TWIN_SETTINGS if d[k] != SETTINGS[f"distill.{k}"].default]
    if d.spread_share == 0 and given:
        raise ToolkitError(f"{' and '.join(given)} cannot take effect with distill.spread_share=0 (no stochastic twin "
                           f"is trained); give distill.spread_share too")


def distill_run(prior: LoadedPrior, workdir: str | Path, final_steps: int, minutes: float,
                overwrite: bool = False) -> dict:
    """Distil a trained prior (lib/loader.load_prior; its EMA weights teach) into students of first_steps ...
    final_steps steps within `minutes`, and write a run folder that every command loads: the teacher's checkpoint
    plus 'students' (their weights by steps), config.distill.students and config.distill.fast_steps (fast_student,
    on the validation rows). Returns the rounds and the monitor's P1 there of the teacher's fast sampler and of every
    student."""
    check_twin_settings(prior.config)
    workdir = Path(workdir)
    device = dist.init()
    with RunFolder(workdir, resume=False, overwrite=overwrite) as folder:
        setup_logging(workdir)
        config, sde = prior.config, prior.sde
        train, selection = _train_and_selection(config)
        teacher = prior.model.to(device)
        log.info("distilling %d -> %d steps in %.1f min on %d rows", config.distill.first_steps, final_steps, minutes,
                 len(train))
        distiller = Distiller(config, teacher, sde, Batches(config, train, device), device, selection)
        students = distiller.run(final_steps, minutes)
        config.distill.students = ",".join(str(s) for s in sorted(students, reverse=True))
        monitor = Monitor(config, selection, device)
        score_fn = build_score_fn(teacher, sde, config, students)
        scores = {"teacher": monitor(teacher, score_fn=score_fn)}
        for steps in sorted(students, reverse=True):
            monitor.sampler = student_sampler(config, steps, device)
            scores[f"student {steps}"] = monitor(teacher, score_fn=score_fn)
            log.info("%s: P1 %.2f mm on %s", f"student of {steps} steps", scores[f"student {steps}"]["p1"],
                     monitor.describe())
        config.distill.fast_steps = fast_student({s: scores[f"student {s}"]["p1"] for s in students},
                                                 scores["teacher"]["p1"], config.distill.fast_tolerance)
        log.info("--fast samples with %s", f"the student of {config.distill.fast_steps} steps"
                 if config.distill.fast_steps else "the teacher's fast sampler (no student within "
                 f"{100 * config.distill.fast_tolerance:g} % of it on the validation rows)")
        _save(workdir, prior.state, config, students,
              {"rounds": [r.__dict__ for r in distiller.rounds], "minutes": minutes, "scores": scores})
        folder.saved()
        return {"rounds": distiller.rounds, "scores": scores}


def twin_run(prior: LoadedPrior, workdir: str | Path, steps: int | None, minutes: float, overwrite: bool = False
             ) -> list[Round]:
    """A stochastic twin for the student of `steps` steps (None: the fewest) of a distilled run (prior.students),
    trained for all of `minutes`: a new run folder holding the run's checkpoint with that twin (one it had is
    replaced). The students, their validation scores and --fast's choice stay the run's: a twin leaves the
    deterministic steps as they were. Returns the twin's round."""
    if not prior.students:
        raise ToolkitError(f"{prior.checkpoint} carries no students; --twin gives a distilled run's student a twin "
                           f"(make them with python -m run.distill --ckpt-dir {prior.checkpoint.parent})")
    steps = min(prior.students) if steps is None else steps
    if steps not in prior.students:
        raise ToolkitError(f"{prior.checkpoint} has no student of {steps} steps (it has "
                           f"{prior.config.distill.students}); give one of those to --steps")
    workdir = Path(workdir)
    device = dist.init()
    with RunFolder(workdir, resume=False, overwrite=overwrite) as folder:
        setup_logging(workdir)
        config, state = prior.config, prior.state
        train, selection = _train_and_selection(config)
        students = {s: student.to(device) for s, student in prior.students.items()}
        log.info("a stochastic twin for the student of %d steps in %.1f min", steps, minutes)
        distiller = Distiller(config, prior.model.to(device), prior.sde, Batches(config, train, device), device,
                              selection)
        students[steps].stochastic = distiller.twin(students[steps], steps, 60.0 * minutes)
        record = state.get("distill", {})
        _save(workdir, state, config, students, record | {
            "rounds": record.get("rounds", []) + [r.__dict__ for r in distiller.rounds],
            "twin_minutes": minutes})
        folder.saved()
        return distiller.rounds


def _train_and_selection(config: ml_collections.ConfigDict) -> tuple[PoseData, PoseData]:
    """The training rows, and the rows students and twin candidates are scored on: the validation rows, or the
    training rows where none are held out (training.select_on = 'test')."""
    train, val = load_train_val(config)
    return train, val if val is not None else train


def _save(workdir: Path, state: dict, config: ml_collections.ConfigDict, students: dict[int, Student],
          record: dict) -> None:
    """The teacher's checkpoint with the students, the config and the distillation's record (rounds, minutes,
    validation scores), written as checkpoint.pth and best_model.pth."""
    out = {k: v for k, v in state.items() if k != "optimizer_state_dict"}
    out |= {"config": config_to_json(config), "students": {str(k): v.state_dict() for k, v in students.items()},
            "distill": record}
    for name in ("checkpoint.pth", "best_model.pth"):
        save_checkpoint(out, workdir / name)
