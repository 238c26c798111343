"""Distil a trained prior's deterministic sampler into students of few steps (progressive distillation).

    python -m run.distill --ckpt-dir checkpoint/cmu --steps 1 --minutes 10       # writes checkpoint/cmu_distilled
    python -m run.eval_fc_mp_adv_3d --ckpt-dir checkpoint/cmu_distilled --best --pflow --fast est   # validated
    python -m run.eval_fc_mp_adv_3d --ckpt-dir checkpoint/cmu_distilled --best --sampler distilled --steps 2 est
    python -m run.distill --ckpt-dir checkpoint/cmu_distilled --twin --minutes 8  # writes checkpoint/cmu_distilled_twin

Students of distill.first_steps (8), half that, ... down to --steps are kept; --fast uses the one with the fewest
steps whose validation P1 is within distill.fast_tolerance (3 %) of the teacher's fast sampler (distill.fast_steps,
0 where none is). The folder holds the teacher's weights too, so every command loads it like any other run.
distill.predict chooses the students' output (eps, eps+v, v, x; lib/model.Student), distill.fit_share,
distill.round_growth, distill.end_share, distill.spread_share and distill.t_start how the minutes are spent and where
the students start (lib/distill.py). --twin gives a student of a distilled run (--steps, default its last) a
stochastic twin for sampling with noise (eta > 0, S > 1), trained for all of --minutes; with
distill.twin_candidates = K, K twins share the minutes and the best on the validation rows (S = 20 oracle) is kept.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from lib import dist
from lib.distill import distill_run, twin_defaults, twin_run
from lib.errors import ToolkitError
from lib.loader import LoadedPrior, load_prior
from run.common import Parser, collect_overrides, guarded, number, parse, run_name


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(description=__doc__)
    parser.add_argument("--ckpt-dir", required=True, help="the trained run to distil (the teacher)")
    parser.add_argument("--best", action="store_true", help="distil best_model.pth instead of checkpoint.pth")
    parser.add_argument("--steps", type=number("--steps", int, 1),
                        help="the last student's steps (a power of two; default 4); with --twin the student that gets "
                             "the twin (default the run's last)")
    parser.add_argument("--twin", action="store_true",
                        help="--ckpt-dir is a distilled run: give one of its students a stochastic twin, trained for "
                             "all of --minutes (distill.spread_draws, distill.spread_passes; distill.twin_candidates "
                             "share them), in a new run folder")
    parser.add_argument("--minutes", type=number("--minutes", float, 0, 1e5, low_open=True), default=10.0,
                        help="wall-clock budget of all rounds together (with --twin, the twin's)")
    parser.add_argument("--name", help="run name (default: the teacher's name + _distilled, with --twin the run's + "
                                       "_twin)")
    parser.add_argument("--ckpt-root", default="checkpoint", help="parent folder of run folders")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing run folder of this name")
    return parser


def main() -> None:
    args, raw = parse(build_parser())
    # a new twin (--twin) takes today's twin settings, not those the run's own twin was made with
    prior = load_prior(args.ckpt_dir, args.best, overrides=lambda config: (twin_defaults() if args.twin else {})
                       | collect_overrides(config, raw, args, ()))
    config = prior.config
    if args.twin:
        twin(args, prior)
        return
    if prior.students:
        raise ToolkitError(f"{prior.checkpoint} is already distilled (students {config.distill.students}); distil its "
                           f"teacher, or give it a stochastic twin with --twin")
    steps = args.steps or 4
    first = config.distill.first_steps
    if not (first % steps == 0 and (first // steps) & (first // steps - 1) == 0):
        raise ToolkitError(f"--steps must divide distill.first_steps ({first}) by a power of two, got {steps}")
    name = run_name(args.name if args.name is not None else f"{Path(args.ckpt_dir).resolve().name}_distilled")
    try:
        result = distill_run(prior, Path(args.ckpt_root) / name, steps, args.minutes, args.overwrite)
    finally:
        dist.shutdown()
    print(f"wrote {Path(args.ckpt_root) / name}: students of {config.distill.students} steps")
    teacher = result["scores"]["teacher"]["p1"]
    for label, scores in result["scores"].items():
        print(f"  {label:12s} P1 {scores['p1']:.2f} mm (root-aligned {scores['p1_root']:.2f}), "
              f"{scores['p1'] / teacher:.3f}x the teacher's fast sampler")


def twin(args: argparse.Namespace, prior: LoadedPrior) -> None:
    """--twin: a stochastic twin for one student of the distilled run --ckpt-dir."""
    name = run_name(args.name if args.name is not None else f"{Path(args.ckpt_dir).resolve().name}_twin")
    try:
        rounds = twin_run(prior, Path(args.ckpt_root) / name, args.steps, args.minutes, args.overwrite)
    finally:
        dist.shutdown()
    kept = next(r for r in rounds if r.kept is not False)  # the twin's rounds: one, or the candidates
    print(f"wrote {Path(args.ckpt_root) / name}: the student of {kept.steps} steps with a stochastic twin "
          f"({kept.updates} updates in {kept.minutes:.1f} min)")
    if len(rounds) > 1:
        print(f"  kept of {len(rounds)} candidates by their S = {prior.config.distill.twin_hypo} oracle P1 on the "
              f"validation rows: {', '.join(f'{r.oracle:.2f}' for r in rounds)} mm")


if __name__ == "__main__":
    guarded(main)
