"""Speed and accuracy benchmark, every number side by side with the paper's own sampler or loop in one run.

    python -m run.benchmark --paper-repo PATH          # CPU: ~12 min; trains a small CMU model if needed
    python -m run.benchmark --ckpt-dir checkpoint/demo --sections accuracy
    python -m run.benchmark --sections sampling,training --paper-repo PATH    # GPU: the U3D network

Sections:
  accuracy  P1 (the paper's) and root-aligned MPJPE against network evaluations, on real CMU data: the paper's
            samplers (--pflow = drift, and EM, N = 1000 on its grid) against their fast forms (drift_2m,
            ddim/dpm2m with eta 1) and the probability-flow ODE; EM with other seeds shows the noise floor;
            with --paper-repo the paper's own code runs on the same inputs as a cross-check
  bf16      the same P1 with the network under bf16 autocast (where bf16 is native) against fp32
  sampling  score-network pose-evaluations/s: the paper's code (--paper-repo) against ours, fp32 / bf16 / compile
  training  training samples/s: the paper's loop (--paper-repo) against ours, fp32 / bf16
Without --ckpt-dir it converts the CMU pack (../shared/data) and trains configs/subvp/cmu_small.py (4 min) into
checkpoint/benchmark_cmu, or reuses that run. PATH is a checkout of github.com/Embracing/GFPose (pip install scipy).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from prettytable import PrettyTable

from lib import dist
from lib.benchmark import Candidate, PaperCode, Row, Setting, accuracy_rows, sampling_speed, training_speed
from lib.builders import (
    bf16_supported,
    build_model,
    build_sde,
    checkpoint_path,
    fast_sampler,
    load_data,
    load_model,
    paper_sampler,
    stored_config,
)
from lib.checkpoint import load_checkpoint
from lib.config_utils import apply_overrides, load_config, with_fields
from lib.convert import Collector, convert_cmu
from lib.errors import ToolkitError
from lib.io import check_writable, write_json, write_text
from lib.sampling import SamplerConfig
from lib.train import train
from lib.visualize import plot_learning_curves
from run.common import Parser, add_config_arg, collect_overrides, guarded, parse

SECTIONS = ("accuracy", "bf16", "sampling", "training", "budget")
DEFAULT_SECTIONS = SECTIONS[:4]  # budget trains for 55 minutes: asked for by name
U3D = "configs/subvp/h36m_ncsnpp_deep_continuous.py"
CMU_CONFIG = "configs/subvp/cmu_small.py"
U3D_CMU = "configs/subvp/cmu_u3d.py"
BUDGET_CMU = "configs/subvp/cmu_budget.py"


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(description=__doc__)
    add_config_arg(parser, required=False)
    parser.add_argument("--ckpt-dir", help="trained run for the accuracy sections (default: train one on CMU)")
    parser.add_argument("--paper-repo", help="checkout of github.com/Embracing/GFPose: the paper's code as baseline")
    parser.add_argument("--cmu-pack", default="../shared/data/cmu_h36m17.npz", help="the CMU data pack")
    parser.add_argument("--sections", default=",".join(DEFAULT_SECTIONS),
                        help=f"comma list of {', '.join(SECTIONS)} (default: all but budget)")
    parser.add_argument("--budget-minutes", default="5,10,20", help="budget section: the budgets compared")
    parser.add_argument("--poses", type=int, default=1000, help="test poses for S = 1 and comp3d")
    parser.add_argument("--poses-multi", type=int, default=100, help="test poses for S = 20")
    parser.add_argument("--batch", help="comma list of sampling batch sizes (default: 1000,4000 on CPU, "
                                        "1000,10000,100000 on GPU)")
    parser.add_argument("--steps", type=int, default=20, help="sampler steps timed per throughput measurement")
    parser.add_argument("--train-steps", type=int, default=10, help="optimiser steps timed per training loop")
    parser.add_argument("--json", default="checkpoint/benchmark.json", help="all rows and the device")
    parser.add_argument("--markdown", default="docs/benchmark.md", help="the tables, for the docs ('' to skip)")
    return parser


def _cmu_data(pack: str, config) -> None:
    """Convert the CMU pack into the config's data folder when it is not there yet."""
    if (Path(config.data.root) / config.data.train_file).is_file():
        return
    if not Path(pack).is_file():
        raise ToolkitError(f"the CMU pack {pack} is not here; give --cmu-pack, or --ckpt-dir of a trained run")
    col = Collector([], [])
    convert_cmu(col, [], Path(pack), seed=0)
    col.write(config.data.root, "cmu")


