"""Human3.6M 17-joint skeleton (docs/design.md, 'Skeleton')."""
from __future__ import annotations

import torch

NUM_JOINTS = 17
JOINT_NAMES = (
    "pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle",
    "spine", "thorax", "neck_nose", "head", "left_shoulder", "left_elbow", "left_wrist",
    "right_shoulder", "right_elbow", "right_wrist",
)
BONES = (
    (0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6), (0, 7), (7, 8),
    (8, 9), (9, 10), (8, 11), (11, 12), (12, 13), (8, 14), (14, 15), (15, 16),
)
LEFT_JOINTS = (4, 5, 6, 11, 12, 13)
RIGHT_JOINTS = (1, 2, 3, 14, 15, 16)
# Pairs of bones that mirror each other (left bone index, right bone index) into BONES.
SYMMETRIC_BONES = ((3, 0), (4, 1), (5, 2), (10, 13), (11, 14), (12, 15))
PARTS = {
    "right_leg": (1, 2, 3),
    "left_leg": (4, 5, 6),
    "left_arm": (11, 12, 13),
    "right_arm": (14, 15, 16),
    "torso": (0, 7, 8, 9, 10),
}
# Joints among which random completion picks the missing ones (limb ends).
COMPLETION_CANDIDATES = (2, 3, 5, 6, 12, 13, 15, 16)

# Permutation that swaps left and right joints: flipped[..., j, :] = pose[..., FLIP_PERM[j], :].
FLIP_PERM = list(range(NUM_JOINTS))
for _l, _r in zip(LEFT_JOINTS, RIGHT_JOINTS, strict=True):
    FLIP_PERM[_l], FLIP_PERM[_r] = _r, _l
FLIP_PERM = tuple(FLIP_PERM)


def flip_pose(pose: torch.Tensor) -> torch.Tensor:
    """Mirror poses horizontally: negate x and swap left/right joints. pose: [..., 17, C]."""
    out = pose[..., list(FLIP_PERM), :].clone()
    out[..., 0] = -out[..., 0]
    return out


def bone_lengths(pose: torch.Tensor) -> torch.Tensor:
    """Length of each bone in BONES. pose: [..., 17, 3] -> [..., 16]."""
    parents = torch.tensor([b[0] for b in BONES], device=pose.device)
    children = torch.tensor([b[1] for b in BONES], device=pose.device)
    return (pose[..., children, :] - pose[..., parents, :]).norm(dim=-1)


def parse_joint_list(text: str) -> list[int]:
    """Parse '1,2,3' or 'right_leg,left_arm' (or a mix) into sorted unique joint indices."""
    joints: set[int] = set()
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        if item in PARTS:
            joints.update(PARTS[item])
        elif item.lstrip("-").isdigit():
            j = int(item)
            if not 0 <= j < NUM_JOINTS:
                raise ValueError(f"joint index {j} is out of range 0..{NUM_JOINTS - 1}")
            joints.add(j)
        else:
            raise ValueError(f"unknown joint or part '{item}'; use indices 0..{NUM_JOINTS - 1} "
                             f"or part names {', '.join(PARTS)}")
    if not joints:
        raise ValueError("the joint list is empty")
    return sorted(joints)
