"""SDE closed forms and sampler correctness on a Gaussian whose exact score is known; the paper's grid and loop."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from lib.errors import ToolkitError
from lib.model import ScoreFn, ScoreModelFC_Adv
from lib.sampling import SAMPLERS, SCHEDULES, SamplerConfig, make_grid, sample
from lib.sde import VESDE, VPSDE, SubVPSDE
from lib.tasks.completion import random_missing
from lib.tasks.den import denoising
from lib.tasks.est import estimation
from lib.tasks.gen import generation
from lib.tasks.observe import observe_2d, observe_3d
from tests.helpers import MU, GaussianEps, random_model

SDES = [SubVPSDE(), VPSDE(), VESDE()]


@pytest.mark.parametrize("sde", SDES, ids=lambda s: type(s).__name__)
def test_diffusion_matches_marginal(sde):
    """g^2 = d sigma^2/dt - 2 (d log alpha / dt) sigma^2 for a kernel N(alpha x0, sigma^2) (Song et al. app. B)."""
    t = torch.linspace(0.05, 0.95, 19, dtype=torch.float64)
    h = 1e-5
    dsig2 = (sde.sigma(t + h) ** 2 - sde.sigma(t - h) ** 2) / (2 * h)
    dlog_a = (torch.log(sde.alpha(t + h)) - torch.log(sde.alpha(t - h))) / (2 * h)
    x = torch.ones(19, 1, dtype=torch.float64)
    drift, g = sde.sde(x, t)
    assert torch.allclose(g ** 2, dsig2 - 2 * dlog_a * sde.sigma(t) ** 2, rtol=1e-5)
    assert torch.allclose(drift[:, 0], dlog_a, rtol=1e-5)


def test_subvp_sigma_is_one_minus_alpha_squared():
    sde = SubVPSDE()
    t = torch.rand(100, dtype=torch.float64)
    assert torch.allclose(sde.sigma(t), 1 - sde.alpha(t) ** 2)
    assert torch.allclose(sde.t_of_lambda(sde.lambda_(t)), t, atol=1e-6)


def _gauss(sde=None) -> ScoreFn:
    sde = sde or SubVPSDE()
    return ScoreFn(GaussianEps(sde, MU, 0.5), sde)


@pytest.mark.parametrize("method,steps,eta", [("em", 500, 0), ("reverse_diffusion", 500, 0), ("ode_euler", 500, 0),
                                              ("ode_heun", 50, 0), ("ode_rk45", 1, 0), ("ddim", 100, 0),
                                              ("dpm2m", 25, 0), ("ddim", 500, 1), ("dpm2m", 50, 1)])
def test_samplers_recover_gaussian(method, steps, eta):
    sde = SubVPSDE()
    cfg = SamplerConfig(method=method, steps=steps, rtol=1e-4, atol=1e-4, eta=eta)
    x, _ = sample(_gauss(sde), sde, generation(4000), cfg, torch.Generator().manual_seed(0))
    assert (x.mean(0) - MU).abs().max() < 0.06
    assert abs(x.std(0).mean() - 0.5) < 0.02


def test_ancestral_on_vp_and_refused_on_subvp():
    sde = VPSDE()
    x, _ = sample(_gauss(sde), sde, generation(4000), SamplerConfig(method="ancestral", steps=500),
                  torch.Generator().manual_seed(0))
    assert (x.mean(0) - MU).abs().max() < 0.06
    with pytest.raises(ToolkitError, match="ancestral"):
        SamplerConfig(method="ancestral").validate(SubVPSDE())


def test_ode_solvers_agree():
    """Fixed-step probability-flow solvers converge to the adaptive solver's solution, path by path."""
    sde, fn, task = SubVPSDE(), _gauss(), generation(64)
    ref, _ = sample(fn, sde, task, SamplerConfig(method="ode_rk45", rtol=1e-6, atol=1e-6),
                    torch.Generator().manual_seed(3))
    for method, steps, tol in (("ode_euler", 2000, 0.02), ("ode_heun", 200, 0.005), ("dpm2m", 200, 0.005)):
        x, _ = sample(fn, sde, task, SamplerConfig(method=method, steps=steps, schedule="logsnr"),
                      torch.Generator().manual_seed(3))
        assert (x - ref).abs().max() < tol, method


