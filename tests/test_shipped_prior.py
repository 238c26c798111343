"""The shipped prior of real motion (lib/resources/cmu_prior): it loads from a clone with no ../shared, is small,
carries no training pose and says where it came from, is what run.lift and PosePrior.from_checkpoint() use by
default, and lifts a walk with the error its card wrote down, measured once on a held-out CMU clip."""
from __future__ import annotations

import json
import re

import numpy as np
import torch

from lib.api import PosePrior
from lib.camera import Camera, look_at, project
from lib.checkpoint import load_checkpoint
from lib.keypoints import coco_from_h36m
from lib.loader import SHIPPED_PRIOR
from lib.metrics import pa_mpjpe
from lib.synthetic import walking_clip
from tests.helpers import cmu_clip, needs_cmu

CARD = json.loads((SHIPPED_PRIOR / "card.json").read_text())
WALK = CARD["metrics"]["walking_clip"]  # measured once on held-out CMU ground truth (make prior)


def _lift_p2(prior: PosePrior, world: np.ndarray) -> float:
    """P2 (mm) of a walk [T, 17, 3] filmed as the card's clip was (its pitch, focal length, 4.5 m away), lifted from
    its COCO keypoints with the true intrinsics."""
    target = world[:, 0].mean(0)
    centre = target + np.array([0.0, -4500.0, 4500.0 * np.tan(np.radians(WALK["pitch_deg"]))])
    f = WALK["focal_px"]
    cam = Camera(rot=look_at(centre, target), centre=centre, intrinsics=np.array([f, f, 960.0, 540.0]))
    truth = cam.world_to_camera(world)
    px = project(truth, np.broadcast_to(cam.intrinsics, (len(truth), 4)))
    result = prior.lift(coco_from_h36m(px), "coco", camera=cam.intrinsics, fast=True)
    return float(pa_mpjpe(torch.from_numpy(result.pose3d[:, 0]).float(), torch.from_numpy(truth).float()).mean())


def test_the_shipped_prior_is_small_and_says_where_it_came_from():
    path = SHIPPED_PRIOR / "checkpoint.pth"
    assert path.stat().st_size <= 5 * 2 ** 20
    state = load_checkpoint(path)  # weights_only=True, as every command loads it
    assert "optimizer_state_dict" not in state and "ema" not in state and state["pose_bank"].dtype == torch.float16
    config = json.loads(state["config"])
    assert config["detnoise"]["table"].endswith("sh_detection_errors_h36m_train.json") and config["data"]["root"] == \
        "data/cmu"
    assert "CMU" in CARD["data"] and "resold" in CARD["licence"] and "configs/subvp/cmu_prior.py" in CARD["command"]
    assert re.match(r"[0-9a-f]{40}", CARD["commit"]) and CARD["step"] == config["training"]["n_iters"]
    for name in ("gt_s1", "det_s1", "gt_s20", "det_s20"):
        assert CARD["metrics"][name]["checkpoint"].endswith("checkpoint.pth")  # the final one, never selected


def test_shipping_a_run_keeps_its_weights_and_drops_its_training_poses(trained_run, tmp_path):
    """lib/ship.py on a small run: the shipped file gives the run's EMA network, has no optimizer and no EMA copy,
    and its bank of warm-start poses holds none of the run's training poses (it is drawn from the prior)."""
    from lib.ship import ship

    written = ship(trained_run / "checkpoint.pth", tmp_path, {"data": "synthetic"}, {})
    shipped, run = load_checkpoint(written[0]), load_checkpoint(trained_run / "checkpoint.pth")
    assert "optimizer_state_dict" not in shipped and "ema" not in shipped
    assert json.loads(written[1].read_text())["data"] == "synthetic"
    x = torch.zeros(2, 17, 3)
    t = torch.full((2,), 0.5)
    a = PosePrior.from_checkpoint(written[0]).model(x, t, x, torch.ones_like(x))
    b = PosePrior.from_checkpoint(trained_run, best=False).model(x, t, x, torch.ones_like(x))
    assert torch.allclose(a, b)  # the EMA weights, as every command loads from the run
    bank, train = shipped["pose_bank"].float(), run["pose_bank"].float()
    nearest = torch.cdist(bank.reshape(len(bank), -1), train.reshape(len(train), -1)).min(1).values
    assert len(bank) == 4096 and float(nearest.min()) > 1e-3


# The CMU pack's one skeleton, by its documented mean bone lengths (mm; right, left): the shipped prior has seen no
# other body (README 'The shipped prior' gives what other proportions cost)
CMU_BONES = {"hip": (92.2, 92.2), "thigh": (428.3, 428.6), "shin": (407.3, 411.3), "spine": (219.7, 219.7),
             "thorax": (116.6, 116.6), "neck": (175.2, 175.2), "head": (91.8, 91.8), "shoulder": (206.6, 202.9),
             "upper_arm": (274.6, 283.7), "forearm": (189.4, 189.9)}


def test_the_shipped_prior_lifts_a_synthetic_walk_near_its_cmu_error():
    """From a clone: a synthetic walk of CMU's proportions (a motion the prior never saw) within 1.5x the P2 the card
    measured on the held-out CMU walk."""
    prior = PosePrior.from_checkpoint()
    bones = {k: np.array(v) for k, v in CMU_BONES.items()}
    assert _lift_p2(prior, walking_clip(40, bones, np.random.default_rng(0))) < 1.5 * WALK["p2"]


@needs_cmu
def test_the_shipped_prior_gives_the_cards_error_on_the_held_out_cmu_walk():
    prior = PosePrior.from_checkpoint()
    assert abs(_lift_p2(prior, cmu_clip("walking", WALK["frames"])) - WALK["p2"]) < 0.05 * WALK["p2"]
