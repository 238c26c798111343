"""Draw results.npz headless: a PNG (final step), a GIF / MP4 of the diffusion, or an offline HTML viewer.

    python -m run.visualize --input checkpoint/demo/results.npz --num-human 4 --num-hypo 5 --vis-gt --out est.png
    python -m run.visualize --input checkpoint/demo/results.npz --num-human 2 --out est.gif   # needs --save trajs
    python -m run.visualize --input checkpoint/demo/results.npz --num-human 3 --vis-gt --out est.html
"""
from __future__ import annotations

import argparse
from pathlib import Path

from lib.errors import ToolkitError
from lib.visualize import load_scene, render_html, render_images
from run.common import guarded

FORMATS = (".png", ".gif", ".mp4", ".html")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", required=True, help="results.npz of run.eval_fc_mp_adv_3d / run.denoise_fc_adv_3d")
    parser.add_argument("--num-human", type=int, help="humans to draw, the first N (default: up to 4)")
    parser.add_argument("--num-hypo", type=int, default=1, help="hypotheses overlaid per human")
    parser.add_argument("--vis-gt", action="store_true", help="draw the ground truth (green)")
    parser.add_argument("--num-perline", type=int, default=4, help="humans per row of the grid")
    parser.add_argument("--fps", type=int, default=10, help="animation frames per second")
    parser.add_argument("--out", required=True, help=f"output file: {', '.join(FORMATS)}")
    args = parser.parse_args()
    out = Path(args.out)
    if out.suffix not in FORMATS:
        raise ToolkitError(f"--out {out}: unknown format '{out.suffix}'; choose {', '.join(FORMATS)}")
    if args.num_perline < 1 or args.fps < 1:
        raise ToolkitError("--num-perline and --fps must be >= 1")
    scene = load_scene(args.input, args.num_human, args.num_hypo, args.vis_gt)
    if out.suffix in (".gif", ".mp4") and scene.pred.shape[0] < 2:
        raise ToolkitError(f"{args.input} holds only the final step; rerun the evaluation with --save trajs "
                           f"to animate the diffusion, or write a .png")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".html":
        frames = render_html(scene, out, args.num_perline)
    else:
        frames = render_images(scene, out, args.num_perline, args.fps)
    print(f"wrote {out} ({frames} frame{'s' if frames > 1 else ''}, {out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    guarded(main)
