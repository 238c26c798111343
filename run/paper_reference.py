"""Run the paper's own code on our weights and data, for run.benchmark's side-by-side baselines.

    python run/paper_reference.py --repo PATH --ckpt best_model.pth --hidden 256 --embed 128 \\
        sample --inputs in.npz --out out.npz --task est --pflow --steps 1000 --batch 1000
    python run/paper_reference.py --repo PATH --ckpt checkpoint.pth ... train --data-root data/cmu --steps 10

PATH is a checkout of github.com/Embracing/GFPose (not part of this toolkit; its code is not copied here). This
script imports nothing from the toolkit, because the paper's package is also called `lib`: it is run as a file,
with the paper's checkout first on sys.path. It calls the paper's own sampler (`get_sampling_fn`: the PC sampler
with the Euler-Maruyama predictor, probability_flow for --pflow) and its own training step (`get_step_fn`,
`H36MDataset3D` through a DataLoader), loaded with the toolkit's weights. It needs scipy, which the paper's
modules import (pip install scipy); the paper's model module imports torchvision only for names it never uses,
so a placeholder is installed where torchvision is missing.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import torch


def _import_paper(repo: str):
    if not (Path(repo) / "lib" / "algorithms" / "advanced" / "sampling.py").is_file():
        sys.exit(f"error: {repo} is not a checkout of Embracing/GFPose (no lib/algorithms/advanced/sampling.py)")
    sys.path.insert(0, str(Path(repo).resolve()))
    try:
        import torchvision.utils  # noqa: F401
    except ImportError:  # the paper's model.py imports make_grid / save_image and never calls them
        stub = types.ModuleType("torchvision.utils")
        stub.make_grid = stub.save_image = None
        sys.modules.setdefault("torchvision", types.ModuleType("torchvision")).utils = stub
        sys.modules["torchvision.utils"] = stub
    from lib.algorithms.advanced import losses, sampling, sde_lib
    from lib.algorithms.advanced.model import ScoreModelFC_Adv
    from lib.algorithms.ema import ExponentialMovingAverage

    from configs.subvp.h36m_ncsnpp_deep_continuous import get_config
    return types.SimpleNamespace(get_config=get_config, losses=losses, sampling=sampling, sde_lib=sde_lib,
                                 Model=ScoreModelFC_Adv, EMA=ExponentialMovingAverage)


def _model(paper, args, config, device):
    model = paper.Model(config, n_joints=17, joint_dim=3, hidden_dim=args.hidden, embed_dim=args.embed, cond_dim=3,
                        n_blocks=args.blocks).to(device)
    ema = paper.EMA(model.parameters(), decay=config.model.ema_rate)
    if args.ckpt:
        state = torch.load(args.ckpt, map_location=device, weights_only=True)
        model.load_state_dict({k.removeprefix("module."): v for k, v in state["model_state_dict"].items()})
        if "ema" in state:
            ema.load_state_dict(state["ema"])
        else:
            ema = paper.EMA(model.parameters(), decay=config.model.ema_rate)
    return model, ema


def sample(paper, args, config, device) -> dict:
    """The paper's sampler on inputs.npz (network space): `condition` [B, J, 3], optional `x_init`, `denoise_x`."""
    data = np.load(args.inputs)
    condition = torch.from_numpy(data["condition"]).float().to(device)
    model, ema = _model(paper, args, config, device)
    model.eval()
    ema.copy_to(model.parameters())
    sde = paper.sde_lib.subVPSDE(beta_min=config.model.beta_min, beta_max=config.model.beta_max, N=args.steps,
                                 T=args.t_start)
    if "x_init" in data.files:  # the prior draw replaced by a given initial state (the golden outputs' x_T)
        x_init = torch.from_numpy(data["x_init"]).float()
        sde.prior_sampling = lambda shape: x_init[:shape[0]]
    config.sampling.probability_flow = args.pflow
    fn = paper.sampling.get_sampling_fn(config, sde, (args.batch, 17, 3), lambda x: x, 1e-3, device=device)
    task = types.SimpleNamespace(task=args.task, jlist=args.jlist, randj=None)
    denoise_x = torch.from_numpy(data["denoise_x"]).float().to(device) if "denoise_x" in data.files else None
    torch.manual_seed(args.seed)
    fn(model, condition=condition[:args.batch], denoise_x=None if denoise_x is None else denoise_x[:args.batch],
       args=task)  # warm-up (one-time costs stay out of the timing)
    if device.type == "cuda":
        torch.cuda.synchronize()
    outs, start = [], time.perf_counter()
    for lo in range(0, len(condition), args.batch):
        _, x = fn(model, condition=condition[lo:lo + args.batch],
                  denoise_x=None if denoise_x is None else denoise_x[lo:lo + args.batch], args=task)
        outs.append(x)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    np.savez(args.out, x=np.concatenate(outs))
    return {"seconds": seconds, "poses": len(condition), "steps": args.steps}


