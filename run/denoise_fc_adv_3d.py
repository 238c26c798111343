"""Denoise noisy 3D poses by starting the reverse process from them at a small time t.

    python -m run.denoise_fc_adv_3d --ckpt-dir checkpoint/demo --best den --noise-type gaussian --std 5 --t 0.05

As the paper: --std is in joint_3d_image units (pixels of the 1000-px frame), and the sampler is the paper's
drift-only one (1000 steps of 1/N from --t). The table also shows the drift integrated over its true time from
--t to eps (the fast sampler); --fast makes that one the main result.
"""
from __future__ import annotations

import argparse

from lib import dist
from lib.builders import build_score_fn, build_sde, frames_of, load_data
from lib.evaluate import EvalSettings, evaluate
from lib.tasks import TASKS, Context
from run.common import (
    add_eval_args,
    add_task_parsers,
    eval_setup,
    guarded,
    output_paths,
    parse,
    relaunch_workers,
    report,
    task_options,
)

MODULE = "run.denoise_fc_adv_3d"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_eval_args(parser)
    parser.add_argument("--save", action="store_true", help="accepted for the paper's command (results.npz is "
                                                             "always written)")
    add_task_parsers(parser, [TASKS["den"]])
    args, raw = parse(parser)
    relaunch_workers(args.gpus, MODULE)
    unit = TASKS["den"]
    opts = task_options(unit, args)
    setup = eval_setup(args, raw, deterministic=True)
    results, json_path = output_paths(args)
    config = setup.config
    ctx = Context(frames_of(config), load_data(config, "test"), seed=config.seed, num_joints=config.data.num_joints)
    settings = EvalSettings(1, config.eval.batch_size, config.seed)
    sde = build_sde(config)
    try:
        result = evaluate(unit, opts, ctx, build_score_fn(setup.model, sde, config), sde, setup.sampler, settings,
                          config, setup.device)
    finally:
        dist.shutdown()
    report(result, results, json_path, {"task": "den", "noise_type": opts.noise_type, "std": opts.std, "t": opts.t,
                                        "sampler": setup.sampler.method, "steps": setup.sampler.steps})


if __name__ == "__main__":
    guarded(main)
