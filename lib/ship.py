"""A run made into a small, inference-only prior to ship (lib/resources/cmu_prior is one).

The shipped file is a checkpoint every command loads (lib/checkpoint.py): the EMA weights as the model's weights, the
config, the skeleton and camera statistics that lifting assumes, and a bank of 4096 poses for the 'nearest' warm start
of completion. The bank is drawn from the prior itself, not taken from the training data, so that no training pose
ships; no optimizer state, no EMA copy, no students. Beside it, card.json: where it came from (data, licence, the
command, the commit) and the numbers measured on held-out rows (the --json files of run.eval_fc_mp_adv_3d).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from lib.api import PosePrior
from lib.bvh import WORLD_TO_BVH, h36m_positions, median_bones, parse_bvh, rigid_poses
from lib.camera import Camera, look_at, project
from lib.checkpoint import save_checkpoint
from lib.errors import ToolkitError
from lib.io import write_json
from lib.keypoints import coco_from_h36m
from lib.loader import load_prior
from lib.metrics import mpjpe, mpjpe_root, pa_mpjpe

BANK_SIZE = 4096


def ship(checkpoint: str | Path, out: str | Path, card: dict, metrics: dict[str, str | Path],
         clip: np.ndarray | None = None, seed: int = 0) -> list[Path]:
    """Write OUT/checkpoint.pth and OUT/card.json (card, plus each metrics JSON under its name, and measure_clip of
    a held-out clip [T, 17, 3] where given) from a run's checkpoint file."""
    checkpoint, out = Path(checkpoint), Path(out)
    loaded = load_prior(checkpoint)
    state, model = loaded.state, loaded.model  # the EMA weights
    prior = PosePrior(model, loaded.config, "cpu", loaded.pose_stats)
    bank = torch.from_numpy(prior.generate(BANK_SIZE, fast=True, seed=seed)).half()  # [4096, 17, 3] normalised
    shipped = {"model_state_dict": model.state_dict(), "config": state["config"], "step": state.get("step", 0),
               "epoch": state.get("epoch", 0), "pose_stats": state.get("pose_stats"), "pose_bank": bank}
    measured = {}
    for name, path in metrics.items():
        try:
            measured[name] = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ToolkitError(f"metrics file {path}: {e}; give the --json files of run.eval_fc_mp_adv_3d") from e
    if clip is not None:
        measured["walking_clip"] = measure_clip(prior, clip)
    save_checkpoint(shipped, out / "checkpoint.pth")
    write_json(out / "card.json", dict(card, step=int(shipped["step"]), metrics=measured))
    return [out / "checkpoint.pth", out / "card.json"]


def measure_clip(prior: PosePrior, world: np.ndarray, pitch_deg: float = 20.0, focal: float = 1500.0,
                 distance: float = 4500.0, size: tuple[int, int] = (1920, 1080)) -> dict[str, float]:
    """Lift a clip of world poses [T, 17, 3] (mm, Z up) filmed by a camera `distance` from its mean pelvis, looking
    down at pitch_deg, from its COCO keypoints with the true intrinsics (fast samplers, lift.hypotheses), and score
    it: P1 in the camera frame (depth found by the lift), root-aligned MPJPE and P2; the world frame's up against the
    true one (degrees) and its root trajectory (P1 of the root's path from its first frame, in the found axes); and
    the BVH written from the world frame read back (largest error against the rigid pose, mean against the lift)."""
    import tempfile

    target = world[:, 0].mean(0)
    height = distance * np.tan(np.radians(pitch_deg))
    centre = target + np.array([0.0, -distance, height])
    cam = Camera(rot=look_at(centre, target), centre=centre,
                 intrinsics=np.array([focal, focal, size[0] / 2.0, size[1] / 2.0]))
    truth = cam.world_to_camera(world)  # [T, 17, 3]
    px = project(truth, np.broadcast_to(cam.intrinsics, (len(truth), 4)))
    result = prior.lift(coco_from_h36m(px), "coco", camera=cam.intrinsics, fast=True).with_world(prior.config.lift)
    pred, gt = torch.from_numpy(result.pose3d[:, 0]).float(), torch.from_numpy(truth).float()
    lifted_world = result.pose3d_world[:, 0]
    path = lifted_world[:, 0] - lifted_world[0, 0]
    true_path = (truth[:, 0] - truth[0, 0]) @ result.world.rotation.T
    with tempfile.TemporaryDirectory() as tmp:
        bvh = h36m_positions(parse_bvh(result.save_bvh(tmp, 30.0)[0])) @ WORLD_TO_BVH
    rigid = rigid_poses(lifted_world, median_bones(lifted_world))
    return {"frames": len(world), "pitch_deg": pitch_deg, "focal_px": focal,
            "p1": float(mpjpe(pred, gt).mean()), "root_aligned": float(mpjpe_root(pred, gt).mean()),
            "p2": float(pa_mpjpe(pred, gt).mean()),
            "up_error_deg": float(np.degrees(np.arccos(np.clip(result.world.up @ (cam.rot @ [0.0, 0.0, 1.0]),
                                                               -1.0, 1.0)))),
            "trajectory_p1": float(np.linalg.norm(path - true_path, axis=-1).mean()),
            "bvh_vs_rigid_max_mm": float(np.abs(bvh - rigid).max()),
            "bvh_vs_lifted_mean_mm": float(np.linalg.norm(bvh - lifted_world, axis=-1).mean())}
