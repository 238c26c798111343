"""Samplers for the reverse process, in a table; each is driven by a Task (condition, mask, imputation, start).

The paper's two samplers (docs/design.md, 'Samplers'), on its grid t_i = linspace(T, eps, N) with a fixed step 1/N:
  'em'     Euler-Maruyama on the reverse SDE, x <- x + [f - g^2 s] dt + g sqrt(|dt|) z   (the default)
  'drift'  the paper's `--pflow`: the same drift with the *full* score and no noise, x <- x + [f - g^2 s] dt.
           It is not the probability-flow ODE; it is a deterministic, mode-seeking process.
Fast forms, exact in the linear part (exponential integrators in the half log-SNR lambda = log(alpha/sigma),
h = lambda' - lambda, D the data prediction (x - sigma eps) / alpha; Lu et al. 2022, docs/design.md, 'Samplers'):
  'drift_ddim', 'drift_2m'  the drift-only process: x' = (sigma'/sigma) e^{-h} x + alpha' (1 - e^{-2h}) D
                            (DDIM with eta 1 and the noise left out); 2m adds the 2nd-order multistep term.
  'ddim', 'dpm2m' with eta  x' = (sigma'/sigma) e^{-eta h} x + alpha' (1 - e^{-(1+eta) h}) D
                                 + sigma' sqrt(1 - e^{-2 eta h}) z:  eta = 1 is the reverse SDE (SDE-DPM-Solver++),
                            the fast replacement of 'em'; eta = 0 is the probability-flow ODE (DDIM, DPM-Solver++).
The probability-flow ODE of Song et al. (dx/dt = f - 1/2 g^2 s): 'ode_euler', 'ode_heun', 'ode_rk45'.
Other stochastic predictors: 'reverse_diffusion', 'ancestral' (VP/VE), with an optional Langevin corrector.

A sampler is a step function registered with `@register_sampler`; a time grid a function registered with
`@register_schedule`. No step synchronises with the host: grids and coefficients are made once, in float64.
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lib.errors import ToolkitError
from lib.model import ScoreFn
from lib.sde import SDE, expand_like
from lib.tasks.base import Task


@dataclass
class SamplerConfig:
    method: str = "em"
    steps: int = 1000
    eps: float = 1e-3
    schedule: str = "auto"          # 'auto': the sampler's own default grid
    corrector: str = "none"
    snr: float = 0.16
    corrector_steps: int = 1
    noise_removal: bool = True      # stochastic samplers return the last step's mean
    rtol: float = 1e-5
    atol: float = 1e-5
    eta: float = 0.0                # ddim / dpm2m: 0 = probability-flow ODE, 1 = reverse SDE
    # Completion (tasks that impute an observation; README 'Completion'):
    resample: int = 0               # RePaint: go back up the noise scale and redo the step this many times ...
    resample_t: float = 0.5         # ... at every step that starts at t >= this
    guidance: float = 0.0           # DPS reconstruction guidance: step size on grad |M (D(x) - y)|
    # Set by lib/resolve.py, which alone decides them:
    label: str = ""                 # how tables name it: paper, fast, distilled k, or the method
    bf16: bool = False              # the network under bf16 autocast (only where bf16 is native)

    @classmethod
    def from_config(cls, cfg) -> SamplerConfig:
        """The fields config.sampling holds (label and precision are the resolver's, lib/resolve.py)."""
        return cls(**{k: cfg[k] for k in cls.__dataclass_fields__ if k not in ("label", "bf16")})

    @property
    def spec(self) -> SamplerSpec:
        return SAMPLERS[self.method]

    @property
    def grid_name(self) -> str:
        return self.spec.default_schedule if self.schedule == "auto" else self.schedule

    def validate(self, sde: SDE) -> SamplerSpec:
        if self.method not in SAMPLERS:
            raise ToolkitError(f"unknown sampler '{self.method}'; choose one of {', '.join(SAMPLERS)}")
        spec = self.spec
        if self.steps < 1:
            raise ToolkitError(f"sampler steps must be >= 1, got {self.steps}")
        if not 0.0 < self.eps < 1.0:
            raise ToolkitError(f"sampling.eps must be in (0, 1), got {self.eps}")
        if self.schedule != "auto" and self.schedule not in SCHEDULES:
            raise ToolkitError(f"unknown schedule '{self.schedule}'; choose auto or {', '.join(SCHEDULES)}")
        if self.grid_name == "paper" and not spec.fixed_step:
            raise ToolkitError(f"the paper's grid has a fixed step 1/N that is not its spacing; sampler "
                               f"'{self.method}' needs a proper grid: use --schedule uniform, logsnr, quadratic or edm")
        if self.corrector not in ("none", "langevin"):
            raise ToolkitError(f"unknown corrector '{self.corrector}'; choose none or langevin")
        if self.corrector != "none" and not (spec.fixed_step and spec.stochastic is True):
            raise ToolkitError(f"the Langevin corrector goes with em, reverse_diffusion or ancestral, "
                               f"not {self.method}")
        if self.eta < 0 or (self.eta > 0 and not spec.uses_eta):
            raise ToolkitError(f"sampling.eta ({self.eta}) must be >= 0 and is only used by ddim and dpm2m")
        if spec.needs is not None and not spec.needs(sde):
            raise ToolkitError(f"sampler '{self.method}' is not defined for the {type(sde).__name__}; use em or ddim")
        if self.resample < 0 or not 0.0 <= self.resample_t <= 1.0 or not self.guidance >= 0.0:
            raise ToolkitError(f"sampling.resample ({self.resample}) must be >= 0, sampling.resample_t "
                               f"({self.resample_t}) in [0, 1] and sampling.guidance ({self.guidance}) >= 0")
        if (self.resample or self.guidance) and spec.solve is not None:
            raise ToolkitError(f"resampling and guidance need a sampler with steps, not the adaptive {self.method}")
        return spec


# --------------------------------------------------------------------------------------------- time grids


@dataclass
class Grid:
    """Per step i: the time it starts from, the time it ends at, its step size, the time to impute at."""

    t: torch.Tensor          # [N] float64
    t_next: torch.Tensor     # [N]
    dt: list[float]          # [N] positive step sizes (host floats: no device sync)
    t_impute: torch.Tensor   # [N]
    paper: bool = False      # the paper's semantics (fixed step 1/N, clean initial observation)

    def __len__(self) -> int:
        return len(self.dt)


SCHEDULES: dict[str, Callable[[SDE, int, float, float], torch.Tensor]] = {"paper": None}


def register_schedule(name: str):
    """Register a time grid: fn(sde, steps, t_start, eps) -> decreasing times [steps + 1] from t_start to eps."""
    def deco(fn):
        SCHEDULES[name] = fn
        return fn
    return deco


@register_schedule("uniform")
def _uniform(sde: SDE, steps: int, t_start: float, eps: float) -> torch.Tensor:
    return torch.linspace(t_start, eps, steps + 1, dtype=torch.float64)


@register_schedule("quadratic")
def _quadratic(sde: SDE, steps: int, t_start: float, eps: float) -> torch.Tensor:
    """Denser near eps, where the score changes fastest."""
    u = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    return eps + (t_start - eps) * (1.0 - u) ** 2


@register_schedule("logsnr")
def _logsnr(sde: SDE, steps: int, t_start: float, eps: float) -> torch.Tensor:
    """Uniform in lambda = log(alpha / sigma)."""
    lo, hi = (sde.lambda_(torch.tensor(v, dtype=torch.float64)) for v in (t_start, eps))
    return _from_lambda(sde, lo + (hi - lo) * torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64), t_start, eps)


