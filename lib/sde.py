"""Forward SDEs (Song et al. 2021, score_sde): VP, sub-VP and VE.

Every SDE has a Gaussian perturbation kernel p_t(x_t | x_0) = N(alpha(t) x_0, sigma(t)^2 I), which
lets the samplers treat them alike (probability flow, DPM-Solver, imputation).
"""
from __future__ import annotations

import math

import torch


class SDE:
    """dx = f(x, t) dt + g(t) dw on t in [0, T]."""

    T = 1.0
    prior_std = 1.0
    supports_ancestral = False

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Mean coefficient of the perturbation kernel."""
        raise NotImplementedError

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Standard deviation of the perturbation kernel."""
        raise NotImplementedError

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Drift f(x, t) [B, ...] and diffusion g(t) [B]."""
        raise NotImplementedError

    def prior_sample(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=device) * self.prior_std

    def marginal_prob(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean [B, ...] and std [B] of x_t given x_0."""
        return expand_like(self.alpha(t), x0) * x0, self.sigma(t)

    def discretize(self, x: torch.Tensor, t: torch.Tensor, dt: float) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward step x_{t+dt} = x + f + G z: returns f [B, ...] and G [B] (Euler by default)."""
        drift, diffusion = self.sde(x, t)
        return drift * dt, diffusion * dt ** 0.5

    def ancestral_step(self, x: torch.Tensor, score: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, dt: float
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean [B, ...] and std [B] of one ancestral-sampling step (Song et al. Alg. 2 / 3)."""
        raise ValueError(f"ancestral sampling is defined for the VP and VE SDEs, not {type(self).__name__}; "
                         f"use em or ddim")

    def langevin_alpha(self, t: torch.Tensor, dt: float) -> torch.Tensor | float:
        """Step-size factor of the Langevin corrector (Song et al. Alg. 4: alpha_i for VP, 1 otherwise)."""
        return 1.0

    def lambda_(self, t: torch.Tensor) -> torch.Tensor:
        """Half log-SNR, log(alpha / sigma), the time variable of DPM-Solver."""
        return torch.log(self.alpha(t)) - torch.log(self.sigma(t))

    def t_of_lambda(self, lam: torch.Tensor) -> torch.Tensor:
        """Inverse of lambda_ (bisection: monotone in t, works for every SDE)."""
        lo = torch.full_like(lam, 1e-6)
        hi = torch.full_like(lam, self.T)
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            above = self.lambda_(mid) > lam  # lambda decreases with t
            lo = torch.where(above, mid, lo)
            hi = torch.where(above, hi, mid)
        return 0.5 * (lo + hi)


def expand_like(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Reshape a per-sample [B] (or scalar) tensor to broadcast against x [B, ...]."""
    return v.reshape(v.shape + (1,) * (x.dim() - v.dim()))


class VPSDE(SDE):
    """Variance preserving: beta(t) = beta_min + t (beta_max - beta_min)."""

    supports_ancestral = True

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        self.beta_0, self.beta_1 = beta_min, beta_max

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_0 + t * (self.beta_1 - self.beta_0)

    def log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        # log mean coefficient = -1/4 t^2 (b1 - b0) - 1/2 t b0
        return -0.25 * t ** 2 * (self.beta_1 - self.beta_0) - 0.5 * t * self.beta_0

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.exp(self.log_alpha(t))

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(-torch.expm1(2.0 * self.log_alpha(t)))

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        beta = self.beta(t)
        return -0.5 * expand_like(beta, x) * x, torch.sqrt(beta)

    def discretize(self, x: torch.Tensor, t: torch.Tensor, dt: float) -> tuple[torch.Tensor, torch.Tensor]:
        """DDPM: x_{i+1} = sqrt(1 - beta_i) x_i + sqrt(beta_i) z with beta_i = beta(t) dt."""
        beta_i = self.beta(t) * dt
        return (torch.sqrt(1.0 - expand_like(beta_i, x)) - 1.0) * x, torch.sqrt(beta_i)

    def ancestral_step(self, x: torch.Tensor, score: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, dt: float
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """DDPM: mean (x + beta s) / sqrt(1 - beta), std sqrt(beta), beta = beta(t) dt."""
        beta = self.beta(t) * dt
        return (x + expand_like(beta, x) * score) / torch.sqrt(1.0 - expand_like(beta, x)), torch.sqrt(beta)

    def langevin_alpha(self, t: torch.Tensor, dt: float) -> torch.Tensor:
        return 1.0 - self.beta(t) * dt


class SubVPSDE(VPSDE):
    """sub-VP SDE used by GFPose: same drift as VP, diffusion g^2 = beta(t) (1 - exp(-2 int beta))."""

    discretize = SDE.discretize  # no DDPM form: Euler
    supports_ancestral = False
    ancestral_step = SDE.ancestral_step
    langevin_alpha = SDE.langevin_alpha

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.expm1(2.0 * self.log_alpha(t))  # 1 - alpha^2

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        beta = self.beta(t)
        discount = -torch.expm1(4.0 * self.log_alpha(t))  # 1 - exp(-2 int_0^t beta)
        return -0.5 * expand_like(beta, x) * x, torch.sqrt(beta * discount)


class VESDE(SDE):
    """Variance exploding: sigma(t) = sigma_min (sigma_max / sigma_min)^t."""

    supports_ancestral = True

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.prior_std = sigma_max

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(t)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        g = self.sigma(t) * math.sqrt(2.0 * math.log(self.sigma_max / self.sigma_min))
        return torch.zeros_like(x), g

    def discretize(self, x: torch.Tensor, t: torch.Tensor, dt: float) -> tuple[torch.Tensor, torch.Tensor]:
        """SMLD: x_{i+1} = x_i + sqrt(sigma(t + dt)^2 - sigma(t)^2) z."""
        return torch.zeros_like(x), torch.sqrt(self.sigma(t + dt) ** 2 - self.sigma(t) ** 2)

    def ancestral_step(self, x: torch.Tensor, score: torch.Tensor, t: torch.Tensor, t_next: torch.Tensor, dt: float
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """SMLD: mean x + (sigma^2 - sigma'^2) s, std sqrt(sigma'^2 (sigma^2 - sigma'^2) / sigma^2)."""
        s2, s2_next = self.sigma(t) ** 2, self.sigma(t_next) ** 2
        return x + expand_like(s2 - s2_next, x) * score, torch.sqrt(s2_next * (s2 - s2_next) / s2)


SDES = {"subvpsde": lambda b0, b1, s0, s1: SubVPSDE(b0, b1), "vpsde": lambda b0, b1, s0, s1: VPSDE(b0, b1),
        "vesde": lambda b0, b1, s0, s1: VESDE(s0, s1)}


def get_sde(name: str, beta_min: float, beta_max: float, sigma_min: float, sigma_max: float) -> SDE:
    if name.lower() not in SDES:
        raise ValueError(f"unknown SDE '{name}'; choose {', '.join(SDES)}")
    return SDES[name.lower()](beta_min, beta_max, sigma_min, sigma_max)
