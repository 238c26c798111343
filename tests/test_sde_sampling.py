"""SDE closed forms and sampler correctness on a Gaussian whose exact score is known."""
from __future__ import annotations

import pytest
import torch

from lib import tasks
from lib.model import ScoreFn, ScoreModelFC_Adv
from lib.sampling import METHODS, SamplerConfig, sample, time_grid
from lib.sde import VESDE, VPSDE, SubVPSDE, expand_like

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


class GaussianEps(torch.nn.Module):
    """Exact noise prediction for data N(mu, s^2 I): eps = sigma (x - alpha mu) / (alpha^2 s^2 + sigma^2)."""

    def __init__(self, sde, mu, s):
        super().__init__()
        self.sde, self.mu, self.s = sde, mu, s

    def forward(self, x, t, condition, mask):
        a, sg = expand_like(self.sde.alpha(t), x), expand_like(self.sde.sigma(t), x)
        return sg * (x - a * self.mu) / (a ** 2 * self.s ** 2 + sg ** 2)


MU = torch.linspace(-1.0, 1.0, 51).reshape(17, 3)


@pytest.mark.parametrize("method,steps,eta", [("em", 500, 0), ("reverse_diffusion", 500, 0), ("pflow_euler", 500, 0),
                                              ("heun", 50, 0), ("pflow_rk45", 0, 0), ("ddim", 100, 0),
                                              ("dpm2m", 25, 0), ("ddim", 500, 1), ("dpm2m", 50, 1)])
def test_samplers_recover_gaussian(method, steps, eta):
    sde = SubVPSDE()
    cfg = SamplerConfig(method=method, steps=max(steps, 1), schedule="logsnr" if method in ("ddim", "dpm2m", "heun")
                        else "uniform", rtol=1e-4, atol=1e-4, eta=eta)
    x, _ = sample(ScoreFn(GaussianEps(sde, MU, 0.5), sde), sde, tasks.generation(4000), cfg,
                  torch.Generator().manual_seed(0))
    assert (x.mean(0) - MU).abs().max() < 0.06
    assert abs(x.std(0).mean() - 0.5) < 0.02


def test_ancestral_on_vp_and_refused_on_subvp():
    sde = VPSDE()
    x, _ = sample(ScoreFn(GaussianEps(sde, MU, 0.5), sde), sde, tasks.generation(4000),
                  SamplerConfig(method="ancestral", steps=500), torch.Generator().manual_seed(0))
    assert (x.mean(0) - MU).abs().max() < 0.06
    with pytest.raises(ValueError, match="ancestral"):
        SamplerConfig(method="ancestral").validate(SubVPSDE())


def test_ode_solvers_agree():
    """Fixed-step Euler with many steps converges to the adaptive solver's solution, path by path."""
    sde = SubVPSDE()
    fn = ScoreFn(GaussianEps(sde, MU, 0.5), sde)
    task = tasks.generation(64)
    ref, _ = sample(fn, sde, task, SamplerConfig(method="pflow_rk45", rtol=1e-6, atol=1e-6),
                    torch.Generator().manual_seed(3))
    for method, steps, tol in (("pflow_euler", 2000, 0.02), ("heun", 200, 0.005), ("dpm2m", 200, 0.005)):
        x, _ = sample(fn, sde, task, SamplerConfig(method=method, steps=steps, schedule="logsnr"),
                      torch.Generator().manual_seed(3))
        assert (x - ref).abs().max() < tol, method


def _random_model():
    torch.manual_seed(0)
    return ScoreModelFC_Adv(hidden_dim=64, embed_dim=32).eval()


@pytest.mark.parametrize("method", [m for m in METHODS if m != "ancestral"])
def test_completion_keeps_observed_coordinates_exactly(method):
    sde = SubVPSDE()
    fn = ScoreFn(_random_model(), sde)
    pose = torch.randn(8, 17, 3) * 5
    missing = tasks.random_missing(8, 3, torch.Generator().manual_seed(0))
    for task in (tasks.completion_3d(pose, missing), tasks.completion_2d(pose, missing)):
        x, _ = sample(fn, sde, task, SamplerConfig(method=method, steps=10, rtol=1e-3, atol=1e-3),
                      torch.Generator().manual_seed(0))
        keep = task.observed_mask > 0
        assert torch.equal(x[keep], task.observed[keep])
        assert not torch.equal(x[~keep], torch.zeros_like(x[~keep]))


