"""Samplers for the reverse process, all driven by a Task (condition, mask, imputation, start time).

Stochastic: Euler-Maruyama ('em'), reverse diffusion, ancestral (VP/VE), each with an optional
Langevin corrector (predictor-corrector, Song et al. 2021 Alg. 1-3).
Deterministic, on the probability-flow ODE dx/dt = f(x, t) - 1/2 g(t)^2 s(x, t) (Song et al. eq. 13):
'pflow_euler', 'heun' (2nd order), 'pflow_rk45' (adaptive Dormand-Prince), 'ddim' and 'dpm2m'
(DPM-Solver++(2M), Lu et al. 2022, in the half log-SNR lambda = log(alpha / sigma)).
With eta > 0, 'ddim' and 'dpm2m' solve the reverse SDE instead (SDE-DPM-Solver++, eta = 1): the fresh
noise each step corrects errors of the initial state, as Euler-Maruyama does, at a fraction of its steps.

No step synchronises with the host: the time grid is made once, and trajectories stay on the device.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lib.model import ScoreFn
from lib.sde import SDE, VESDE, VPSDE, SubVPSDE, expand_like
from lib.tasks import Task

STOCHASTIC = ("em", "reverse_diffusion", "ancestral")
DETERMINISTIC = ("pflow_euler", "heun", "pflow_rk45", "ddim", "dpm2m")
METHODS = STOCHASTIC + DETERMINISTIC
SCHEDULES = ("uniform", "logsnr", "quadratic", "edm")


@dataclass
class SamplerConfig:
    method: str = "em"
    steps: int = 1000
    eps: float = 1e-3
    corrector: str = "none"
    snr: float = 0.16
    corrector_steps: int = 1
    noise_removal: bool = True
    schedule: str = "uniform"
    rtol: float = 1e-5
    atol: float = 1e-5
    eta: float = 0.0            # ddim / dpm2m: 0 = probability-flow ODE, 1 = reverse SDE

    @classmethod
    def from_config(cls, cfg) -> SamplerConfig:
        return cls(**{k: cfg[k] for k in cls.__dataclass_fields__})

    def validate(self, sde: SDE) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown sampler '{self.method}'; choose one of {', '.join(METHODS)}")
        if self.method == "ancestral" and isinstance(sde, SubVPSDE):
            raise ValueError("ancestral sampling is defined for the VP and VE SDEs, not sub-VP; use em or dpm2m")
        if self.corrector not in ("none", "langevin"):
            raise ValueError(f"unknown corrector '{self.corrector}'; choose none or langevin")
        if self.steps < 1:
            raise ValueError(f"sampler steps must be >= 1, got {self.steps}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule '{self.schedule}'; choose one of {', '.join(SCHEDULES)}")
        if self.eta < 0 or (self.eta > 0 and self.method not in ("ddim", "dpm2m")):
            raise ValueError(f"sampling.eta ({self.eta}) must be >= 0 and is only used by ddim and dpm2m")

    @property
    def stochastic(self) -> bool:
        return self.method in STOCHASTIC or self.eta > 0


def time_grid(sde: SDE, steps: int, t_start: float, eps: float, schedule: str) -> torch.Tensor:
    """Decreasing times [steps + 1] from t_start to eps (float64, on the CPU)."""
    u = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    if schedule == "uniform":
        return t_start + (eps - t_start) * u
    if schedule == "quadratic":  # denser near eps, where the score changes fastest
        return eps + (t_start - eps) * (1.0 - u) ** 2
    lo, hi = (sde.lambda_(torch.tensor(v, dtype=torch.float64)) for v in (t_start, eps))
    if schedule == "logsnr":  # uniform in lambda = log(alpha / sigma)
        lam = lo + (hi - lo) * u
    else:  # 'edm': Karras et al. 2022 eq. 5 with rho = 7 on the noise level e^-lambda = sigma / alpha
        rho = 7.0
        lam = -rho * torch.log(torch.exp(-lo / rho) + u * (torch.exp(-hi / rho) - torch.exp(-lo / rho)))
    t = sde.t_of_lambda(lam)
    t[0], t[-1] = t_start, eps
    return t


def num_steps(cfg: SamplerConfig, t_start: float, t_end: float = 1.0) -> int:
    """Steps from t_start: the step size of the full process is kept when starting late (den)."""
    return max(1, round(cfg.steps * (t_start - cfg.eps) / (t_end - cfg.eps)))


def saved_steps(cfg: SamplerConfig, t_start: float, save_every: int) -> int:
    """How many states `sample` returns in its trajectory (every k-th step and the last)."""
    if cfg.method == "pflow_rk45":
        return 1
    return math.ceil(num_steps(cfg, t_start) / save_every)


class _Run:
    """State shared by the step functions of one sampling call."""

    def __init__(self, score_fn: ScoreFn, sde: SDE, task: Task, cfg: SamplerConfig,
                 generator: torch.Generator | None):
        self.score_fn, self.sde, self.task, self.cfg, self.gen = score_fn, sde, task, cfg, generator
        shape = task.condition.shape
        self.device = task.condition.device
        # ODE samplers impute with one fixed noise draw: the ODE path of a point x0 is alpha x0 + sigma z.
        self.fixed_noise = self.randn(shape) if task.observed is not None else None

    def randn(self, shape: torch.Size) -> torch.Tensor:
        return torch.randn(shape, generator=self.gen, device=self.device)

    def tvec(self, t: torch.Tensor) -> torch.Tensor:
        return t.expand(len(self.task))  # [B], stride 0: the network embeds the shared time once

    def score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.score_fn(x, self.tvec(t), self.task.condition, self.task.mask)

    def x0_pred(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Data prediction x0 = (x - sigma eps) / alpha."""
        tv = self.tvec(t)
        eps = self.score_fn.eps(x, tv, self.task.condition, self.task.mask)
        return (x - expand_like(self.sde.sigma(tv), x) * eps) / expand_like(self.sde.alpha(tv), x)

    def ode_drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        drift, g = self.sde.sde(x, self.tvec(t))
        return drift - 0.5 * expand_like(g ** 2, x) * self.score(x, t)

    def impute(self, x: torch.Tensor, t: torch.Tensor, stochastic: bool) -> torch.Tensor:
        """Replace observed coordinates by the observation perturbed to time t."""
        task = self.task
        if task.observed is None:
            return x
        noise = self.randn(x.shape) if stochastic else self.fixed_noise
        tv = self.tvec(t)
        known = expand_like(self.sde.alpha(tv), x) * task.observed + expand_like(self.sde.sigma(tv), x) * noise
        return torch.where(task.observed_mask > 0, known, x)


