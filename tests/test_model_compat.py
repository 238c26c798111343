"""The network loads the official U3D files unchanged: frozen key list, order, shapes, EMA order, forward."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch

from configs.subvp.h36m_ncsnpp_deep_continuous import get_config as u3d_config
from lib.builders import build_model
from lib.checkpoint import load_checkpoint
from lib.errors import ToolkitError
from lib.loader import load_prior

BLOCK = [("dense1", (1024, 1024)), ("dense1_t", (1024, 512)), ("dense1_cond", (1024, 1024)), ("gnorm1", (1024,)),
         ("dense2", (1024, 1024)), ("dense2_t", (1024, 512)), ("dense2_cond", (1024, 1024)), ("gnorm2", (1024,))]
MODULES = ([("pre_dense", (1024, 51)), ("pre_dense_t", (1024, 512)), ("pre_dense_cond", (1024, 1024)),
            ("pre_gnorm", (1024,)), ("shared_time_embed.0", (512, 512)), ("cond_embed.0", (1024, 51))]
           + [(f"b{i}_{n}", s) for i in (1, 2) for n, s in BLOCK] + [("post_dense", (51, 1024))])


def official_keys() -> list[tuple[str, tuple[int, ...]]]:
    keys = [("sigmas", (1000,))]
    for name, shape in MODULES:
        keys += [(f"{name}.weight", shape), (f"{name}.bias", (shape[0],))]
    return keys


def test_state_dict_keys_order_and_shapes_are_frozen():
    model = build_model(u3d_config())
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert got == official_keys()
    assert model.state_dict()["sigmas"].dtype == torch.float64
    assert sum(p.numel() for p in model.parameters()) == 12_504_627
    # shadow_params are positional in parameters() order: the same list without the buffer
    assert [tuple(p.shape) for p in model.parameters()] == [s for _, s in official_keys()[1:]]
    assert len(list(model.parameters())) == 46


def _official_file(path, with_numpy_lr: bool) -> dict:
    """Write a file laid out like U3D's checkpoint.pth (DataParallel prefix, numpy lr) with random weights."""
    torch.manual_seed(0)
    model = build_model(u3d_config())
    sd = {f"module.{k}": v for k, v in model.state_dict().items()}
    shadow = [p.detach() + 0.01 * torch.randn_like(p) for p in model.parameters()]
    opt = torch.optim.Adam(model.parameters(), lr=2e-4)
    opt_sd = opt.state_dict()
    if with_numpy_lr:
        opt_sd["param_groups"][0]["lr"] = np.float64(2e-4) * np.minimum(10 / 5000, 1.0)
    state = {"model_state_dict": sd, "ema": {"decay": 0.9999, "num_updates": 10, "shadow_params": shadow},
             "epoch": 3, "step": 10, "optimizer_state_dict": opt_sd}
    torch.save(state, path)
    return state


def test_official_checkpoint_loads_with_weights_only(tmp_path):
    path = tmp_path / "checkpoint.pth"
    state = _official_file(path, with_numpy_lr=True)
    with pytest.raises(pickle.UnpicklingError):  # the reference's numpy float breaks a plain weights_only load
        torch.load(path, weights_only=True)
    loaded = load_checkpoint(path)  # allow-listed numpy scalars only
    assert math.isclose(float(loaded["optimizer_state_dict"]["param_groups"][0]["lr"]), 2e-4 * 10 / 5000)
    model = load_prior(path, config=u3d_config()).model
    for p, s in zip(model.parameters(), state["ema"]["shadow_params"], strict=True):
        assert torch.equal(p, s)  # EMA weights, in parameters() order


def test_incompatible_config_lists_mismatched_keys(tmp_path):
    path = tmp_path / "best_model.pth"
    _official_file(path, with_numpy_lr=False)
    config = u3d_config()
    config.model.hidden_dim = 512
    with pytest.raises(ToolkitError, match=r"does not match the config.*pre_dense.weight"):
        load_prior(path, config=config)


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "best_model.pth"
    _official_file(path, with_numpy_lr=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ToolkitError, match="truncated, corrupt or not a checkpoint"):
        load_checkpoint(path)


def _reference_forward(sd: dict, x, t, condition, mask) -> torch.Tensor:
    """Independent functional transcription of the official forward (docs/design.md, 'Network and checkpoints')."""
    lin = lambda name, h: h @ sd[f"{name}.weight"].T + sd[f"{name}.bias"]  # noqa: E731
    gn = lambda name, h: torch.nn.functional.group_norm(h, 32, sd[f"{name}.weight"], sd[f"{name}.bias"])  # noqa: E731
    b = x.shape[0]
    cond = x - condition
    is_3d = (condition[..., 2] != 0).any(1)
    cond[..., 2] = torch.where(is_3d[:, None], cond[..., 2], torch.zeros_like(cond[..., 2]))
    cond = (cond * mask).reshape(b, -1)
    half = 256
    freqs = torch.exp(torch.arange(half) * -(math.log(10000) / (half - 1)))
    args = 999 * t[:, None] * freqs[None]
    temb = torch.nn.functional.silu(lin("shared_time_embed.0", torch.cat([args.sin(), args.cos()], 1)))
    cemb = torch.nn.functional.silu(lin("cond_embed.0", cond))
    act = torch.nn.functional.silu
    h = act(gn("pre_gnorm", lin("pre_dense", x.reshape(b, -1)) + lin("pre_dense_t", temb)
               + lin("pre_dense_cond", cemb)))
    for i in (1, 2):
        p = f"b{i}_"
        h1 = act(gn(p + "gnorm1", lin(p + "dense1", h) + lin(p + "dense1_t", temb) + lin(p + "dense1_cond", cemb)))
        h2 = act(gn(p + "gnorm2", lin(p + "dense2", h1) + lin(p + "dense2_t", temb) + lin(p + "dense2_cond", cemb)))
        h = h + h2
    return lin("post_dense", h).reshape(b, 17, 3)


def test_forward_matches_official_semantics():
    torch.manual_seed(1)
    model = build_model(u3d_config()).eval()
    x = torch.randn(6, 17, 3) * 10
    t = torch.rand(6)
    cond = torch.randn(6, 17, 3) * 10
    cond[:3, :, 2] = 0.0  # three 2D conditions, three 3D ones
    mask = (torch.rand(6, 17, 3) > 0.3).float()
    sd = {k: v.double() for k, v in model.state_dict().items()}
    want = _reference_forward(sd, x.double(), t.double(), cond.double(), mask.double())
    got = model(x, t, cond, mask)
    assert torch.allclose(got.double(), want, atol=1e-4)
