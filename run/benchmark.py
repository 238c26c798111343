"""Speed and accuracy benchmark, every number side by side with the paper's own sampler or loop in one run.

    python -m run.benchmark --ckpt-dir checkpoint/demo --sections accuracy             # after make demo
    python -m run.benchmark --cmu-pack ../shared/data/cmu_h36m17.npz --paper-repo PATH  # CPU: ~12 min
    python -m run.benchmark --sections sampling,training --paper-repo PATH    # GPU: the U3D network
    python -m run.benchmark --sections detected --ckpt-dir RUN_GT,RUN_NOISE --detections cmu_sh_heldout_dt.pkl \
        --baseline RUN_REGRESSION
    python -m run.benchmark --sections distill --ckpt-dir RUN_distilled_eps,RUN_distilled

Sections:
  accuracy  P1 (the paper's) and root-aligned MPJPE against network evaluations, on real CMU data: the paper's
            samplers (--pflow = drift, and EM, N = 1000 on its grid) against their fast forms (drift_2m,
            ddim/dpm2m with eta 1) and the probability-flow ODE; EM with other seeds shows the noise floor;
            with --paper-repo the paper's own code runs on the same inputs as a cross-check
  bf16      the same P1 with the network under bf16 autocast (where bf16 is native) against fp32
  sampling  score-network pose-evaluations/s: the paper's code (--paper-repo) against ours, fp32 / bf16 / compile
  training  training samples/s: the paper's loop (--paper-repo) against ours, fp32 / bf16
  budget    the paper's recipe against the budget recipe, trained for each of --budget-minutes on CMU; the final
            checkpoint of each run scored on the test rows (no checkpoint chosen on the rows it is scored on)
  detected  est from ground-truth 2D and from detections (--detections, a row-aligned file in the run's data
            folder) on the same test rows, for every run of --ckpt-dir (a comma list): S = 1 and S = 20 with every
            one-pose aggregate; a regression baseline (--baseline RUN, lib/regression.py) at S = 1 beside them
  distill   runs with distilled students of one teacher (run.distill; a comma list): the paper's samplers, the fast
            ones and every run's students of 8 steps or fewer on est S = 1, est S = 20 and comp3d S = 1, and
            est S = 20 on as many validation rows (the held-out sequences twin candidates are chosen on)
The accuracy sections score --ckpt-dir's final checkpoint (checkpoint.pth), or, with --cmu-pack instead, convert
the CMU pack and train configs/subvp/cmu_budget.py for 4 minutes into checkpoint/benchmark_cmu (reused after).
--config.FIELD=VALUE sets the speed sections' network (--config, default the paper's U3D) and, where a checkpoint
does not fix the field, the scored runs too: --config.seed=1 samples every accuracy section with another seed
(default: the first run's).
PATH is a checkout of github.com/Embracing/GFPose (pip install scipy).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from prettytable import PrettyTable

from lib import dist
from lib.benchmark import Candidate, PaperCode, Row, Scenario, accuracy_rows, sampling_speed, training_speed
from lib.builders import build_model, build_sde
from lib.config_utils import apply_overrides, load_config, validate_config, with_fields
from lib.convert import Collector, convert_cmu
from lib.data import load_data, load_train_val
from lib.errors import ToolkitError
from lib.io import check_output, json_with, text_starting, unused_path, write_json, write_text
from lib.loader import LoadedPrior, fixed_by_checkpoint, load_prior
from lib.resolve import bf16_supported, fast_sampler, paper_sampler, resolve_sampler
from lib.sampling import SamplerConfig
from lib.train import train
from lib.visualize import plot_learning_curves
from run.common import Parser, add_config_arg, collect_overrides, config_flags, guarded, number, number_list, parse

TABLE_FLAG = config_flags("eval.detector_table")[0]  # the scored runs' reproj aggregate and robust conditioning
SECTIONS = ("accuracy", "bf16", "sampling", "training", "budget", "detected", "distill")
SPEED = ("sampling", "training")  # the sections that build --config's network (the others score trained runs)
DEFAULT_SECTIONS = SECTIONS[:4]  # the others train for an hour or need their runs: asked for by name
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "subvp"  # the repository's, wherever it runs from
PAPER_SCRIPT = Path(__file__).resolve().parent / "paper_reference.py"  # drives the paper's code (--paper-repo)
U3D = str(CONFIGS / "h36m_ncsnpp_deep_continuous.py")
U3D_CMU = str(CONFIGS / "cmu_u3d.py")
BUDGET_CMU = str(CONFIGS / "cmu_budget.py")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(description=__doc__)
    add_config_arg(parser, required=False)
    parser.add_argument("--ckpt-dir", help="trained run(s) for the accuracy sections, a comma list for 'detected' "
                                           "(default: checkpoint/demo when it is there)")
    parser.add_argument("--paper-repo", help="checkout of github.com/Embracing/GFPose: the paper's code as baseline")
    parser.add_argument("--cmu-pack", help="the CMU data pack (cmu_h36m17.npz): train a run on it for the accuracy "
                                           "sections, and the data of the budget section")
    parser.add_argument("--detections", help="detected section: detections file in the run's data folder")
    parser.add_argument("--det-format", default="sh", help="detected section: the detector's joints (lib/keypoints)")
    TABLE_FLAG.add_to(parser)
    parser.add_argument("--robust", action="store_true", help="detected section: also the rows from detections with "
                                                              "robust conditioning (lib/robust.py)")
    parser.add_argument("--baseline", metavar="RUN", help="detected section: a regression baseline's run folder "
                                                          "(lib/regression.py), scored beside the priors at S = 1")
    parser.add_argument("--sections", default=",".join(DEFAULT_SECTIONS),
                        help=f"comma list of {', '.join(SECTIONS)} (default: all but budget)")
    parser.add_argument("--budget-minutes", type=number_list("--budget-minutes", float, 0, 1e4, low_open=True),
                        default=[5.0, 10.0, 20.0], help="budget section: the budgets compared (default 5,10,20)")
    parser.add_argument("--poses", type=number("--poses", int, 1, 10 ** 7), default=1000,
                        help="test poses for S = 1 and comp3d")
    parser.add_argument("--poses-multi", type=number("--poses-multi", int, 1, 10 ** 6), default=100,
                        help="test poses for S = 20")
    parser.add_argument("--batch", type=number_list("--batch", int, 1, 10 ** 7),
                        help="comma list of sampling batch sizes (default: 1000,4000 on CPU, 1000,10000,100000 on GPU)")
    parser.add_argument("--steps", type=number("--steps", int, 1, 10 ** 4), default=20,
                        help="sampler steps timed per throughput measurement")
    parser.add_argument("--train-steps", type=number("--train-steps", int, 1, 10 ** 4), default=10,
                        help="optimiser steps timed per training loop")
    parser.add_argument("--json", help="all rows and the device (default: checkpoint/benchmark.json, or beside it "
                                       "when that exists)")
    parser.add_argument("--markdown", help="also write the tables as markdown to this file (e.g. docs/benchmark.md)")
    return parser


def _cmu_data(pack: str | None, config) -> None:
    """Convert the CMU pack into the config's data folder when it is not there yet."""
    if (Path(config.data.root) / config.data.train_file).is_file():
        return
    if not pack or not Path(pack).is_file():
        raise ToolkitError(f"{config.data.root}/{config.data.train_file} is not there: give --cmu-pack "
                           f"path/to/cmu_h36m17.npz to make it")
    col = Collector([], [])
    convert_cmu(col, [], Path(pack), seed=0)
    col.write(config.data.root, "cmu")