def test_estimation_sees_only_xy_of_the_condition():
    """est leaves depth free: changing the condition's z changes nothing."""
    sde = SubVPSDE()
    fn = ScoreFn(_random_model(), sde)
    cond = torch.randn(4, 17, 3)
    cond[..., 2] = 0
    other = cond.clone()
    other[..., 2] = torch.randn(4, 17)  # now "3D", but est masks z out
    task_a, task_b = tasks.estimation(cond), tasks.estimation(other)
    assert torch.equal(task_a.mask[..., 2], torch.zeros(4, 17))
    assert torch.equal(task_a.mask[..., :2], torch.ones(4, 17, 2))
    cfg = SamplerConfig(method="em", steps=10)
    a, _ = sample(fn, sde, task_a, cfg, torch.Generator().manual_seed(0))
    b, _ = sample(fn, sde, task_b, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    c, _ = sample(fn, sde, tasks.estimation(cond + 1.0), cfg, torch.Generator().manual_seed(0))
    assert not torch.equal(a, c)  # the x, y condition is used


@pytest.mark.parametrize("method,eta", [(m, 0) for m in METHODS if m != "ancestral"] + [("dpm2m", 1)])
def test_every_sampler_is_deterministic_given_a_seed(method, eta):
    sde = SubVPSDE()
    fn = ScoreFn(_random_model(), sde)
    cfg = SamplerConfig(method=method, steps=8, eta=eta, rtol=1e-3, atol=1e-3)
    a, _ = sample(fn, sde, tasks.generation(6), cfg, torch.Generator().manual_seed(5))
    b, _ = sample(fn, sde, tasks.generation(6), cfg, torch.Generator().manual_seed(5))
    c, _ = sample(fn, sde, tasks.generation(6), cfg, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_sde_solver_with_eta_zero_is_the_ode_solver_and_eta_adds_noise():
    sde = SubVPSDE()
    fn = ScoreFn(GaussianEps(sde, MU, 0.5), sde)
    ode, _ = sample(fn, sde, tasks.generation(64), SamplerConfig(method="dpm2m", steps=20, schedule="logsnr"),
                    torch.Generator().manual_seed(1))
    sde_x, _ = sample(fn, sde, tasks.generation(64), SamplerConfig(method="dpm2m", steps=20, schedule="logsnr",
                                                                    eta=1.0), torch.Generator().manual_seed(1))
    assert not torch.allclose(ode, sde_x, atol=1e-2)
    with pytest.raises(ValueError, match="eta"):
        SamplerConfig(method="em", eta=1.0).validate(sde)


def test_bf16_score_is_close_to_fp32():
    sde = SubVPSDE()
    torch.manual_seed(0)
    model = ScoreModelFC_Adv(hidden_dim=256, embed_dim=64).eval()  # 8 channels per GroupNorm group
    x, t = torch.randn(64, 17, 3), torch.rand(64)
    cond = torch.randn(64, 17, 3)
    ref = ScoreFn(model, sde).eps(x, t, cond, None)
    low = ScoreFn(model, sde, bf16=True).eps(x, t, cond, None)
    assert low.dtype == torch.float32 and not torch.equal(low, ref)
    assert (low - ref).abs().mean() < 0.02 * ref.abs().mean()


def test_seed_determinism_and_trajectory_length():
    sde = SubVPSDE()
    fn = ScoreFn(_random_model(), sde)
    task = tasks.generation(5)
    cfg = SamplerConfig(method="em", steps=25)
    a, traj = sample(fn, sde, task, cfg, torch.Generator().manual_seed(7), save_every=10)
    b, _ = sample(fn, sde, task, cfg, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert len(traj) == 3 and torch.equal(traj[-1], a)  # steps 10, 20 and the last


def test_denoising_starts_at_the_given_state_and_time():
    sde = SubVPSDE()
    fn = ScoreFn(GaussianEps(sde, MU, 0.5), sde)
    noisy = MU.expand(10, 17, 3) + 0.01 * torch.randn(10, 17, 3)
    x, _ = sample(fn, sde, tasks.denoising(noisy, 0.05), SamplerConfig(method="em", steps=1000),
                  torch.Generator().manual_seed(0))
    assert fn.nfe == 49  # the step size of the full 1000-step process over [eps, 0.05]
    assert (x - noisy).abs().mean() < 0.2


def test_time_grid_endpoints():
    sde = SubVPSDE()
    for schedule in ("uniform", "logsnr", "quadratic", "edm"):
        t = time_grid(sde, 10, 1.0, 1e-3, schedule)
        assert t.shape == (11,) and t[0] == 1.0 and abs(t[-1] - 1e-3) < 1e-7 and (t.diff() < 0).all()


def test_langevin_corrector_keeps_the_distribution():
    sde = SubVPSDE()
    cfg = SamplerConfig(method="em", steps=200, corrector="langevin", snr=0.16, corrector_steps=1)
    fn = ScoreFn(GaussianEps(sde, MU, 0.5), sde)
    x, _ = sample(fn, sde, tasks.generation(4000), cfg, torch.Generator().manual_seed(0))
    assert fn.nfe == 400  # predictor + corrector per step
    assert (x.mean(0) - MU).abs().max() < 0.06
    assert abs(x.std(0).mean() - 0.5) < 0.03


def test_shared_time_is_embedded_once_with_the_same_result():
    """A sampler's time vector is an expanded scalar; the network's shortcut for it changes nothing."""
    torch.manual_seed(0)
    model = ScoreModelFC_Adv(hidden_dim=256, embed_dim=64).eval()  # 8 channels per GroupNorm group
    x, cond = torch.randn(32, 17, 3), torch.randn(32, 17, 3)
    t = torch.tensor(0.37)
    shared = model(x, t.expand(32), cond)
    separate = model(x, t.repeat(32), cond)
    assert torch.allclose(shared, separate, atol=1e-5)