def _cmu_run(pack: str) -> Path:
    """checkpoint/benchmark_cmu: reused when complete, else the CMU data converted and the small model trained."""
    run = Path("checkpoint/benchmark_cmu")
    if (run / "best_model.pth").is_file():
        return run
    config = load_config(CMU_CONFIG)
    _cmu_data(pack, config)
    train(config, run, overwrite=True)
    return run


def _budget(args, rows: list[Row]) -> None:
    """The paper's recipe for the longest budget (its monitor read at each budget) against the budget recipe run
    once per budget (its schedule fits the budget), on CMU; single-hypothesis P1 of the monitor (drift_2m 20,
    1000 test poses). Writes docs/budget.md and the learning curves docs/budget_curve.png."""
    budgets = [float(b) for b in args.budget_minutes.split(",")]
    paper, ours = load_config(U3D_CMU), load_config(BUDGET_CMU)
    _cmu_data(args.cmu_pack, paper)
    paper.training.max_minutes, paper.training.eval_every = max(budgets), 200
    curves = {"paper's recipe": _train_history(paper, "budget_paper")}
    for minutes in budgets:
        ours.training.budget_minutes = minutes
        curves[f"budget recipe, {minutes:g} min"] = _train_history(ours, f"budget_{minutes:g}")
    for minutes in budgets:
        base = min(h["p1"] for h in curves["paper's recipe"] if h["minutes"] <= minutes * 1.02)
        best = min(h["p1"] for h in curves[f"budget recipe, {minutes:g} min"])
        rows += [Row("budget", "the paper's recipe (U3D)", f"{minutes:g} min", 0, base, "P1 mm", 1.0),
                 Row("budget", "budget recipe", f"{minutes:g} min", 0, best, "P1 mm", best / base)]
    plot_learning_curves(curves, Path("docs/budget_curve.png"))


def _train_history(config, name: str) -> list[dict]:
    run = Path("checkpoint") / name
    train(config, run, overwrite=True)
    return json.loads((run / "monitor.json").read_text())


def _subset(data, n: int):
    return data.subset(np.linspace(0, len(data) - 1, min(n, len(data))).round().astype(int))


def _settings(config, test, poses: int, poses_multi: int) -> list[Setting]:
    det = Candidate("drift 1000 (the paper's --pflow)", paper_sampler(config, True))
    em = Candidate("em 1000 (the paper's default)", paper_sampler(config, False))
    fast_det, fast_sto = fast_sampler(config, True), fast_sampler(config, False)
    # S = 1 is deterministic given the initial state, not across initial states: another draw is the noise floor
    det_floor = [Candidate("drift 1000, another initial state", det.sampler, 1)]
    drift = [Candidate(f"drift_2m {n}" + (" (--pflow --fast)" if n == fast_det.steps else ""),
                       dataclasses.replace(fast_det, steps=n)) for n in (10, 15, 20)]
    drift += [Candidate("drift_ddim 20", SamplerConfig(method="drift_ddim", steps=20)),
              Candidate("drift 100 (paper grid)", dataclasses.replace(det.sampler, steps=100))]
    ode = [Candidate("ode_heun 25 (probability-flow ODE)", SamplerConfig(method="ode_heun", steps=25)),
           Candidate("dpm2m 20, eta 0 (probability-flow ODE)", SamplerConfig(method="dpm2m", steps=20))]
    em_floor = [Candidate("em 1000, another seed", em.sampler, 1), Candidate("em 1000, a third seed", em.sampler, 2)]
    sde = [Candidate(f"{m} {n}, eta 1" + (" (--fast)" if (m, n) == (fast_sto.method, fast_sto.steps) else ""),
                     SamplerConfig(method=m, steps=n, eta=1.0)) for m, n in (("ddim", 25), ("ddim", 50), ("dpm2m", 25))]
    one, multi = _subset(test, poses), _subset(test, poses_multi)
    leg = {"jlist": "right_leg"}
    return [Setting("est S=1, deterministic", "est", {}, 1, one, [det] + det_floor + drift + ode, True),
            Setting("comp3d right leg, deterministic", "comp3d", leg, 1, one, [det] + det_floor + drift, True),
            Setting("est S=1, stochastic", "est", {}, 1, one, [em] + em_floor + sde),
            Setting("est S=20, stochastic", "est", {}, 20, multi, [em] + em_floor[:1] + sde),
            Setting("comp3d right leg, stochastic", "comp3d", leg, 1, one, [em] + em_floor[:1] + sde)]