def train(paper, args, config, device) -> dict:
    """The paper's training loop body (DataLoader over H36MDataset3D, get_step_fn) for --steps steps, timed after
    two warm-up steps. The data folder must hold <prefix>_train.pkl in the H36M-Toolbox layout."""
    from lib.dataset.h36m import H36MDataset3D  # the paper's

    config.training.batch_size = args.batch
    work = Path(tempfile.mkdtemp())
    (work / "data" / "h36m").mkdir(parents=True)
    (work / "data" / "h36m" / "h36m_train.pkl").symlink_to(Path(args.data_root).resolve() / args.train_file)
    os.chdir(work)  # the paper reads data/h36m/h36m_train.pkl relative to the working folder
    dataset = H36MDataset3D(Path("data", "h36m"), "train", gt2d=True, read_confidence=False,
                            cond_3d_prob=config.training.cond_3d_prob)
    loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch, shuffle=True, num_workers=4,
                                         pin_memory=True)
    model, ema = _model(paper, argparse.Namespace(**{**vars(args), "ckpt": None}), config, device)
    sde = paper.sde_lib.subVPSDE(beta_min=config.model.beta_min, beta_max=config.model.beta_max, N=1000)
    state = {"optimizer": paper.losses.get_optimizer(config, model.parameters()), "model": model, "ema": ema,
             "step": 0}
    step_fn = paper.losses.get_step_fn(sde, train=True, optimize_fn=paper.losses.optimization_manager(config),
                                       reduce_mean=False, continuous=True, likelihood_weighting=False)
    model.train()
    done, start = 0, None
    while done < args.steps + 2:
        for data_2d, labels_3d in loader:
            if done == 2:
                start = time.perf_counter()
            scale = config.training.data_scale
            step_fn(state, batch=labels_3d.to(device) * scale, condition=data_2d.to(device) * scale)
            done += 1
            if done == args.steps + 2:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "steps": args.steps, "samples_per_s": args.steps * args.batch / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", required=True, help="checkout of github.com/Embracing/GFPose")
    parser.add_argument("--ckpt", help="a checkpoint of ours or an official one (EMA weights are used)")
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--embed", type=int, default=512)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--report", required=True, help="JSON file for the timings")
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("sample")
    s.add_argument("--inputs", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--task", default="est", choices=("est", "gen", "den", "comp2d", "comp3d"))
    s.add_argument("--jlist", help="comp2d / comp3d: missing joints, e.g. 1,2,3")
    s.add_argument("--pflow", action="store_true")
    s.add_argument("--steps", type=int, default=1000)
    s.add_argument("--t-start", type=float, default=1.0)
    s.add_argument("--batch", type=int, default=1000)
    s.add_argument("--seed", type=int, default=0)
    t = sub.add_parser("train")
    t.add_argument("--data-root", required=True)
    t.add_argument("--train-file", default="cmu_train.pkl")
    t.add_argument("--steps", type=int, default=10)
    t.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    report_path = Path(args.report).resolve()
    paper = _import_paper(args.repo)
    device = torch.device(args.device)
    config = paper.get_config()
    config.device = device
    report = (sample if args.mode == "sample" else train)(paper, args, config, device)
    report_path.write_text(json.dumps(report))


if __name__ == "__main__":
    main()