def test_paper_grid_is_linspace_with_a_fixed_step_of_one_over_n():
    """docs/design.md, 'Samplers': t_i = linspace(T, eps, N) with eps included, dt = 1/N (not the spacing)."""
    grid = make_grid(SubVPSDE(), "paper", 100, 1.0, 1e-3)
    assert torch.equal(grid.t, torch.linspace(1.0, 1e-3, 100, dtype=torch.float64))
    assert grid.dt == [0.01] * 100 and grid.paper and torch.equal(grid.t_impute, grid.t)
    den = make_grid(SubVPSDE(), "paper", 1000, 0.05, 1e-3)
    assert den.t[0] == 0.05 and den.dt[0] == 1e-3  # den integrates a time of 1 while t moves 0.05 -> eps


def test_fast_drift_solvers_converge_to_the_papers_drift_process():
    """drift (the paper's --pflow, 1000 steps on its grid) and its exponential integrators at 20 steps agree
    path by path: with N = 1000 and T = 1 the paper's step 1/N integrates the drift over its true time."""
    sde, fn, task = SubVPSDE(), _gauss(), dataclasses.replace(generation(64), x_init=torch.randn(64, 17, 3))
    ref, _ = sample(fn, sde, task, SamplerConfig(method="drift", steps=1000), torch.Generator().manual_seed(0))
    for method, steps, tol in (("drift_2m", 20, 0.02), ("drift_ddim", 200, 0.02), ("drift", 2000, 0.02)):
        schedule = "uniform" if method == "drift" else "auto"
        x, _ = sample(fn, sde, task, SamplerConfig(method=method, steps=steps, schedule=schedule),
                      torch.Generator().manual_seed(0))
        assert (x - ref).abs().max() < tol, method
    # the drift-only process is mode-seeking: its spread is far below the data's (0.5), unlike the SDE's
    assert ref.std(0).mean() < 0.25