def _bf16_settings(config, test, poses: int) -> list[Setting]:
    """The fast samplers in fp32 against the same under bf16 autocast (same seeds)."""
    one = _subset(test, poses)
    return [Setting(f"est S=1, {flag}", "est", {}, 1, one, [Candidate(f"{cfg.method} {cfg.steps}, fp32", cfg),
                                                            Candidate(f"{cfg.method} {cfg.steps}, bf16", cfg, 0, True)])
            for flag, cfg in (("--pflow --fast", fast_sampler(config, True)), ("--fast", fast_sampler(config, False)))]


def _accuracy(args, sections, device, paper, rows: list[Row]) -> dict:
    ckpt_dir = Path(args.ckpt_dir) if args.ckpt_dir else _cmu_run(args.cmu_pack)
    path = checkpoint_path(ckpt_dir, best=True)
    model, config = load_model(path, None, device)
    sde, test = build_sde(config), load_data(config, "test")
    print(f"accuracy on {config.data.root}, checkpoint {path}")
    if "accuracy" in sections:
        rows += accuracy_rows(_settings(config, test, args.poses, args.poses_multi), model, sde, config, device,
                              paper, path)
    if "bf16" in sections and bf16_supported(device):
        rows += [dataclasses.replace(r, section="bf16")
                 for r in accuracy_rows(_bf16_settings(config, test, args.poses), model, sde, config, device)]
    return {"checkpoint": str(path), "data": config.data.root}


def _speed(args, sections, device, paper, rows: list[Row], net_config) -> None:
    sde = build_sde(net_config)
    if "sampling" in sections:
        torch.manual_seed(0)
        net = build_model(net_config).to(device).eval()
        batches = [int(b) for b in (args.batch or ("1000,10000,100000" if device.type == "cuda"
                                                   else "1000,4000")).split(",")]
        variants = {"ours, fp32": net_config}
        if bf16_supported(device):
            variants["ours, bf16 autocast"] = with_fields(net_config, {"sampling.bf16": True})
        variants["ours, torch.compile"] = with_fields(net_config, {"sampling.compile": True})
        rows += sampling_speed(net, sde, net_config, device, batches, args.steps, variants, paper)
    if "training" in sections:  # on the data of --ckpt-dir's run, else CMU
        d = (stored_config(load_checkpoint(checkpoint_path(args.ckpt_dir, True)), args.ckpt_dir) if args.ckpt_dir
             else load_config(CMU_CONFIG)).data
        train_cfg = net_config.copy_and_resolve_references()
        train_cfg.data = d
        variants = {"ours, fp32": False} | ({"ours, bf16 autocast": True} if bf16_supported(device) else {})
        rows += training_speed(train_cfg, load_data(train_cfg, "train"), sde, device, args.train_steps, paper, d.root,
                               d.train_file, variants)