def _run_overrides(overrides: dict, sections: list[str]) -> dict:
    """The --config fields that reach the trained runs the accuracy sections score (the sampling seed, eval.*,
    sampler settings). A field of the network or its training sets only the speed sections' network: without one
    of those sections it cannot take effect."""
    if overrides and set(sections) <= {"budget"}:
        key = next(iter(overrides))
        raise ToolkitError(f"--config.{key}={overrides[key]} cannot take effect: the budget section trains the "
                           f"paper's recipe and the budget recipe as they are")
    fixed = [k for k in overrides if fixed_by_checkpoint(k)]
    if fixed and not set(SPEED) & set(sections):
        raise ToolkitError(f"--config.{fixed[0]}={overrides[fixed[0]]} cannot take effect: it sets the network of the "
                           f"sampling and training sections, and {','.join(sections)} score trained runs, whose "
                           f"checkpoints fix it")
    return {k: v for k, v in overrides.items() if k not in fixed}


def _load(run: Path, args, device: torch.device | str = "cpu") -> LoadedPrior:
    """A trained run the accuracy sections score, with the command line's --config fields (_run_overrides)."""
    return load_prior(run, device=device, overrides=args.run_overrides)


def _run_dirs(args) -> list[Path]:
    """--ckpt-dir's runs; else checkpoint/demo; else, with --cmu-pack, a 4-minute CMU run (trained once)."""
    if args.ckpt_dir:
        return [Path(p) for p in args.ckpt_dir.split(",") if p.strip()]
    if args.cmu_pack:
        run = Path("checkpoint/benchmark_cmu")
        if not (run / "checkpoint.pth").is_file():
            config = load_config(BUDGET_CMU)
            config.training.budget_minutes = 4.0
            _cmu_data(args.cmu_pack, config)
            train(config, run, overwrite=True)
        return [run]
    if (Path("checkpoint/demo") / "checkpoint.pth").is_file():
        return [Path("checkpoint/demo")]
    raise ToolkitError("the accuracy sections need a trained run: give --ckpt-dir RUN (make demo writes "
                       "checkpoint/demo) or --cmu-pack to train one on CMU")