@register_schedule("edm")
def _edm(sde: SDE, steps: int, t_start: float, eps: float) -> torch.Tensor:
    """Karras et al. 2022 eq. 5 with rho = 7 on the noise level e^-lambda = sigma / alpha."""
    lo, hi = (sde.lambda_(torch.tensor(v, dtype=torch.float64)) for v in (t_start, eps))
    u, rho = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64), 7.0
    lam = -rho * torch.log(torch.exp(-lo / rho) + u * (torch.exp(-hi / rho) - torch.exp(-lo / rho)))
    return _from_lambda(sde, lam, t_start, eps)


def _from_lambda(sde: SDE, lam: torch.Tensor, t_start: float, eps: float) -> torch.Tensor:
    t = sde.t_of_lambda(lam)
    t[0], t[-1] = t_start, eps
    return t


def make_grid(sde: SDE, schedule: str, steps: int, t_start: float, eps: float) -> Grid:
    """The paper's grid (N points from t_start to eps inclusive, step 1/N, imputation at the step's start time)
    or a proper grid of N + 1 points from a registered schedule."""
    if schedule == "paper":
        t = torch.linspace(t_start, eps, steps, dtype=torch.float64)
        t_next = torch.cat([t[1:], t[-1:]])
        return Grid(t=t, t_next=t_next, dt=[1.0 / steps] * steps, t_impute=t, paper=True)
    ts = SCHEDULES[schedule](sde, steps, t_start, eps)
    return Grid(t=ts[:-1], t_next=ts[1:], dt=(ts[:-1] - ts[1:]).tolist(), t_impute=ts[1:])