def _table(rows: list[Row]) -> PrettyTable:
    table = PrettyTable(["section", "setting", "variant", "NFE", "value", "unit", "x baseline", "more"])
    table.align = "l"
    for r in rows:
        more = ", ".join(f"{k} {v:.3g}" for k, v in r.extra.items() if k != "seconds")
        table.add_row([r.section, r.setting, r.variant, f"{r.nfe:.0f}" if r.nfe else "",
                       f"{r.value:,.1f}" if r.value >= 100 else f"{r.value:.3g}", r.unit,
                       "" if r.ratio is None else f"{r.ratio:.3f}", more])
    return table


def markdown(rows: list[Row], info: dict) -> str:
    """docs/benchmark.md: one table per section, written by the run that measured it."""
    out = [f"# Benchmark\n\nWritten by `{info['command']}` on {info['device']} (torch {info['torch']}); every row "
           f"comes from that one run ({info['json']}). Ratios are to the first row of each setting: the paper's "
           f"sampler (accuracy), the paper's own code (speed; ours alone when it was not given) or the paper's "
           f"training recipe in the same minutes (budget).\n"]
    for section in dict.fromkeys(r.section for r in rows):
        sub = [r for r in rows if r.section == section]
        keys = list(dict.fromkeys(k for r in sub for k in r.extra if k != "seconds"))
        head = ["setting", "sampler / loop", "NFE", sub[0].unit, "x baseline", *keys, "seconds"]
        out.append(f"\n## {section}\n\n| " + " | ".join(head) + " |\n|" + " --- |" * len(head))
        for r in sub:
            cells = [r.setting, r.variant, f"{r.nfe:.0f}" if r.nfe else "", f"{r.value:,.1f}",
                     "" if r.ratio is None else f"{r.ratio:.3f}",
                     *(f"{r.extra[k]:.3f}" if k in r.extra else "" for k in keys),
                     f"{r.extra['seconds']:.1f}" if "seconds" in r.extra else ""]
            out.append("| " + " | ".join(cells) + " |")
        if section == "budget":
            out.append("\n![P1 against minutes of training](budget_curve.png)")
    return "\n".join(out) + "\n"


def main() -> None:
    args, raw = parse(build_parser())
    device = dist.init()
    if dist.world_size() > 1:
        raise ToolkitError("run.benchmark measures one device; start it with python, not torchrun")
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if set(sections) - set(SECTIONS):
        raise ToolkitError(f"unknown --sections {args.sections}; choose from {', '.join(SECTIONS)}")
    json_path = check_writable(args.json, "--json")
    md_path = check_writable(args.markdown, "--markdown") if args.markdown else None
    net_config = load_config(args.config or U3D)
    apply_overrides(net_config, collect_overrides(net_config, raw, args, ()))
    paper = PaperCode(Path(args.paper_repo), device) if args.paper_repo else None
    rows: list[Row] = []
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else
            f"CPU ({platform.processor() or 'cpu'}, {torch.get_num_threads()} threads, bf16 native: "
            f"{bf16_supported(device)})", "torch": torch.__version__, "json": args.json,
            "network (speed)": f"hidden {net_config.model.hidden_dim}, {net_config.model.n_blocks} blocks",
            "command": " ".join(["python -m run.benchmark"] + sys.argv[1:]),
            "paper code": args.paper_repo or "not given"}
    if {"accuracy", "bf16"} & set(sections):
        info |= _accuracy(args, sections, device, paper, rows)
    _speed(args, sections, device, paper, rows, net_config)
    if "budget" in sections:
        _budget(args, rows)
    print(f"device: {info['device']}; torch {info['torch']}")
    print(_table(rows))
    write_json(json_path, {**info, "rows": [dataclasses.asdict(r) for r in rows]})
    print(f"wrote {json_path}")
    if md_path is not None:
        write_text(md_path, markdown(rows, info))
        print(f"wrote {md_path}")


if __name__ == "__main__":
    guarded(main)