def _budget(args, rows: list[Row]) -> Path:
    """The paper's recipe against the budget recipe, each trained once per budget on CMU (the budget recipe's
    schedule fits it; the paper's stops at it). Each run's final checkpoint is scored on the test rows (est S = 1,
    drift_2m 20 on its recipe's grid): no checkpoint is chosen on the rows it is scored on. The runs go into a new
    folder checkpoint/benchmark_budget[-k] (never one that exists), with budget_curve.png (the validation curves);
    returns the picture's path."""
    budgets = args.budget_minutes
    paper, ours = load_config(U3D_CMU), load_config(BUDGET_CMU)
    _cmu_data(args.cmu_pack, paper)
    paper.training.eval_every = 200
    curves, root = {}, unused_path(Path("checkpoint") / "benchmark_budget")
    for minutes in budgets:
        paper.training.max_minutes, ours.training.budget_minutes = minutes, minutes
        scores = {}
        for label, config, name in (("the paper's recipe (U3D)", paper, "budget_paper"), ("budget recipe", ours,
                                                                                           "budget")):
            run = root / f"{name}_{minutes:g}"
            summary = train(config, run)
            curves[f"{label}, {minutes:g} min"] = json.loads((run / "monitor.json").read_text())
            scores[label] = _final_p1(run)
            rows.append(Row("budget", label, f"{minutes:g} min", 0, scores[label], "P1 mm",
                            scores[label] / scores.get("the paper's recipe (U3D)", scores[label]),
                            {"steps": summary["step"], "samples/s": summary["samples_per_s"]}))
    plot_learning_curves(curves, root / "budget_curve.png")
    return root / "budget_curve.png"


def _final_p1(run: Path) -> float:
    """Test P1 of a run's final checkpoint: est S = 1 with its recipe's fast deterministic sampler."""
    prior = load_prior(run)
    model, config = prior.model, prior.config
    test = _subset(load_data(config, "test"), 1000)
    setting = Scenario("final", "est", {}, 1, test, [Candidate("fast", fast_sampler(config, True))])
    return accuracy_rows([setting], model, build_sde(config), config, torch.device("cpu"), progress=lambda _: None
                         )[0].value


def _subset(data, n: int):
    return data.subset(np.linspace(0, len(data) - 1, min(n, len(data))).round().astype(int))


def _plain(config, **given) -> SamplerConfig:
    """A sampler the benchmark names (lib/resolve.py), without the config's completion extras (resampling,
    guidance): the rows compare samplers, not those."""
    return resolve_sampler(config, given=given | {"resample": 0, "guidance": 0.0})


