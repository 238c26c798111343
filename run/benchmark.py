"""Speed and accuracy-per-NFE benchmark, each number side by side with its baseline in one run.

    python -m run.benchmark                                  # CPU: a few minutes; uses checkpoint/demo
    python -m run.benchmark --sections sampling --batch 1000,10000,100000 --variants ours,"ours bf16"
    python -m run.benchmark --sections paper --config.sampling.bf16=true   # GPU: the paper's evaluation shape

Sections: sampling (score-network pose-evaluations/s, reference EM loop vs ours), training (samples/s,
reference DataLoader loop vs ours), accuracy (P1 against NFE for each sampler on the checkpoint's test
data), bf16 (accuracy of bf16 autocast against fp32), paper (S = 200 x 850 poses x 1000 steps wall time).
Throughput uses the network of --config (default: the paper's U3D network) with random weights.
"""
from __future__ import annotations

import argparse
import json
import platform
from dataclasses import asdict
from pathlib import Path

import torch
from prettytable import PrettyTable

from lib import dist
from lib.benchmark import (
    Row,
    accuracy_vs_nfe,
    bf16_accuracy,
    default_candidates,
    paper_shape,
    sampling_throughput,
    training_throughput,
)
from lib.builders import build_model, build_sampler_config, build_sde, checkpoint_path, load_data, load_model
from lib.errors import ToolkitError
from lib.evaluate import EvalOptions
from lib.skeleton import PARTS
from run.common import add_config_arg, config_from_args, guarded, parse

SECTIONS = ("sampling", "training", "accuracy", "bf16", "paper")
U3D = "configs/subvp/h36m_ncsnpp_deep_continuous.py"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arg(parser, required=False)
    parser.add_argument("--ckpt-dir", default="checkpoint/demo",
                        help="trained run (its best_model.pth and data) for the training and accuracy sections")
    parser.add_argument("--sections", help=f"comma list of {', '.join(SECTIONS)} (default: all but paper on CPU)")
    parser.add_argument("--batch", help="comma list of sampling batch sizes (default: 1000,4000 on CPU, "
                                        "1000,10000,100000 on GPU)")
    parser.add_argument("--steps", type=int, default=20, help="EM steps timed per sampling measurement")
    parser.add_argument("--variants", help="comma list of: ours, ours bf16, ours compile (default: all on GPU; "
                                           "ours, ours compile on CPU, where bf16 is emulated and slow)")
    parser.add_argument("--train-steps", type=int, default=10, help="optimiser steps timed per training loop")
    parser.add_argument("--poses", type=int, default=1000, help="test poses for S = 1 and comp3d accuracy")
    parser.add_argument("--poses-multi", type=int, default=120, help="test poses for the S = 20 accuracy")
    parser.add_argument("--ref-steps", type=int, default=1000, help="steps of the reference EM sampler")
    parser.add_argument("--paper-poses", type=int, default=850)
    parser.add_argument("--paper-hypo", type=int, default=200)
    parser.add_argument("--json", default="checkpoint/benchmark.json", help="write all rows and the device here")
    return parser


def _subset(data, n: int):
    return data.subset(torch.linspace(0, len(data) - 1, min(n, len(data))).long().numpy())


def main() -> None:
    args, overrides = parse(build_parser())
    device = dist.init()
    if dist.world_size() > 1:
        raise ToolkitError("run.benchmark measures one device; start it with python, not torchrun")
    sections = (args.sections.split(",") if args.sections
                else [s for s in SECTIONS if s != "paper" or device.type == "cuda"])
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise ToolkitError(f"unknown --sections {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    on_gpu = device.type == "cuda"
    variants_arg = args.variants or ("ours,ours bf16,ours compile" if on_gpu else "ours,ours compile")
    variants = [v.strip() for v in variants_arg.split(",") if v.strip()]
    if set(variants) - {"ours", "ours bf16", "ours compile"}:
        raise ToolkitError(f"--variants {variants_arg}: choose from ours, ours bf16, ours compile")
    batches = [int(b) for b in (args.batch or ("1000,10000,100000" if on_gpu else "1000,4000")).split(",")]
    net_config = config_from_args(args.config or U3D, overrides)
    sde = build_sde(net_config)
    ckpt = None
    if {"training", "accuracy", "bf16"} & set(sections):
        model, ck_config = load_model(checkpoint_path(args.ckpt_dir, best=True), None, device)
        ckpt = (model, ck_config)
    rows: list[Row] = []
    if "sampling" in sections or "paper" in sections:
        torch.manual_seed(0)
        net = build_model(net_config).to(device).eval()
        if "sampling" in sections:
            rows += sampling_throughput(net, sde, device, batches, args.steps, variants)
        if "paper" in sections:
            fast = build_sampler_config(net_config, sde, method="ddim", steps=50)
            fast.schedule, fast.eta = "logsnr", 1.0
            rows += paper_shape(net, sde, device, fast, args.paper_poses, args.paper_hypo, max(batches),
                                net_config.sampling.bf16)
    if ckpt is not None:
        model, ck_config = ckpt
        ck_sde = build_sde(ck_config)
        if "training" in sections:
            train_config = net_config.copy_and_resolve_references()
            train_config.data = ck_config.data
            rows += training_throughput(lambda: build_model(train_config), sde, train_config,
                                        load_data(ck_config, "train"), device, args.train_steps)
        test = load_data(ck_config, "test")
        if "accuracy" in sections:
            em = build_sampler_config(ck_config, ck_sde, method="em", steps=args.ref_steps)
            right_leg = list(PARTS["right_leg"])
            tests = {
                "est S=1": (_subset(test, args.poses), EvalOptions("est", em, hypo=1, seed=ck_config.seed)),
                "est S=20": (_subset(test, args.poses_multi), EvalOptions("est", em, hypo=20, seed=ck_config.seed)),
                "comp3d right leg": (_subset(test, args.poses),
                                     EvalOptions("comp3d", em, jlist=right_leg, seed=ck_config.seed)),
            }
            rows += accuracy_vs_nfe(model, ck_sde, ck_config, tests, default_candidates(args.ref_steps), device)
        if "bf16" in sections:
            em = build_sampler_config(ck_config, ck_sde, method="em", steps=200)
            rows += bf16_accuracy(model, ck_sde, ck_config, _subset(test, args.poses),
                                  EvalOptions("est", em, hypo=1, seed=ck_config.seed, progress=False), device)
    info = {"device": torch.cuda.get_device_name(device) if on_gpu else f"CPU ({platform.processor() or 'cpu'}, "
            f"{torch.get_num_threads()} threads)", "torch": torch.__version__,
            "network": f"hidden {net_config.model.hidden_dim}, {net_config.model.n_blocks} blocks"}
    table = PrettyTable(["section", "variant", "setting", "NFE", "value", "unit", "x baseline"])
    table.align = "l"
    for r in rows:
        table.add_row([r.section, r.variant, r.setting, f"{r.nfe:.0f}" if r.nfe else "",
                       f"{r.value:,.1f}" if r.value >= 100 else f"{r.value:.3g}", r.unit,
                       "" if r.ratio is None else f"{r.ratio:.3f}"])
    print(f"device: {info['device']}; torch {info['torch']}; throughput network: {info['network']}")
    print(table)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({**info, "rows": [asdict(r) for r in rows]}, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    guarded(main)
