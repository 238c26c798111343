"""The conditional score network of GFPose (ScoreModelFC_Adv), state-dict compatible with U3D.

The network predicts the noise eps; the score is -eps / sigma(t) (see ``ScoreFn``).
"""
from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from lib.errors import ToolkitError, first_line
from lib.sde import SDE, expand_like


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_positions: int = 10000) -> torch.Tensor:
    """Sinusoidal embedding of (continuous) time labels [B] -> [B, dim] (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_positions) / (half - 1)
                      * torch.arange(half, dtype=torch.float32, device=timesteps.device))
    args = timesteps.float()[:, None] * freqs[None, :]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=1)
    if dim % 2 == 1:
        emb = nn.functional.pad(emb, (0, 1))
    return emb


class ScoreModelFC_Adv(nn.Module):  # noqa: N801 (the paper's class name)
    """Fully connected residual score network with time and condition embeddings.

    Parameters are registered in the official order so that ``state_dict`` keys and
    ``parameters()`` order match U3D's ``best_model.pth`` (46 tensors for two blocks).
    """

    def __init__(self, num_joints: int = 17, joint_dim: int = 3, hidden_dim: int = 1024,
                 embed_dim: int = 512, n_blocks: int = 2, dropout: float = 0.25, num_groups: int = 32,
                 sigma_min: float = 0.01, sigma_max: float = 50.0, num_scales: int = 1000):
        super().__init__()
        self.num_joints, self.joint_dim = num_joints, joint_dim
        self.embed_dim, self.n_blocks = embed_dim, n_blocks
        d = num_joints * joint_dim
        self.act = nn.SiLU()
        self.pre_dense = nn.Linear(d, hidden_dim)
        self.pre_dense_t = nn.Linear(embed_dim, hidden_dim)
        self.pre_dense_cond = nn.Linear(hidden_dim, hidden_dim)
        self.pre_gnorm = nn.GroupNorm(num_groups, hidden_dim)
        self.dropout = nn.Dropout(p=dropout)
        self.shared_time_embed = nn.Sequential(nn.Linear(embed_dim, embed_dim), nn.SiLU())
        # Unused by the continuous sub-VP model; kept because the official state dict holds it.
        sigmas = np.exp(np.linspace(np.log(sigma_max), np.log(sigma_min), num_scales))
        self.register_buffer("sigmas", torch.tensor(sigmas, dtype=torch.float64))
        self.cond_embed = nn.Sequential(nn.Linear(d, hidden_dim), nn.SiLU())
        for i in range(1, n_blocks + 1):
            for j in (1, 2):
                setattr(self, f"b{i}_dense{j}", nn.Linear(hidden_dim, hidden_dim))
                setattr(self, f"b{i}_dense{j}_t", nn.Linear(embed_dim, hidden_dim))
                setattr(self, f"b{i}_dense{j}_cond", nn.Linear(hidden_dim, hidden_dim))
                setattr(self, f"b{i}_gnorm{j}", nn.GroupNorm(num_groups, hidden_dim))
        self.post_dense = nn.Linear(hidden_dim, d)

    def _layer(self, prefix: str, h: torch.Tensor, temb: torch.Tensor, cemb: torch.Tensor) -> torch.Tensor:
        """Linear(h) + Linear(temb) + Linear(cond) -> GroupNorm -> SiLU -> Dropout."""
        h = (getattr(self, prefix)(h) + getattr(self, prefix + "_t")(temb)
             + getattr(self, prefix + "_cond")(cemb))
        norm = self.pre_gnorm if prefix == "pre_dense" else getattr(self, prefix.replace("dense", "gnorm"))
        return self.dropout(self.act(norm(h)))

    def forward(self, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the noise. x, condition, mask: [B, J, 3]; t: [B] in [0, 1] -> [B, J, 3]."""
        return self.post_dense(self.features(x, t, condition, mask)).reshape(x.shape)

    def features(self, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
        """The last hidden layer [B, H], which the output layer post_dense reads."""
        b = x.shape[0]
        cond = x - condition  # [B, J, 3]
        is_3d = (condition[..., 2] != 0).any(dim=1)  # [B]; a 2D condition has z = 0
        cond = torch.cat([cond[..., :2], cond[..., 2:] * expand_like(is_3d, cond[..., 2:])], dim=-1)
        if mask is not None:
            cond = cond * mask
        # While sampling, every row shares one time (t is an expanded scalar, stride 0): embed it once and
        # let the time projections broadcast, which saves a fifth of the network's multiply-adds.
        if t.dim() == 1 and t.shape[0] > 1 and t.stride(0) == 0:
            t = t[:1]
        temb = self.shared_time_embed(timestep_embedding(999.0 * t, self.embed_dim))  # [B or 1, E]
        cemb = self.cond_embed(cond.reshape(b, -1))  # [B, H]
        h = self._layer("pre_dense", x.reshape(b, -1), temb, cemb)
        for i in range(1, self.n_blocks + 1):
            h1 = self._layer(f"b{i}_dense1", h, temb, cemb)
            h = h + self._layer(f"b{i}_dense2", h1, temb, cemb)
        return h


PREDICTIONS = ("eps", "eps+v", "v", "x")  # what a distilled student's output is read as (lib/distill.py)


class Student(nn.Module):
    """A network distilled for few steps (lib/distill.py); forward returns the noise its data prediction implies, so
    every sampler runs it unchanged. Its output is read as the noise ('eps', the teacher's own head), as v, as the
    pose ('x'), or as both of the first two ('eps+v': the teacher's head and a new v head, blended by the SNR).

    With x_t = alpha x_0 + sigma eps and r^2 = alpha^2 + sigma^2, a = alpha / r, s = sigma / r (the VP form of any
    linear SDE), v = a eps - s x_0 (Salimans & Ho 2022, section 4), and a v output F gives D = a x_t / r - s F. An
    error of F moves D by at most its own size, where an eps head moves it by sigma / alpha (150-fold at T = 1).
    'eps+v' reads D = a^2 D_eps + s^2 D_v: the teacher's eps head where the SNR is high (there it is accurate, and
    the student starts as the teacher) and a v head, started at zero, where it is low; an error of either head moves
    D by at most its own size.
    A student whose steps start at t_start < T starts from the Gaussian that matches the data there (buffers
    start_mean and start_std [J, 3], the training poses' moments): N(alpha mean, alpha^2 std^2 + sigma^2).
    `stochastic`, where distillation trained one (distill.spread_share), is the student's twin for its steps with the
    reverse SDE's noise between them (eta > 0): its own weights, so that training the noisy steps to spread as the
    teacher's samples do leaves the deterministic steps as they were.
    """

    def __init__(self, net: nn.Module, sde: SDE, predict: str = "eps", t_start: float = 1.0):
        super().__init__()
        if predict not in PREDICTIONS:
            raise ValueError(f"predict must be one of {PREDICTIONS}, got {predict!r}")
        self.net, self.sde, self.predict = net, sde, predict
        if predict == "eps+v":
            self.v_head = nn.Linear(net.post_dense.in_features, net.post_dense.out_features)
            nn.init.zeros_(self.v_head.weight)
            nn.init.zeros_(self.v_head.bias)
        shape = (net.num_joints, net.joint_dim)
        self.register_buffer("t_start", torch.tensor(float(t_start), dtype=torch.float64))
        self.register_buffer("start_mean", torch.zeros(shape))
        self.register_buffer("start_std", torch.ones(shape))
        self.stochastic: Student | None = None

    def data(self, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor,
             mask: torch.Tensor | None = None) -> torch.Tensor:
        """The data prediction D [B, J, 3] at x [B, J, 3], t [B]."""
        alpha, sigma = expand_like(self.sde.alpha(t), x), expand_like(self.sde.sigma(t), x)
        r2 = alpha ** 2 + sigma ** 2
        if self.predict == "eps+v":
            h = self.net.features(x, t, condition, mask)
            n_eps, n_v = self.net.post_dense(h).reshape(x.shape), self.v_head(h).reshape(x.shape)
            # a^2 D_eps = alpha (x - sigma n_eps) / r^2, without the 1 / alpha of D_eps alone
            return alpha * (x - sigma * n_eps) / r2 + sigma ** 2 / r2 * (alpha * x / r2 - sigma / r2.sqrt() * n_v)
        out = self.net(x, t, condition, mask)
        if self.predict == "eps":
            return (x - sigma * out) / alpha
        if self.predict == "x":
            return out
        return alpha * x / r2 - sigma / r2.sqrt() * out

    def forward(self, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """The noise the data prediction implies, eps = (x - alpha D) / sigma [B, J, 3]."""
        if self.predict == "eps":
            return self.net(x, t, condition, mask)
        d = self.data(x, t, condition, mask)
        return (x - expand_like(self.sde.alpha(t), x) * d) / expand_like(self.sde.sigma(t), x)

    def start(self, shape: torch.Size, generator: torch.Generator | None, device: torch.device | str
              ) -> torch.Tensor:
        """A draw [B, J, 3] of the start of its steps at t_start: the SDE's prior at T, else the matched Gaussian."""
        z = torch.randn(shape, generator=generator, device=device)
        t = self.t_start.to(device)
        if float(t) >= self.sde.T:
            return z * self.sde.prior_std
        alpha, sigma = self.sde.alpha(t), self.sde.sigma(t)
        return alpha * self.start_mean + torch.sqrt(alpha ** 2 * self.start_std ** 2 + sigma ** 2) * z


class ScoreFn:
    """Score s(x, t) = -eps_theta(x, t, cond, mask) / sigma(t); counts network evaluations.

    bf16: run the network under bfloat16 autocast (outputs are returned in float32); off, except within
    `precision(True)`, which lib/sampling.sample enters for a SamplerConfig whose precision lib/resolve.py decided.
    compile: torch.compile the network; on CUDA with mode 'reduce-overhead', which replays CUDA graphs.
    students: distilled networks by their number of steps, and the time grid they were distilled on (lib/distill.py);
    the 'distilled' sampler samples with them.
    """

    def __init__(self, model: nn.Module, sde: SDE, compile: bool = False,
                 students: dict[int, nn.Module] | None = None, student_grid: str = "logsnr"):
        self.sde, self.bf16 = sde, False
        self.net, self.compiled = model, None
        if compile:
            on_cuda = next(model.parameters()).is_cuda
            self.compiled = torch.compile(model, mode="reduce-overhead" if on_cuda else None, dynamic=False)
        self.compile_failed = ""  # why torch.compile could not be used here, where it failed
        self.nfe = 0
        self.students, self.student_grid = students or {}, student_grid
        self.parent: ScoreFn | None = None

    @contextlib.contextmanager
    def precision(self, bf16: bool) -> Iterator[ScoreFn]:
        """bf16 autocast (or not) within the block; the precision before it afterwards."""
        before, self.bf16 = self.bf16, bf16
        try:
            yield self
        finally:
            self.bf16 = before

    def student(self, steps: int, stochastic: bool = False) -> ScoreFn:
        """The score of the student distilled for `steps` steps, or of its stochastic twin where it has one and the
        steps add noise (its evaluations count here too)."""
        if steps not in self.students:
            have = ", ".join(map(str, sorted(self.students))) or "none (distil one with python -m run.distill)"
            raise ToolkitError(f"the checkpoint carries no student for {steps} steps; students: {have}")
        net = self.students[steps]
        if stochastic and getattr(net, "stochastic", None) is not None:
            net = net.stochastic
        fn = ScoreFn(net, self.sde)
        fn.parent = self
        return fn

    def eps(self, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor,
            mask: torch.Tensor | None) -> torch.Tensor:
        self.nfe += 1
        if self.parent is not None:
            self.parent.nfe += 1
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            if self.compiled is not None:
                try:
                    return self.compiled(x, t, condition, mask).float()
                except (RuntimeError, OSError) as e:  # no C++ compiler, or kernels the backend cannot build here
                    self.compiled, self.compile_failed = None, f"{type(e).__name__}: {first_line(e, 100)}"
                    warnings.warn(f"torch.compile failed on this machine ({self.compile_failed}); the network runs "
                                  f"uncompiled", stacklevel=2)
            return self.net(x, t, condition, mask).float()

    def __call__(self, x: torch.Tensor, t: torch.Tensor, condition: torch.Tensor,
                 mask: torch.Tensor | None) -> torch.Tensor:
        return -self.eps(x, t, condition, mask) / expand_like(self.sde.sigma(t), x)