# ---------------------------------------------------------------------------------------- sampler table


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    step: Callable | None                 # (run, x, i) -> (x, mean); None for adaptive solvers
    solve: Callable | None = None         # adaptive solvers: (run, x) -> x
    stochastic: bool | None = True        # None: stochastic when eta > 0
    fixed_step: bool = False              # uses (t_i, dt_i) only, so it runs on the paper's grid
    default_schedule: str = "uniform"
    impute: str | None = None             # 'fresh' | 'fixed' noise; None: fresh if stochastic else fixed
    uses_eta: bool = False
    needs: Callable[[SDE], bool] | None = None   # whether an SDE can run this sampler

    def is_stochastic(self, cfg: SamplerConfig) -> bool:
        return cfg.eta > 0 if self.stochastic is None else self.stochastic

    def impute_mode(self, cfg: SamplerConfig) -> str:
        return self.impute or ("fresh" if self.is_stochastic(cfg) else "fixed")


SAMPLERS: dict[str, SamplerSpec] = {}


def register_sampler(name: str, adaptive: bool = False, **kwargs):
    """Register a step function (run, x, i) -> (x, mean), or with adaptive=True a solver (run, x) -> x,
    under `name`, with the other SamplerSpec fields in kwargs."""
    def deco(fn):
        SAMPLERS[name] = SamplerSpec(name=name, step=None if adaptive else fn, solve=fn if adaptive else None,
                                     **kwargs)
        return fn
    return deco


@dataclass
class _Coefficients:
    """alpha, sigma, lambda at each step's start and end time, float64 on the host."""

    alpha: list[float]
    sigma: list[float]
    alpha_next: list[float]
    sigma_next: list[float]
    h: list[float]           # lambda(t_next) - lambda(t)


