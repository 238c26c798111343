"""Draw results.npz headless: a PNG (final step), a GIF / MP4 of the diffusion, or an offline HTML viewer.

    python -m run.visualize --num-human 1 --num-hypo 80 --vis-gt        # the paper's command: last results
    python -m run.visualize --input checkpoint/demo/results.npz --num-human 4 --num-hypo 5 --vis-gt --out est.png
    python -m run.visualize --input checkpoint/demo/results.npz --num-human 2 --out est.gif   # needs --save trajs
    python -m run.visualize --input checkpoint/demo/results.npz --num-human 3 --vis-gt --out est.html

Without --input it draws the results the last evaluation wrote; without --out it writes an interactive page
next to them (the paper's viewer is an interactive window).
"""
from __future__ import annotations

import sys
from pathlib import Path

from lib.errors import ToolkitError
from lib.io import check_output, last_results_pointer
from lib.visualize import drawn_here, load_scene, render_html, render_images
from run.common import Parser, guarded, number

FORMATS = (".png", ".gif", ".mp4", ".html")


def _input(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    pointer = last_results_pointer()
    if not pointer.is_file():
        raise ToolkitError(f"no --input and no earlier evaluation recorded in {pointer}; run "
                           f"python -m run.eval_fc_mp_adv_3d ... first, or pass --input results.npz")
    return Path(pointer.read_text().strip())


def main() -> None:
    parser = Parser(description=__doc__)
    parser.add_argument("--input", help="results.npz of run.eval_fc_mp_adv_3d / run.denoise_fc_adv_3d "
                                        "(default: the last evaluation's)")
    parser.add_argument("--num-human", type=number("--num-human", int, 1), help="humans to draw, the first N "
                        "(default: up to 4)")
    parser.add_argument("--num-hypo", type=number("--num-hypo", int, 1), default=1,
                        help="hypotheses overlaid per human")
    parser.add_argument("--vis-gt", action="store_true", help="draw the ground truth (green)")
    parser.add_argument("--num-perline", type=number("--num-perline", int, 1), default=4,
                        help="humans per row of the grid")
    parser.add_argument("--aggregate", help="also draw this aggregate pose (jpma, median, mean, prior), its joints "
                                            "coloured by uncertainty (yellow certain, purple uncertain)")
    parser.add_argument("--fps", type=number("--fps", int, 1, 1000), help="animation frames per second (default 10)")
    parser.add_argument("--out", help=f"output file: {', '.join(FORMATS)} (default: an .html page next to the input)")
    args = parser.parse_args()
    inp = _input(args.input)
    out = Path(args.out) if args.out else inp.with_suffix(".html")
    if out.suffix not in FORMATS:
        raise ToolkitError(f"--out {out}: unknown format '{out.suffix}'; choose {', '.join(FORMATS)}")
    if args.fps is not None and out.suffix in (".png", ".html"):
        print(f"warning: --fps has no effect on a {out.suffix} (it sets the frame rate of .gif and .mp4)",
              file=sys.stderr)
    check_output(out, "--out", drawn_here)
    scene = load_scene(inp, args.num_human, args.num_hypo, args.vis_gt, args.aggregate)
    humans, hypo = scene.pred.shape[1:3]
    if (args.num_human or humans) > humans or args.num_hypo > hypo:
        print(f"note: {inp} holds {humans} humans x {hypo} hypotheses; drawing those")
    if out.suffix in (".gif", ".mp4") and scene.pred.shape[0] < 2:
        raise ToolkitError(f"{inp} holds only the final step; rerun the evaluation with --save trajs "
                           f"to animate the diffusion, or write a .png")
    frames = render_html(scene, out, args.num_perline) if out.suffix == ".html" else \
        render_images(scene, out, args.num_perline, args.fps or 10)
    print(f"wrote {out} ({frames} frame{'s' if frames > 1 else ''}, {out.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    guarded(main)