def _settings(config, test, poses: int, poses_multi: int) -> list[Scenario]:
    det = Candidate("drift 1000 (the paper's --pflow)", paper_sampler(config, True))
    em = Candidate("em 1000 (the paper's default)", paper_sampler(config, False))
    fast_det, fast_sto = fast_sampler(config, True), fast_sampler(config, False)
    # S = 1 is deterministic given the initial state, not across initial states: another draw is the noise floor
    det_floor = [Candidate("drift 1000, another initial state", det.sampler, 1)]
    drift = [Candidate(f"drift_2m {n}" + (" (--pflow --fast)" if n == fast_det.steps else ""),
                       dataclasses.replace(fast_det, steps=n)) for n in (10, 15, 20)]
    drift += [Candidate("drift_ddim 20", _plain(config, method="drift_ddim", steps=20)),
              Candidate("drift 100 (paper grid)", dataclasses.replace(det.sampler, steps=100))]
    ode = [Candidate("ode_heun 25 (probability-flow ODE)", _plain(config, method="ode_heun", steps=25)),
           Candidate("dpm2m 20, eta 0 (probability-flow ODE)", _plain(config, method="dpm2m", steps=20, eta=0.0))]
    em_floor = [Candidate("em 1000, another seed", em.sampler, 1), Candidate("em 1000, a third seed", em.sampler, 2)]
    sde = [Candidate(f"{m} {n}, eta 1" + (" (--fast)" if (m, n) == (fast_sto.method, fast_sto.steps) else ""),
                     _plain(config, method=m, steps=n, eta=1.0))
           for m, n in (("ddim", 25), ("ddim", 50), ("dpm2m", 25))]
    one, multi = _subset(test, poses), _subset(test, poses_multi)
    leg = {"jlist": "right_leg"}
    return [Scenario("est S=1, deterministic", "est", {}, 1, one, [det] + det_floor + drift + ode, True),
            Scenario("comp3d right leg, deterministic", "comp3d", leg, 1, one, [det] + det_floor + drift, True),
            Scenario("est S=1, stochastic", "est", {}, 1, one, [em] + em_floor + sde),
            Scenario("est S=20, stochastic", "est", {}, 20, multi, [em] + em_floor[:1] + sde),
            Scenario("comp3d right leg, stochastic", "comp3d", leg, 1, one, [em] + em_floor[:1] + sde)]


def _bf16_settings(config, test, poses: int, device: torch.device) -> list[Scenario]:
    """The fast samplers in fp32 against the same under bf16 autocast where it is native (same seeds)."""
    one = _subset(test, poses)
    fp32, bf16 = with_fields(config, {"fast.bf16": False}), with_fields(config, {"fast.bf16": True})
    return [Scenario(f"est S=1, {flag}", "est", {}, 1, one,
                    [Candidate(f"{cfg.method} {cfg.steps}, fp32", cfg),
                     Candidate(f"{cfg.method} {cfg.steps}, bf16", fast_sampler(bf16, deterministic, device))])
            for flag, deterministic in (("--pflow --fast", True), ("--fast", False))
            for cfg in [fast_sampler(fp32, deterministic, device)]]


def _accuracy(args, sections, device, paper, rows: list[Row]) -> dict:
    prior = _load(_run_dirs(args)[0], args, device)  # the final checkpoint: chosen on no rows
    model, config, path = prior.model, prior.config, prior.checkpoint
    sde, test = prior.sde, load_data(config, "test")
    print(f"accuracy on {config.data.root}, checkpoint {path}")
    if "accuracy" in sections:
        rows += accuracy_rows(_settings(config, test, args.poses, args.poses_multi), model, sde, config, device,
                              paper, path)
    if "bf16" in sections and bf16_supported(device):
        rows += [dataclasses.replace(r, section="bf16")
                 for r in accuracy_rows(_bf16_settings(config, test, args.poses, device), model, sde, config, device)]
    return {"checkpoint": str(path), "data": config.data.root}