class SolverState:
    """State shared by the step functions of one sampling call."""

    def __init__(self, score_fn: ScoreFn, sde: SDE, task: Task, cfg: SamplerConfig, grid: Grid | None,
                 generator: torch.Generator | None):
        self.score_fn, self.sde, self.task, self.cfg, self.grid, self.gen = score_fn, sde, task, cfg, grid, generator
        self.device = task.condition.device
        self.mode = cfg.spec.impute_mode(cfg)
        self.state: dict[str, torch.Tensor] = {}   # multistep history
        if grid is not None:  # [N] step times on the device, made once
            self.ts, self.ts_next, self.ts_impute = (v.to(device=self.device, dtype=torch.float32)
                                                     for v in (grid.t, grid.t_next, grid.t_impute))
        self._coef: _Coefficients | None = None
        self.z0 = self.randn(task.condition.shape) if task.observed is not None and self.mode == "fixed" else None

    def randn(self, shape: torch.Size) -> torch.Tensor:
        return torch.randn(shape, generator=self.gen, device=self.device)

    def tvec(self, t: torch.Tensor) -> torch.Tensor:
        return t.expand(len(self.task))  # [B], stride 0: the network embeds the shared time once

    def score(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.score_fn(x, self.tvec(t), self.task.condition, self.task.mask)

    def x0_pred(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Data prediction D = (x - sigma eps) / alpha at step i's start time."""
        c = self.coef
        eps = self.score_fn.eps(x, self.tvec(self.ts[i]), self.task.condition, self.task.mask)
        return (x - c.sigma[i] * eps) / c.alpha[i]

    def ode_drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Probability-flow ODE drift f - 1/2 g^2 s (Song et al. eq. 13)."""
        drift, g = self.sde.sde(x, self.tvec(t))
        return drift - 0.5 * expand_like(g ** 2, x) * self.score(x, t)

    def sde_drift(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Reverse-SDE drift with the full score, f - g^2 s, and g [B]."""
        drift, g = self.sde.sde(x, self.tvec(t))
        return drift - expand_like(g ** 2, x) * self.score(x, t), g

    @property
    def coef(self) -> _Coefficients:
        if self._coef is None:
            sde, g = self.sde, self.grid
            a, s, a1, s1 = (v.tolist() for v in (sde.alpha(g.t), sde.sigma(g.t), sde.alpha(g.t_next),
                                                  sde.sigma(g.t_next)))
            h = (sde.lambda_(g.t_next) - sde.lambda_(g.t)).tolist()
            self._coef = _Coefficients(a, s, a1, s1, h)
        return self._coef

    # ------------------------------------------------------------------------------------ imputation
    def _observed_at(self, t: torch.Tensor) -> torch.Tensor:
        """The observation perturbed to time t: alpha(t) y + sigma(t) z, z fresh or fixed by the imputation mode."""
        task, tv = self.task, self.tvec(t)
        # 'fixed': the probability-flow path of a point, alpha y + sigma z0 with one draw z0
        z = self.randn(task.condition.shape) if self.mode == "fresh" else self.z0
        return expand_like(self.sde.alpha(tv), z) * task.observed + expand_like(self.sde.sigma(tv), z) * z

    def impute(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Replace the observed coordinates of x by the observation at time t."""
        if self.task.observed is None:
            return x
        return torch.where(self.task.observed_mask > 0, self._observed_at(t), x)

    def impute_start(self, x: torch.Tensor) -> torch.Tensor:
        """The paper starts from the clean observation (x (1 - m) + y m); other grids from it perturbed to t_start."""
        if self.task.observed is None:
            return x
        if self.grid is not None and self.grid.paper:
            return torch.where(self.task.observed_mask > 0, self.task.observed, x)
        return self.impute(x, torch.tensor(self.task.t_start, device=self.device))

    # --------------------------------------------------------------------------- completion: RePaint, DPS
    def renoise(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Back up from step i's end time t' to its start time t (RePaint, Lugmayr et al. 2022): a draw of the
        forward transition q(x_t | x_t') = N(a x_t', sigma_t^2 - a^2 sigma_t'^2), a = alpha_t / alpha_t' (any
        linear SDE)."""
        c = self.coef
        a = c.alpha[i] / c.alpha_next[i]
        std = math.sqrt(max(c.sigma[i] ** 2 - a ** 2 * c.sigma_next[i] ** 2, 0.0))
        return a * x + std * self.randn(x.shape)

    def guide(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """Reconstruction guidance (DPS, Chung et al. 2023) at step i's end time: x <- x - zeta grad_x |M (D(x) - y)|
        per row, D = (x - sigma eps) / alpha the data prediction, y the observation, M its mask."""
        c, task = self.coef, self.task
        with torch.inference_mode(False), torch.enable_grad():
            xg = x.clone().requires_grad_(True)
            eps = self.score_fn.eps(xg, self.tvec(self.ts_next[i].clone()), task.condition, task.mask)
            d = (xg - c.sigma_next[i] * eps) / c.alpha_next[i]
            miss = ((d - task.observed) * task.observed_mask).flatten(1).norm(dim=1)  # [B]
            (grad,) = torch.autograd.grad(miss.sum(), xg)
        return x - self.cfg.guidance * grad.detach()

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """Observed coordinates end exactly at the observation."""
        if self.task.observed is None:
            return x
        return torch.where(self.task.observed_mask > 0, self.task.observed, x)


# The paper's samplers -----------------------------------------------------------------------------------


@register_sampler("em", fixed_step=True, default_schedule="paper")
def _em(run: SolverState, x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Euler-Maruyama on the reverse SDE, dx = [f - g^2 s] dt + g dw (the paper's default)."""
    drift, g = run.sde_drift(x, run.ts[i])
    mean = x - drift * run.grid.dt[i]
    return mean + expand_like(g, x) * math.sqrt(run.grid.dt[i]) * run.randn(x.shape), mean


@register_sampler("drift", stochastic=False, fixed_step=True, default_schedule="paper", impute="fresh")
def _drift(run: SolverState, x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's --pflow: reverse-SDE drift with the full score, no noise (not the probability-flow ODE)."""
    drift, _ = run.sde_drift(x, run.ts[i])
    x = x - drift * run.grid.dt[i]
    return x, x


# Exponential integrators in log-SNR ----------------------------------------------------------------------


def _exp_integrator(run: SolverState, x: torch.Tensor, i: int, eta: float, noise: bool, order: int
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    # x' = (sigma'/sigma) e^{-eta h} x + alpha' (1 - e^{-(1 + eta) h}) D [+ sigma' sqrt(1 - e^{-2 eta h}) z];
    # order 2 (DPM-Solver++(2M), midpoint form): D <- D + (D - D_prev) h / (2 h_prev).
    c = run.coef
    x0 = run.x0_pred(x, i)
    d = x0
    if order == 2 and "x0" in run.state:
        d = x0 + (x0 - run.state["x0"]) * (c.h[i] / (2.0 * c.h[i - 1]))
    run.state["x0"] = x0
    h = c.h[i]
    mean = (c.sigma_next[i] / c.sigma[i] * math.exp(-eta * h)) * x - (c.alpha_next[i] * math.expm1(-(1 + eta) * h)) * d
    if eta > 0 and noise:
        return mean + c.sigma_next[i] * math.sqrt(-math.expm1(-2.0 * eta * h)) * run.randn(x.shape), mean
    return mean, mean


@register_sampler("drift_ddim", stochastic=False, impute="fresh")
def _drift_ddim(run: SolverState, x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Drift-only process, 1st-order exponential integrator (DDIM with eta 1, noise left out)."""
    return _exp_integrator(run, x, i, 1.0, False, 1)


@register_sampler("drift_2m", stochastic=False, impute="fresh")
def _drift_2m(run: SolverState, x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Drift-only process, 2nd-order multistep exponential integrator: the fast form of the paper's --pflow.

    Like the paper's --pflow, completion tasks impute with fresh noise each step; that makes the data prediction
    rough in time, which a multistep extrapolation amplifies, so with imputation the step is first order
    (drift_ddim). Measured on CMU (run.benchmark): 20 steps are within 1 % of the paper's 1000 on est and comp3d.
    """
    return _exp_integrator(run, x, i, 1.0, False, 1 if run.task.observed is not None else 2)


@register_sampler("distilled", stochastic=None, uses_eta=True, impute="fresh")
def _distilled(run: SolverState, x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A student distilled for this many steps (lib/distill.py) on its own grid: the drift-only step (eta 0) or,
    with eta > 0, the same step with the reverse SDE's noise (DDIM with eta, for several hypotheses)."""
    eta = run.cfg.eta
    return _exp_integrator(run, x, i, 1.0, False, 1) if eta == 0 else _exp_integrator(run, x, i, eta, True, 1)


@register_sampler("ddim", stochastic=None, uses_eta=True, default_schedule="logsnr")
def _ddim(run: SolverState, x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """DDIM (eta 0, probability-flow ODE) or 1st-order SDE-DPM-Solver++ (eta 1, reverse SDE)."""
    return _exp_integrator(run, x, i, run.cfg.eta, True, 1)


@register_sampler("dpm2m", stochastic=None, uses_eta=True, default_schedule="logsnr")
def _dpm2m(run: SolverState, x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """DPM-Solver++(2M) (eta 0, probability-flow ODE) or SDE-DPM-Solver++(2M) (eta 1, reverse SDE)."""
    return _exp_integrator(run, x, i, run.cfg.eta, True, 2)


# Probability-flow ODE ------------------------------------------------------------------------------------


@register_sampler("ode_euler", stochastic=False, fixed_step=True)
def _ode_euler(run: SolverState, x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Probability-flow ODE dx/dt = f - 1/2 g^2 s, Euler."""
    x = x - run.ode_drift(x, run.ts[i]) * run.grid.dt[i]
    return x, x


@register_sampler("ode_heun", stochastic=False, default_schedule="edm")
def _ode_heun(run: SolverState, x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Probability-flow ODE, Heun (2nd order, 2 evaluations per step)."""
    dt = run.grid.dt[i]
    d1 = run.ode_drift(x, run.ts[i])
    x_euler = x - d1 * dt
    x = x - 0.5 * (d1 + run.ode_drift(x_euler, run.ts_next[i])) * dt
    return x, x


_DOPRI_A = [[], [1 / 5], [3 / 40, 9 / 40], [44 / 45, -56 / 15, 32 / 9],
            [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
            [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
            [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84]]
_DOPRI_C = [0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1]
_DOPRI_ERR = [71 / 57600, 0, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525, -1 / 40]


@register_sampler("ode_rk45", adaptive=True, stochastic=False)
def _rk45(run: SolverState, x: torch.Tensor) -> torch.Tensor:
    """Probability-flow ODE, adaptive Dormand-Prince 5(4) with one step size for the batch."""
    t0, t1 = run.task.t_start, run.cfg.eps
    rtol, atol = run.cfg.rtol, run.cfg.atol
    at = lambda v: torch.tensor(v, device=x.device)  # noqa: E731
    t, h = t0, -(t0 - t1) / 100.0
    k1 = run.ode_drift(x, at(t))
    while t > t1 + 1e-12:
        h = max(h, t1 - t)  # h < 0
        ks = [k1]
        for i in range(1, 7):
            xi = x + h * sum(aij * kj for aij, kj in zip(_DOPRI_A[i], ks, strict=True))
            ks.append(run.ode_drift(xi, at(t + _DOPRI_C[i] * h)))
        err = h * sum(bi * ki for bi, ki in zip(_DOPRI_ERR, ks, strict=True))
        scale = atol + rtol * torch.maximum(x.abs(), xi.abs())  # the 7th stage is the 5th-order solution (FSAL)
        err_norm = float((err / scale).square().mean().sqrt())
        if err_norm <= 1.0:
            t, x, k1 = t + h, run.impute(xi, at(t + h)), ks[6]
        h = h * min(5.0, max(0.2, 0.9 * (err_norm + 1e-10) ** -0.2))
    return x


# Other stochastic predictors -----------------------------------------------------------------------------


@register_sampler("reverse_diffusion", fixed_step=True, default_schedule="uniform")
def _reverse_diffusion(run: SolverState, x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Reverse diffusion: x_i = x_{i+1} - f + G^2 s + G z with the SDE's own discretisation."""
    f, big_g = run.sde.discretize(x, run.tvec(run.ts_next[i]), run.grid.dt[i])
    mean = x - f + expand_like(big_g ** 2, x) * run.score(x, run.ts[i])
    return mean + expand_like(big_g, x) * run.randn(x.shape), mean


@register_sampler("ancestral", fixed_step=True, needs=lambda sde: sde.supports_ancestral)
def _ancestral(run: SolverState, x: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Ancestral sampling (DDPM for VP, SMLD for VE)."""
    t = run.ts[i]
    mean, std = run.sde.ancestral_step(x, run.score(x, t), run.tvec(t), run.tvec(run.ts_next[i]), run.grid.dt[i])
    return mean + expand_like(std, x) * run.randn(x.shape), mean


def _langevin(run: SolverState, x: torch.Tensor, i: int) -> torch.Tensor:
    """Langevin corrector with the step size set by the signal-to-noise ratio (Song et al. Alg. 4)."""
    t = run.ts[i]
    alpha = run.sde.langevin_alpha(t, run.grid.dt[i])
    for _ in range(run.cfg.corrector_steps):
        grad = run.score(x, t)
        noise = run.randn(x.shape)
        step = (run.cfg.snr * noise.flatten(1).norm(dim=1).mean() / grad.flatten(1).norm(dim=1).mean()) ** 2 * 2 * alpha
        x = run.impute(x + step * grad + torch.sqrt(2 * step) * noise, t)
    return x


# ------------------------------------------------------------------------------------------------ driver


def saved_steps(cfg: SamplerConfig, save_every: int) -> int:
    """How many states `sample` returns in its trajectory (every k-th step and the last)."""
    if cfg.spec.solve is not None:
        return 1
    return math.ceil(cfg.steps / save_every)


@torch.inference_mode()
def sample(score_fn: ScoreFn, sde: SDE, task: Task, cfg: SamplerConfig, generator: torch.Generator | None = None,
           save_every: int = 0) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Draw one sample per task row: x [B, J, 3] and, if save_every > 0, every k-th state (kept on the device)."""
    spec = cfg.validate(sde)
    if getattr(score_fn.net, "predicts_pose", False):  # a regression baseline (lib/regression.py): one forward
        none = torch.zeros_like(task.condition)           # pass, the observation it is given kept
        x = score_fn.eps(none, none[:, 0, 0], task.condition, task.mask)
        if task.observed is not None:
            x = torch.where(task.observed_mask > 0, task.observed, x)
        return x, [x] if save_every else []
    if cfg.method == "distilled":  # the student of that many steps (its stochastic twin with noise), on its grid
        score_fn = score_fn.student(cfg.steps, stochastic=cfg.eta > 0)
        if cfg.schedule not in ("auto", score_fn.parent.student_grid):
            raise ToolkitError(f"the students were distilled on the {score_fn.parent.student_grid} grid; drop "
                               f"--schedule {cfg.schedule}")
        cfg = dataclasses.replace(cfg, schedule=score_fn.parent.student_grid)
        student = score_fn.net
        if task.x_init is None and float(student.t_start) < sde.T:  # its steps start at t_start, from its Gaussian
            x_start = student.start(task.condition.shape, generator, task.condition.device)
            task = dataclasses.replace(task, x_init=x_start, t_start=float(student.t_start), noised_start=False)
    with score_fn.precision(cfg.bf16):  # the precision lib/resolve.py chose, for this call only
        return _solve(score_fn, sde, task, cfg, spec, generator, save_every)


def _solve(score_fn: ScoreFn, sde: SDE, task: Task, cfg: SamplerConfig, spec: SamplerSpec,
           generator: torch.Generator | None, save_every: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The body of `sample` once the network and its precision are chosen."""
    if not cfg.eps < task.t_start <= sde.T:
        raise ToolkitError(f"the start time ({task.t_start}) must be in (sampling.eps, {sde.T:g}] = ({cfg.eps}, "
                           f"{sde.T:g}]")
    grid = None if spec.solve else make_grid(sde, cfg.grid_name, cfg.steps, task.t_start, cfg.eps)
    run = SolverState(score_fn, sde, task, cfg, grid, generator)
    if task.x_init is None:
        x = sde.prior_sample(task.condition.shape, generator, task.condition.device)
    elif task.noised_start:  # a draw of the perturbation kernel at t_start around the given pose
        t0 = torch.tensor(task.t_start, dtype=torch.float64)
        x = float(sde.alpha(t0)) * task.x_init + float(sde.sigma(t0)) * run.randn(task.x_init.shape)
    else:
        x = task.x_init.clone()
    x = run.impute_start(x)
    if spec.solve is not None:
        x = run.finish(spec.solve(run, x))
        return x, [x] if save_every else []
    traj: list[torch.Tensor] = []
    last = len(grid) - 1
    stochastic = spec.is_stochastic(cfg)
    completes = task.observed is not None
    for i in range(len(grid)):
        if cfg.corrector == "langevin":
            x = _langevin(run, x, i)
        x, mean = spec.step(run, x, i)
        if completes:
            for _ in range(cfg.resample if grid.t[i] >= cfg.resample_t else 0):  # RePaint: harmonise and redo
                x, mean = spec.step(run, run.renoise(run.impute(x, run.ts_impute[i]), i), i)
            if cfg.guidance > 0:
                x = mean = run.guide(x, i)
        x = mean if i == last and stochastic and cfg.noise_removal else run.impute(x, run.ts_impute[i])
        if save_every and (i % save_every == save_every - 1 or i == last):
            traj.append(x)
    x = run.finish(x)
    if traj:
        traj[-1] = x
    return x, traj
