"""comp2d / comp3d: completion of occluded 2D or partial 3D poses (docs/design.md, 'Tasks').

The paper's comp2d / comp3d condition the network on the observed coordinates and impute them (replace them by the
observation perturbed to the current noise level) after every step; the missing joints are sampled
(lib/tasks/observe.py has the other ways, eval.completion). The paper's --randj draws k joints among the limb ends
per row, --jlist names fixed joints (indices or part names).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lib.errors import ToolkitError
from lib.lookup import nearest_2d
from lib.metrics import Table, joint_distances, masked_mean, per_action
from lib.skeleton import COMPLETION_CANDIDATES, parse_joint_list
from lib.tasks.base import BuiltTask, EvalInputs, Task, TaskDefinition, option, register_task
from lib.tasks.hypotheses import TITLES, evidence, outputs, score_hypotheses
from lib.tasks.observe import observe_2d, observe_3d


def random_missing(n: int, k: int, generator: torch.Generator, num_joints: int = 17,
                   candidates: tuple[int, ...] = COMPLETION_CANDIDATES) -> torch.Tensor:
    """[N, J] bool with k distinct joints per row drawn from the candidates (the paper's --randj)."""
    if not 1 <= k <= len(candidates):
        raise ToolkitError(f"--randj must be between 1 and {len(candidates)} (the candidate joints "
                           f"{list(candidates)}), got {k}")
    pick = torch.rand(n, len(candidates), generator=generator).argsort(dim=1)[:, :k]  # [N, k]
    missing = torch.zeros(n, num_joints, dtype=torch.bool)
    missing.scatter_(1, torch.tensor(candidates)[pick], True)
    return missing


def fixed_missing(n: int, joints: list[int], num_joints: int = 17) -> torch.Tensor:
    """[N, J] bool with the same joints missing in every row (the paper's --jlist)."""
    missing = torch.zeros(n, num_joints, dtype=torch.bool)
    missing[:, joints] = True
    return missing


def completion_baselines(gt_mm: torch.Tensor, train_mm: torch.Tensor, missing: torch.Tensor, max_ref: int = 20000,
                         chunk: int = 32) -> dict[str, torch.Tensor]:
    """Per-row error (mm) over the missing joints of two answers made without a model, the yardstick of comp3d:
    the mean training pose, and the training pose nearest on the observed joints; each translated so that its
    observed joints' centroid is the input's. gt_mm [N, J, 3], train_mm [M, J, 3] (camera mm), missing [N, J]."""
    ref = train_mm[torch.linspace(0, len(train_mm) - 1, min(max_ref, len(train_mm))).long()]  # [R, J, 3]
    seen = (~missing).float()[..., None]  # [N, J, 1]

    def centred(pose: torch.Tensor, w: torch.Tensor) -> torch.Tensor:  # minus the centroid of the seen joints
        return pose - (pose * w).sum(-2, keepdim=True) / w.sum(-2, keepdim=True).clamp_min(1.0)

    target = centred(gt_mm, seen)  # [N, J, 3]
    answers = {"mean": centred(ref.mean(0).expand_as(gt_mm), seen)}
    nearest = []
    for i in range(0, len(gt_mm), chunk):
        w = seen[i:i + chunk, None]  # [n, 1, J, 1]
        cand = centred(ref[None], w)  # [n, R, J, 3]
        dist = ((cand - target[i:i + chunk, None]).square() * w).sum((-1, -2))  # [n, R]
        nearest.append(cand[torch.arange(len(w)), dist.argmin(1)])
    answers["nearest"] = torch.cat(nearest)
    err = {k: (v - target).norm(dim=-1) for k, v in answers.items()}  # [N, J]
    return {k: masked_mean(v, missing) for k, v in err.items()}


@dataclass
class CompletionOptions:
    randj: int | None = option(None, f"random missing joints per pose, among {list(COMPLETION_CANDIDATES)}",
                               type=int)
    jlist: str | None = option(None, "missing joints: indices and/or parts, e.g. 1,2,3 or right_leg,left_arm")

    def validate(self) -> None:
        if (self.randj is None) == (self.jlist is None):
            raise ToolkitError("give exactly one of --randj K (random missing joints) or --jlist J1,J2,...")
        if self.randj is not None and not 1 <= self.randj <= len(COMPLETION_CANDIDATES):
            raise ToolkitError(f"--randj must be between 1 and {len(COMPLETION_CANDIDATES)} (the candidate joints "
                               f"{list(COMPLETION_CANDIDATES)}), got {self.randj}")
        if self.jlist is not None:
            try:
                parse_joint_list(self.jlist)
            except ValueError as e:
                raise ToolkitError(f"--jlist: {e}") from e

    def missing(self, n: int, seed: int, num_joints: int) -> torch.Tensor:
        if self.randj is not None:
            return random_missing(n, self.randj, torch.Generator().manual_seed(seed), num_joints)
        return fixed_missing(n, parse_joint_list(self.jlist), num_joints)


class _Completion(TaskDefinition):
    Options = CompletionOptions
    aggregates = True
    titles = TITLES | {f"{k}_missing": f"{v}, missing joints" for k, v in TITLES.items() if not k.startswith("unc")}
    titles |= {"warm_missing": "the warm start's own answer, missing joints"}
    needs_train = True  # the no-model yardsticks look up training poses
    completes = True

    def _task(self, ctx: EvalInputs, missing: torch.Tensor) -> tuple[Task, torch.Tensor | None]:
        """The task and, for 2D input, the joints it sees [N, J] bool."""
        raise NotImplementedError

    def _source(self, ctx: EvalInputs) -> str:
        return "3D" if self.name == "comp3d" else ctx.test.source_2d

    def build(self, ctx: EvalInputs, opts: CompletionOptions) -> BuiltTask:
        missing = opts.missing(len(ctx.test), ctx.seed, ctx.num_joints)
        task, seen = self._task(ctx, missing)
        arrays = {"missing": missing.numpy()[None, :, None]}
        info = {"missing": missing, "input2d": None, "seen": seen}
        if seen is not None:  # the 2D input of the seen joints (drawn, and for jpma)
            info["input2d"] = ctx.test.cond2d(ctx.frames)[..., :2] * seen[..., None]
            arrays["input2d"] = (info["input2d"] / ctx.frames.scale).numpy()[None, :, None]
        title = (f"{self.name}: from {self._source(ctx)}, {float(missing.sum(1).float().mean()):g} missing joints per "
                 f"pose, completion '{ctx.completion}', S = {ctx.hypo} (mm)")
        return BuiltTask(task=task, title=title, arrays=arrays, info=info)

    def metrics(self, preds: dict[str, torch.Tensor], ctx: EvalInputs, prep: BuiltTask, opts: CompletionOptions
                ) -> Table:
        """Every error over all joints and over the missing joints: oracle, aggregates, uncertainty; with a warm
        start, the error of the answer it started from (the completion should beat it)."""
        i = prep.info
        table = score_hypotheses(next(iter(preds.values())), ctx, evidence(ctx, i), i["missing"])
        if i.get("warm") is None:
            return table
        err = joint_distances(ctx.test.rows.network_to_camera(i["warm"], ctx.frames),
                              torch.from_numpy(ctx.test.pose_cam).float())
        return table | per_action({"warm_missing": masked_mean(err, i["missing"]).numpy()}, ctx.test.action_name)

    def outputs(self, pred: torch.Tensor, ctx: EvalInputs, prep: BuiltTask) -> dict:
        i = prep.info
        return outputs(pred, ctx, evidence(ctx, i))


@register_task
class Completion2D(_Completion):
    name = "comp2d"
    help = "completion from occluded 2D keypoints"

    titles = _Completion.titles | {
        "baseline_lookup_missing": "no model: 2D-to-3D lookup of the nearest training pose, missing joints",
        "baseline_lookup": "no model: 2D-to-3D lookup of the nearest training pose, all joints"}

    def _task(self, ctx: EvalInputs, missing: torch.Tensor) -> tuple[Task, torch.Tensor]:
        """The hidden joints and the joints the 2D source does not give (low confidence, another point) are
        unseen alike (lib/tasks/observe.py)."""
        seen = ctx.test.seen2d(ctx.min_conf) & ~missing
        return observe_2d(ctx.test.cond2d(ctx.frames), seen, ctx.completion), seen

    def metrics(self, preds: dict[str, torch.Tensor], ctx: EvalInputs, prep: BuiltTask, opts: CompletionOptions
                ) -> Table:
        """The completion rows, and a 2D-to-3D lookup made without a model: the training pose whose 2D fits the
        seen joints best after a similarity (lib/lookup.nearest_2d), placed like a prediction."""
        table = super().metrics(preds, ctx, prep, opts)
        if ctx.train is None:
            return table
        ref = ctx.train.subset(np.linspace(0, len(ctx.train) - 1, min(20000, len(ctx.train))).round().astype(int))
        answer = nearest_2d(ref.gt3d(ctx.frames), ctx.test.cond2d(ctx.frames)[..., :2], prep.info["seen"])
        err = joint_distances(ctx.test.rows.network_to_camera(answer, ctx.frames),
                              torch.from_numpy(ctx.test.pose_cam).float())
        return table | per_action({"baseline_lookup_missing": masked_mean(err, prep.info["missing"]).numpy(),
                                   "baseline_lookup": err.mean(-1).numpy()}, ctx.test.action_name)


@register_task
class Completion3D(_Completion):
    name = "comp3d"
    help = "completion of partial 3D poses"
    titles = _Completion.titles | {
        "baseline_mean_missing": "no model: mean training pose, missing joints",
        "baseline_nearest_missing": "no model: nearest training pose on the seen joints, missing joints"}

    def _task(self, ctx: EvalInputs, missing: torch.Tensor) -> tuple[Task, None]:
        return observe_3d(ctx.test.gt3d(ctx.frames), missing, ctx.completion), None

    def metrics(self, preds: dict[str, torch.Tensor], ctx: EvalInputs, prep: BuiltTask, opts: CompletionOptions
                ) -> Table:
        """The completion rows, and the error of the two answers made without a model (with training data)."""
        table = super().metrics(preds, ctx, prep, opts)
        if ctx.train is None:
            return table
        base = completion_baselines(torch.from_numpy(ctx.test.pose_cam).float(),
                                    torch.from_numpy(ctx.train.pose_cam).float(), prep.info["missing"])
        return table | per_action({f"baseline_{k}_missing": v.numpy() for k, v in base.items()},
                                  ctx.test.action_name)
