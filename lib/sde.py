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


class SubVPSDE(VPSDE):
    """sub-VP SDE used by GFPose: same drift as VP, diffusion g^2 = beta(t) (1 - exp(-2 int beta))."""

    discretize = SDE.discretize  # no DDPM form: Euler

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.expm1(2.0 * self.log_alpha(t))  # 1 - alpha^2

    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        beta = self.beta(t)
        discount = -torch.expm1(4.0 * self.log_alpha(t))  # 1 - exp(-2 int_0^t beta)
        return -0.5 * expand_like(beta, x) * x, torch.sqrt(beta * discount)


class VESDE(SDE):
    """Variance exploding: sigma(t) = sigma_min (sigma_max / sigma_min)^t."""

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


def get_sde(name: str, beta_min: float, beta_max: float, sigma_min: float, sigma_max: float) -> SDE:
    name = name.lower()
    if name == "subvpsde":
        return SubVPSDE(beta_min, beta_max)
    if name == "vpsde":
        return VPSDE(beta_min, beta_max)
    if name == "vesde":
        return VESDE(sigma_min, sigma_max)
    raise ValueError(f"unknown SDE '{name}'; choose subvpsde, vpsde or vesde")