def _detected(args, device, rows: list[Row]) -> None:
    """est from ground-truth 2D and from detections, on the same validation rows (held out of training) and test
    rows, every run of --ckpt-dir; with --robust also robustly from detections; the regression baseline of
    --baseline beside them (one pose per input: S = 1 only)."""
    if not args.detections:
        raise ToolkitError("the detected section needs --detections FILE (row-aligned detections in the run's data "
                           "folder; python -m run.prepare_data detections makes them for pose data)")
    runs = [(run, True) for run in _run_dirs(args)] + ([(Path(args.baseline), False)] if args.baseline else [])
    for run, prior in runs:
        loaded = _load(run, args, device)
        model, config = loaded.model, loaded.config
        if prior == bool(getattr(model, "predicts_pose", False)):
            raise ToolkitError(f"{run} holds a {config.model.name}: give priors to --ckpt-dir and a regression "
                               f"baseline to --baseline")
        det = with_fields(config, {"data.use_gt_2d": False, "data.det_file": args.detections,
                                   "data.det_format": args.det_format})
        sources = {"GT 2D": with_fields(config, {"data.use_gt_2d": True}), "detections": det}
        name = run.name if prior else f"{run.name} (regression baseline)"
        det_s, sto_s = fast_sampler(config, True), fast_sampler(config, False)
        settings = []
        for split in ("validation", "test"):
            data = {src: load_data(c, "test") if split == "test" else load_train_val(c)[1]
                    for src, c in sources.items()}
            if data["GT 2D"] is None or len(data["GT 2D"]) != len(data["detections"]):
                raise ToolkitError(f"{args.detections} must give every {split} row of {config.data.root} (the "
                                   f"detected section compares the same rows; validation needs training.select_on "
                                   f"val)")
            n = len(data["GT 2D"])
            idx = np.linspace(0, n - 1, min(args.poses, n)).round().astype(int)
            multi = idx[::max(len(idx) // args.poses_multi, 1)]
            for src, rows_ in data.items():
                robust = (False, True) if prior and args.robust and src == "detections" else (False,)
                for r in robust:
                    label = f"{src}{', robust' if r else ''}, {split}"
                    settings.append(Scenario(f"est S=1, {label}", "est", {}, 1, rows_.subset(idx),
                                            [Candidate(name, det_s)], section="detected", robust=r))
                    if prior:
                        settings.append(Scenario(f"est S=20, {label}", "est", {}, 20, rows_.subset(multi),
                                                [Candidate(name, sto_s)], section="detected", robust=r))
        rows += accuracy_rows(settings, model, build_sde(config), config, device)


def _distill(args, device, rows: list[Row]) -> None:
    """The students of one or more distilled runs of one teacher (--ckpt-dir, a comma list) against the paper's
    samplers and the fast ones, same inputs, one run; each student named by its run and output."""
    runs = []
    for run in _run_dirs(args):
        prior = _load(run, args, device)
        if not prior.students:
            raise ToolkitError(f"{prior.checkpoint} carries no students; make them with python -m run.distill "
                               f"--ckpt-dir RUN")
        if runs and any(not torch.equal(v, runs[0].state["model_state_dict"][k])
                        for k, v in prior.state["model_state_dict"].items()):
            raise ToolkitError(f"{prior.checkpoint} was distilled from another teacher than {runs[0].checkpoint}; "
                               f"compare the students of one teacher")
        runs.append(prior)
    model, config = runs[0].model, runs[0].config
    gt2d = with_fields(config, {"data.use_gt_2d": True})
    test, val = load_data(gt2d, "test"), load_train_val(gt2d)[1]
    one, multi = _subset(test, args.poses), _subset(test, args.poses_multi)
    det = [Candidate("drift 1000 (the paper's --pflow)", paper_sampler(config, True)),
           Candidate("drift_2m 20 (--pflow --fast)", dataclasses.replace(
               fast_sampler(config, True, student=False), steps=20))]
    sto = [Candidate("em 1000 (the paper's default)", paper_sampler(config, False)),
           Candidate("ddim 50, eta 1 (--fast)", _plain(config, method="ddim", steps=50, eta=1.0))]
    for prior in runs:
        scores = prior.state["distill"]["scores"]  # run.distill's, on the validation rows
        for n in sorted((s for s in prior.students if s <= 8), reverse=True):
            name = (f"{prior.checkpoint.parent.name}, {prior.config.distill.predict}; validation "
                    f"{scores[f'student {n}']['p1'] / scores['teacher']['p1']:.3f}x the teacher's fast sampler")
            det.append(Candidate(f"student, {n} steps ({name})", _plain(config, method="distilled", steps=n),
                                 students=prior.students))
            twin = ", its stochastic twin" if prior.students[n].stochastic is not None else ""  # what eta 1 runs
            sto.append(Candidate(f"student, {n} steps, eta 1{twin} ({name})",
                                 _plain(config, method="distilled", steps=n, eta=1.0), students=prior.students))
    leg = {"jlist": "right_leg"}
    settings = [Scenario("est S=1, deterministic", "est", {}, 1, one, det, section="distill"),
                Scenario("est S=20, stochastic", "est", {}, 20, multi, sto, section="distill"),
                Scenario("comp3d right leg S=1, deterministic", "comp3d", leg, 1, one, det,
                        completion=config.eval.completion, section="distill")]
    if val is not None:  # what the twin candidates were chosen on (distill.twin_candidates), beside the test rows
        settings.append(Scenario("est S=20, stochastic, validation rows", "est", {}, 20,
                                 _subset(val, args.poses_multi), sto, section="distill"))
    rows += accuracy_rows(settings, model, build_sde(config), config, device)


def _speed(args, sections, device, paper, rows: list[Row], net_config) -> None:
    sde = build_sde(net_config)
    if "sampling" in sections:
        torch.manual_seed(0)
        net = build_model(net_config).to(device).eval()
        batches = args.batch or ([1000, 10000, 100000] if device.type == "cuda" else [1000, 4000])
        variants = {"ours, fp32": net_config}
        if bf16_supported(device):
            variants["ours, bf16 autocast"] = with_fields(net_config, {"sampling.bf16": True})
        variants["ours, torch.compile"] = with_fields(net_config, {"sampling.compile": True})
        rows += sampling_speed(net, sde, net_config, device, batches, args.steps, variants, paper)
    if "training" in sections:  # on the data of the accuracy sections' run
        run = _run_dirs(args)[0]
        d = _load(run, args).config.data
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


MARKDOWN_HEAD = "# Benchmark"  # how a --markdown file of ours begins (another file there is never replaced)


def markdown(rows: list[Row], info: dict) -> str:
    """docs/benchmark.md: one table per section, written by the run that measured it."""
    out = [f"{MARKDOWN_HEAD}\n\nWritten by `{info['command']}` on {info['device']} (torch {info['torch']}); every row "
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
        if section == "budget" and "budget curve" in info:
            out.append(f"\n![P1 against minutes of training]({info['budget curve']})")
    return "\n".join(out) + "\n"


def _outputs(args) -> tuple[Path, Path | None]:
    """--json (by default checkpoint/benchmark.json, or a new name beside it, said) and --markdown, checked first."""
    json_path = Path(args.json) if args.json else unused_path(Path("checkpoint/benchmark.json"))
    if not args.json and json_path.name != "benchmark.json":
        print(f"note: checkpoint/benchmark.json exists; writing {json_path}")
    return (check_output(json_path, "--json", json_with("rows", "device")),
            check_output(args.markdown, "--markdown", text_starting(MARKDOWN_HEAD)) if args.markdown else None)


def main() -> None:
    args, raw = parse(build_parser())
    device = dist.init()
    if dist.world_size() > 1:
        raise ToolkitError("run.benchmark measures one device; start it with python, not torchrun")
    sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    if not sections or set(sections) - set(SECTIONS):
        raise ToolkitError(f"unknown --sections {args.sections}; choose from {', '.join(SECTIONS)}")
    json_path, md_path = _outputs(args)
    net_config = load_config(args.config or U3D)
    overrides = collect_overrides(net_config, raw, args, (TABLE_FLAG,))
    apply_overrides(net_config, overrides)
    args.run_overrides = _run_overrides(overrides, sections)
    validate_config(net_config)
    paper = PaperCode(Path(args.paper_repo), device, PAPER_SCRIPT) if args.paper_repo else None
    rows: list[Row] = []
    info = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else
            f"CPU ({platform.processor() or 'cpu'}, {torch.get_num_threads()} threads, bf16 native: "
            f"{bf16_supported(device)})", "torch": torch.__version__, "json": str(json_path),
            "network (speed)": f"hidden {net_config.model.hidden_dim}, {net_config.model.n_blocks} blocks",
            "command": " ".join(["python -m run.benchmark"] + sys.argv[1:]),
            "paper code": args.paper_repo or "not given"}
    if {"accuracy", "bf16"} & set(sections):
        info |= _accuracy(args, sections, device, paper, rows)
    _speed(args, sections, device, paper, rows, net_config)
    if "budget" in sections:
        curve = _budget(args, rows)
        info["budget curve"] = os.path.relpath(curve, md_path.parent) if md_path else str(curve)
    if "detected" in sections:
        _detected(args, device, rows)
    if "distill" in sections:
        _distill(args, device, rows)
    print(f"device: {info['device']}; torch {info['torch']}")
    print(_table(rows))
    write_json(json_path, {**info, "rows": [dataclasses.asdict(r) for r in rows]})
    print(f"wrote {json_path}")
    if md_path is not None:
        write_text(md_path, markdown(rows, info))
        print(f"wrote {md_path}")


if __name__ == "__main__":
    guarded(main)