def _langevin(run: _Run, x: torch.Tensor, t: torch.Tensor, dt: float) -> torch.Tensor:
    """Langevin corrector with step size from the signal-to-noise ratio (Song et al. Alg. 4)."""
    alpha = 1.0
    if isinstance(run.sde, VPSDE) and not isinstance(run.sde, SubVPSDE):
        alpha = (1.0 - run.sde.beta(t) * dt)
    for _ in range(run.cfg.corrector_steps):
        grad = run.score(x, t)
        noise = run.randn(x.shape)
        grad_norm = grad.flatten(1).norm(dim=1).mean()
        noise_norm = noise.flatten(1).norm(dim=1).mean()
        step = (run.cfg.snr * noise_norm / grad_norm) ** 2 * 2 * alpha
        x = x + step * grad + torch.sqrt(2 * step) * noise
        x = run.impute(x, t, stochastic=True)
    return x


def _stochastic_step(run: _Run, x: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, dt: float
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """One predictor step from t to t_next = t - dt; returns (sample, mean)."""
    sde, method = run.sde, run.cfg.method
    tv = run.tvec(t)
    s = run.score(x, t)
    if method == "em":  # reverse SDE: dx = [f - g^2 s] dt + g dw, dt < 0
        drift, g = sde.sde(x, tv)
        mean = x - (drift - expand_like(g ** 2, x) * s) * dt
        return mean + expand_like(g, x) * math.sqrt(dt) * run.randn(x.shape), mean
    if method == "reverse_diffusion":  # x_i = x_{i+1} - f + G^2 s + G z with the SDE's discretisation
        f, big_g = sde.discretize(x, run.tvec(t_next), dt)
        mean = x - f + expand_like(big_g ** 2, x) * s
        return mean + expand_like(big_g, x) * run.randn(x.shape), mean
    if isinstance(sde, VESDE):  # SMLD ancestral
        s2, s2_next = sde.sigma(tv) ** 2, sde.sigma(run.tvec(t_next)) ** 2
        mean = x + expand_like(s2 - s2_next, x) * s
        std = torch.sqrt(s2_next * (s2 - s2_next) / s2)
        return mean + expand_like(std, x) * run.randn(x.shape), mean
    beta = sde.beta(tv) * dt  # DDPM ancestral
    mean = (x + expand_like(beta, x) * s) / torch.sqrt(1.0 - expand_like(beta, x))
    return mean + expand_like(torch.sqrt(beta), x) * run.randn(x.shape), mean


def _rk45(run: _Run, x: torch.Tensor, t0: float, t1: float) -> tuple[torch.Tensor, int]:
    """Adaptive Dormand-Prince 5(4) from t0 down to t1 with one step size for the batch."""
    a = [[], [1 / 5], [3 / 40, 9 / 40], [44 / 45, -56 / 15, 32 / 9],
         [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
         [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
         [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84]]
    c = [0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1]
    b_err = [71 / 57600, 0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40]
    rtol, atol = run.cfg.rtol, run.cfg.atol
    t, h = t0, -(t0 - t1) / 100.0
    k1 = run.ode_drift(x, torch.tensor(t, device=x.device))
    accepted = 0
    while t > t1 + 1e-12:
        h = max(h, t1 - t)  # h < 0
        ks = [k1]
        for i in range(1, 7):
            xi = x + h * sum(aij * kj for aij, kj in zip(a[i], ks, strict=True))
            ks.append(run.ode_drift(xi, torch.tensor(t + c[i] * h, device=x.device)))
        x_new = xi  # the 7th stage is the 5th-order solution (FSAL)
        err = h * sum(bi * ki for bi, ki in zip(b_err, ks, strict=True))
        scale = atol + rtol * torch.maximum(x.abs(), x_new.abs())
        err_norm = float((err / scale).square().mean().sqrt())
        if err_norm <= 1.0:
            t, x, k1 = t + h, run.impute(x_new, torch.tensor(t + h, device=x.device), False), ks[6]
            accepted += 1
        h = h * min(5.0, max(0.2, 0.9 * (err_norm + 1e-10) ** -0.2))
    return x, accepted


@torch.inference_mode()
def sample(score_fn: ScoreFn, sde: SDE, task: Task, cfg: SamplerConfig,
           generator: torch.Generator | None = None, save_every: int = 0
           ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Draw one sample per task row. Returns x [B, J, 3] and, if save_every > 0, every k-th state.

    Saved states stay on the device until the end (no host copy per step).
    """
    cfg.validate(sde)
    run = _Run(score_fn, sde, task, cfg, generator)
    t_start = task.t_start
    steps = num_steps(cfg, t_start, sde.T)
    if task.x_init is not None:
        x = task.x_init.clone()
    else:
        x = sde.prior_sample(task.condition.shape, generator, task.condition.device)
    stochastic = cfg.stochastic
    x = run.impute(x, torch.tensor(t_start, device=x.device), stochastic)
    traj: list[torch.Tensor] = []
    if cfg.method == "pflow_rk45":
        x, _ = _rk45(run, x, t_start, cfg.eps)
        return _finish(run, x), [x] if save_every else []
    grid = time_grid(sde, steps, t_start, cfg.eps, cfg.schedule)
    ts, dts = grid.to(device=x.device, dtype=torch.float32), (-grid.diff()).tolist()  # dt on the host: no sync
    x0_prev, h_prev = None, None
    for i in range(steps):
        t, t_next = ts[i], ts[i + 1]
        last = i == steps - 1
        if cfg.method in STOCHASTIC:
            if cfg.corrector == "langevin":
                x = _langevin(run, x, t, dts[i])
            x, mean = _stochastic_step(run, x, t, t_next, dts[i])
            if last and cfg.noise_removal:
                x = mean
        elif cfg.method == "pflow_euler":
            x = x + run.ode_drift(x, t) * (t_next - t)
        elif cfg.method == "heun":
            d1 = run.ode_drift(x, t)
            x_euler = x + d1 * (t_next - t)
            x = x + 0.5 * (d1 + run.ode_drift(x_euler, t_next)) * (t_next - t)
        else:
            # ddim / dpm2m, exact in the linear part (Lu et al. 2022b eq. 8 and its SDE form), h = lambda' - lambda:
            #   x' = (sigma' / sigma) e^{-eta h} x + alpha' (1 - e^{-(1 + eta) h}) D + sigma' sqrt(1 - e^{-2 eta h}) z
            # D is the data prediction; dpm2m adds the 2nd-order term D += (D - D_prev) / (2 r), r = h_prev / h.
            x0 = run.x0_pred(x, t)
            h = sde.lambda_(t_next) - sde.lambda_(t)
            d = x0
            if cfg.method == "dpm2m" and x0_prev is not None:
                d = x0 + (x0 - x0_prev) * (h / (2 * h_prev))
            x = (sde.sigma(t_next) / sde.sigma(t) * torch.exp(-cfg.eta * h) * x
                 - sde.alpha(t_next) * torch.expm1(-(1 + cfg.eta) * h) * d)
            if cfg.eta > 0:
                x = x + sde.sigma(t_next) * torch.sqrt(-torch.expm1(-2 * cfg.eta * h)) * run.randn(x.shape)
            x0_prev, h_prev = x0, h
        x = run.impute(x, t_next, stochastic)
        if save_every and (i % save_every == save_every - 1 or last):
            traj.append(x)
    return _finish(run, x), traj


def _finish(run: _Run, x: torch.Tensor) -> torch.Tensor:
    """Observed coordinates end exactly at the observation."""
    if run.task.observed is None:
        return x
    return torch.where(run.task.observed_mask > 0, run.task.observed, x)