def test_drift_2m_is_first_order_when_it_imputes():
    sde, fn = SubVPSDE(), ScoreFn(random_model(), SubVPSDE())
    pose = torch.randn(8, 17, 3) * 5
    task = observe_3d(pose, random_missing(8, 3, torch.Generator().manual_seed(0)))
    a, _ = sample(fn, sde, task, SamplerConfig(method="drift_2m", steps=10), torch.Generator().manual_seed(1))
    b, _ = sample(fn, sde, task, SamplerConfig(method="drift_ddim", steps=10), torch.Generator().manual_seed(1))
    c, _ = sample(fn, sde, generation(8), SamplerConfig(method="drift_2m", steps=10),
                  torch.Generator().manual_seed(1))
    d, _ = sample(fn, sde, generation(8), SamplerConfig(method="drift_ddim", steps=10),
                  torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(c, d)


def completion_2d(pose: torch.Tensor, missing: torch.Tensor, how: str = "condition"):
    return observe_2d(pose, ~missing, how)


IMPUTING = ("condition", "impute")  # the completion modes that impute the observation
PLAIN = [m for m in SAMPLERS if m not in ("ancestral", "distilled")]  # (distilled needs a student)


@pytest.mark.parametrize("method", PLAIN)
def test_completion_keeps_observed_coordinates_exactly(method):
    sde = SubVPSDE()
    fn = ScoreFn(random_model(), sde)
    pose = torch.randn(8, 17, 3) * 5
    missing = random_missing(8, 3, torch.Generator().manual_seed(0))
    tasks = [make(pose, missing, how) for make in (observe_3d, completion_2d) for how in IMPUTING]
    for task in tasks:
        x, _ = sample(fn, sde, task, SamplerConfig(method=method, steps=10, rtol=1e-3, atol=1e-3),
                      torch.Generator().manual_seed(0))
        keep = task.observed_mask > 0
        assert torch.equal(x[keep], task.observed[keep])
        assert not torch.equal(x[~keep], torch.zeros_like(x[~keep]))


def test_impute_only_completion_hides_the_observation_from_the_network():
    """'condition' (the paper's) shows the network the observed joints; 'impute' shows it nothing (the unconditional
    prior) and keeps the same observed coordinates."""
    pose = torch.randn(4, 17, 3) * 5
    missing = random_missing(4, 2, torch.Generator().manual_seed(0))
    for make in (observe_3d, completion_2d):
        paper, impute = make(pose, missing, "condition"), make(pose, missing, "impute")
        assert paper.mask.sum() > 0 and (paper.mask * paper.condition).abs().sum() > 0
        assert not impute.mask.any() and not impute.condition.any()
        assert torch.equal(paper.observed, impute.observed) and torch.equal(paper.observed_mask, impute.observed_mask)
    with pytest.raises(ToolkitError, match="completion must be one of condition, impute, condition-only"):
        observe_3d(pose, missing, "both")


def test_paper_grid_starts_completion_from_the_clean_observation():
    """The paper starts comp2d/comp3d from x (1 - m) + y m and imputes at the step's start time."""
    sde = SubVPSDE()

    class Spy(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.first = None

        def forward(self, x, t, condition, mask):
            if self.first is None:
                self.first = x.clone()
            return torch.zeros_like(x)

    spy = Spy()
    pose = torch.randn(4, 17, 3) * 5
    task = observe_3d(pose, random_missing(4, 2, torch.Generator().manual_seed(0)))
    sample(ScoreFn(spy, sde), sde, task, SamplerConfig(method="drift", steps=5), torch.Generator().manual_seed(0))
    keep = task.observed_mask > 0
    assert torch.equal(spy.first[keep], task.observed[keep])


def test_estimation_sees_only_xy_of_the_condition():
    """est leaves depth free: changing the condition's z changes nothing."""
    sde = SubVPSDE()
    fn = ScoreFn(random_model(), sde)
    cond = torch.randn(4, 17, 3)
    cond[..., 2] = 0
    other = cond.clone()
    other[..., 2] = torch.randn(4, 17)  # now "3D", but est masks z out
    task_a, task_b = estimation(cond), estimation(other)
    assert torch.equal(task_a.mask[..., 2], torch.zeros(4, 17))
    assert torch.equal(task_a.mask[..., :2], torch.ones(4, 17, 2))
    cfg = SamplerConfig(method="em", steps=10)
    a, _ = sample(fn, sde, task_a, cfg, torch.Generator().manual_seed(0))
    b, _ = sample(fn, sde, task_b, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    c, _ = sample(fn, sde, estimation(cond + 1.0), cfg, torch.Generator().manual_seed(0))
    assert not torch.equal(a, c)  # the x, y condition is used


@pytest.mark.parametrize("method,eta", [(m, 0) for m in PLAIN] + [("dpm2m", 1)])
def test_every_sampler_is_deterministic_given_a_seed(method, eta):
    sde = SubVPSDE()
    fn = ScoreFn(random_model(), sde)
    cfg = SamplerConfig(method=method, steps=8, eta=eta, rtol=1e-3, atol=1e-3)
    a, _ = sample(fn, sde, generation(6), cfg, torch.Generator().manual_seed(5))
    b, _ = sample(fn, sde, generation(6), cfg, torch.Generator().manual_seed(5))
    c, _ = sample(fn, sde, generation(6), cfg, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)  # the initial state comes from the seed


def test_sde_solver_with_eta_zero_is_the_ode_solver_and_eta_adds_noise():
    sde, fn = SubVPSDE(), _gauss()
    ode, _ = sample(fn, sde, generation(64), SamplerConfig(method="dpm2m", steps=20), torch.Generator().manual_seed(1))
    sde_x, _ = sample(fn, sde, generation(64), SamplerConfig(method="dpm2m", steps=20, eta=1.0),
                      torch.Generator().manual_seed(1))
    assert not torch.allclose(ode, sde_x, atol=1e-2)
    with pytest.raises(ToolkitError, match="eta"):
        SamplerConfig(method="em", eta=1.0).validate(sde)


def test_bad_sampler_settings_are_clear_errors():
    sde = SubVPSDE()
    for cfg, message in ((SamplerConfig(method="nope"), "unknown sampler"),
                         (SamplerConfig(method="drift_2m", schedule="paper"), "paper's grid"),
                         (SamplerConfig(method="drift", corrector="langevin"), "Langevin"),
                         (SamplerConfig(steps=0), "steps"), (SamplerConfig(eps=2.0), "eps")):
        with pytest.raises(ToolkitError, match=message):
            cfg.validate(sde)
    with pytest.raises(ToolkitError, match="start time"):
        sample(_gauss(), sde, denoising(torch.zeros(2, 17, 3), 1e-4), SamplerConfig(method="drift", steps=5))


def test_bf16_score_is_close_to_fp32():
    sde = SubVPSDE()
    torch.manual_seed(0)
    model = ScoreModelFC_Adv(hidden_dim=256, embed_dim=64).eval()  # 8 channels per GroupNorm group
    x, t = torch.randn(64, 17, 3), torch.rand(64)
    cond = torch.randn(64, 17, 3)
    ref = ScoreFn(model, sde).eps(x, t, cond, None)
    low_fn = ScoreFn(model, sde)
    with low_fn.precision(True):
        low = low_fn.eps(x, t, cond, None)
    assert not low_fn.bf16 and torch.equal(low_fn.eps(x, t, cond, None), ref)  # fp32 again after the block
    assert low.dtype == torch.float32 and not torch.equal(low, ref)
    assert (low - ref).abs().mean() < 0.02 * ref.abs().mean()


def test_seed_determinism_and_trajectory_length():
    sde = SubVPSDE()
    fn = ScoreFn(random_model(), sde)
    cfg = SamplerConfig(method="em", steps=25)
    a, traj = sample(fn, sde, generation(5), cfg, torch.Generator().manual_seed(7), save_every=10)
    b, _ = sample(fn, sde, generation(5), cfg, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert len(traj) == 3 and torch.equal(traj[-1], a)  # steps 10, 20 and the last


def test_denoising_starts_at_the_given_state_and_time():
    """den: N steps from the noisy pose itself at t (the paper: N = 1000 whatever t is)."""
    sde, fn = SubVPSDE(), _gauss()
    noisy = MU.expand(10, 17, 3) + 0.01 * torch.randn(10, 17, 3)
    for cfg, nfe in ((SamplerConfig(method="drift", steps=1000), 1000),
                     (SamplerConfig(method="drift_2m", steps=20), 20)):
        fn.nfe = 0
        x, _ = sample(fn, sde, denoising(noisy, 0.05), cfg, torch.Generator().manual_seed(0))
        assert fn.nfe == nfe
        assert (x - noisy).abs().mean() < 0.2


def test_time_grid_endpoints():
    sde = SubVPSDE()
    for schedule in (s for s in SCHEDULES if s != "paper"):
        g = make_grid(sde, schedule, 10, 1.0, 1e-3)
        t = torch.cat([g.t, g.t_next[-1:]])
        assert t.shape == (11,) and t[0] == 1.0 and abs(t[-1] - 1e-3) < 1e-7 and (t.diff() < 0).all()
        assert torch.allclose(torch.tensor(g.dt, dtype=torch.float64), g.t - g.t_next)


def test_langevin_corrector_keeps_the_distribution():
    sde = SubVPSDE()
    cfg = SamplerConfig(method="em", steps=200, schedule="uniform", corrector="langevin", snr=0.16)
    fn = _gauss(sde)
    x, _ = sample(fn, sde, generation(4000), cfg, torch.Generator().manual_seed(0))
    assert fn.nfe == 400  # predictor + corrector per step
    assert (x.mean(0) - MU).abs().max() < 0.06
    assert abs(x.std(0).mean() - 0.5) < 0.03


def test_shared_time_is_embedded_once_with_the_same_result():
    """A sampler's time vector is an expanded scalar; the network's shortcut for it changes nothing."""
    torch.manual_seed(0)
    model = ScoreModelFC_Adv(hidden_dim=256, embed_dim=64).eval()  # 8 channels per GroupNorm group
    x, cond = torch.randn(32, 17, 3), torch.randn(32, 17, 3)
    t = torch.tensor(0.37)
    assert torch.allclose(model(x, t.expand(32), cond), model(x, t.repeat(32), cond), atol=1e-5)


class ConstantData(torch.nn.Module):
    """A noise prediction whose data prediction (x - sigma eps) / alpha is the same pose D at every x and t."""

    def __init__(self, sde, d):
        super().__init__()
        self.sde, self.d = sde, d

    def forward(self, x, t, condition, mask):
        a, sg = (v.reshape(-1, 1, 1).to(x) for v in (self.sde.alpha(t), self.sde.sigma(t)))
        return (x - a * self.d) / sg


def test_one_exponential_integrator_step_is_exact_for_a_constant_data_prediction():
    """With D fixed the drift-only process is linear, and one drift_ddim step of lib/sampling (docs/design.md,
    'Samplers') must land where a fine Euler integration of dx/dt = f - g^2 s lands."""
    sde = SubVPSDE()
    d = torch.linspace(-1.0, 1.0, 51, dtype=torch.float64).reshape(1, 17, 3)
    fn = ScoreFn(ConstantData(sde, d).double(), sde)
    x0 = torch.linspace(2.0, -1.0, 51, dtype=torch.float64).reshape(1, 17, 3)
    task = dataclasses.replace(generation(1), condition=torch.zeros(1, 17, 3, dtype=torch.float64),
                               mask=torch.zeros(1, 17, 3, dtype=torch.float64), x_init=x0, t_start=0.6)
    one, _ = sample(fn, sde, task, SamplerConfig(method="drift_ddim", steps=1, eps=0.2, schedule="uniform"))
    x, n = x0.clone(), 20000
    ts = torch.linspace(0.6, 0.2, n + 1, dtype=torch.float64)
    for a, b in zip(ts[:-1], ts[1:], strict=True):
        f, g = sde.sde(x, a.reshape(1))
        x = x + (f - g ** 2 * fn(x, a.reshape(1), None, None)) * (b - a)
    assert (one - x).abs().max() < 1e-3 and (one - x0).abs().max() > 0.1
