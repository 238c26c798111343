"""Headless pictures of results.npz (docs/design.md, 'Results files'): PNG / GIF / MP4 with matplotlib, and one
self-contained interactive HTML page with plotly (library inlined, works offline).

Viewing convention of the paper's viewer: network x stays horizontal, image y (pointing down) becomes
the vertical axis pointing up, and depth z goes into the screen, so people stand upright.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib import animation
from matplotlib.figure import Figure

from lib.errors import ToolkitError
from lib.io import atomic_path, atomic_write, load_npz, not_found, write_text
from lib.skeleton import BONES, LEFT_JOINTS, RIGHT_JOINTS

COLOURS = {"left": "#1f77b4", "right": "#d62728", "centre": "#444444", "gt": "#2ca02c", "input": "#9467bd"}


def bone_side(a: int, b: int) -> str:
    if a in LEFT_JOINTS or b in LEFT_JOINTS:
        return "left"
    if a in RIGHT_JOINTS or b in RIGHT_JOINTS:
        return "right"
    return "centre"


SIDES = {side: [bone for bone in BONES if bone_side(*bone) == side] for side in ("left", "right", "centre")}


@dataclass
class Scene:
    """What is drawn, already in view coordinates (x right, y depth, z up)."""

    pred: np.ndarray                 # [T, H, S, 17, 3] hypotheses over the saved diffusion steps
    gt: np.ndarray | None            # [H, 17, 3]
    input2d: np.ndarray | None       # [H, 17, 3] (or [T, H, 17, 3] per frame) the 2D input, drawn in an image plane
                                     # behind the person
    missing: np.ndarray | None       # [H, 17] bool
    aggregate: np.ndarray | None = None    # [H, 17, 3] one pose made from the hypotheses (lib/aggregate.py)
    uncertainty: np.ndarray | None = None  # [H, 17] its per-joint uncertainty (spread of the hypotheses)


def to_view(pose: np.ndarray) -> np.ndarray:
    """Network coordinates [..., 3] (x right, y down, z depth) -> view (x right, y depth, z up)."""
    return np.stack([pose[..., 0], pose[..., 2], -pose[..., 1]], -1)


def drawn_here(path: Path) -> bool:
    """Whether a file is a drawing of this toolkit's kind for its suffix (lib/io.check_output): a PNG from matplotlib
    (its 'Software' text chunk), a GIF, an MP4, or an HTML page with plotly inlined; a user's other files are not."""
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError:
        return False
    return {".png": head.startswith(b"\x89PNG") and b"Matplotlib" in head, ".gif": head.startswith(b"GIF8"),
            ".mp4": head[4:8] == b"ftyp", ".html": b"plotly" in head.lower()}.get(path.suffix, False)


def load_scene(path: str | Path, num_human: int | None, num_hypo: int, vis_gt: bool, aggregate: str | None = None
               ) -> Scene:
    """Read results.npz, check shapes, pick the first humans and hypotheses, make poses root-relative; with
    `aggregate`, also that aggregate pose and the per-joint uncertainty."""
    path = Path(path)
    if not path.is_file():
        raise ToolkitError(f"{not_found(path)}; make it with python -m run.eval_fc_mp_adv_3d ... "
                           f"(add --save trajs for animations)")
    arrays = load_npz(path, "results.npz")
    bad = [k for k, v in arrays.items() if k not in ("aggregate_names", "frames") and v.dtype.kind not in "fiub"]
    if bad:
        raise ToolkitError(f"{path}: {', '.join(bad)} must hold numbers (found {arrays[bad[0]].dtype})")
    if "pose3d" in arrays:
        for flag, given in (("--vis-gt", vis_gt), ("--aggregate", aggregate is not None)):
            if given:
                raise ToolkitError(f"{flag}: {path} is a lift's poses.npz, which holds one pose per person and no "
                                   f"ground truth; drop {flag} (it is for evaluation results)")
        return _lift_scene(arrays, num_human, path)
    if "pred3d" not in arrays:
        raise ToolkitError(f"{path} has no 'pred3d' (found {', '.join(arrays) or 'nothing'}); expected the "
                           f"results.npz of run.eval_fc_mp_adv_3d / run.denoise_fc_adv_3d or run.lift's poses.npz")
    pred = arrays["pred3d"]
    if pred.ndim != 5 or pred.shape[-2:] != (17, 3):
        raise ToolkitError(f"{path}: pred3d has shape {pred.shape}, expected [T, N, S, 17, 3]")
    if not np.isfinite(pred).all():
        raise ToolkitError(f"{path}: pred3d contains NaN/inf")
    _, n, s = pred.shape[:3]
    num_human = min(4, n) if num_human is None else num_human
    if num_human < 1 or num_hypo < 1:
        raise ToolkitError("--num-human and --num-hypo must be >= 1")
    num_human, num_hypo = min(num_human, n), min(num_hypo, s)  # as the paper's viewer: at most what is there
    pred = pred[:, :num_human, :num_hypo]
    gt = _optional(arrays, "gt3d", (1, n, 1, 17, 3), path)
    if vis_gt and gt is None:
        raise ToolkitError(f"--vis-gt: {path} has no gt3d (generation results have no ground truth)")
    inp = _optional(arrays, "input2d", (1, n, 1, 17, 2), path)
    miss = _optional(arrays, "missing", (1, n, 1, 17), path)
    # Root-relative, as the metrics see them: every pose (and the 2D input) centred on its own pelvis.
    view = to_view(pred - pred[..., :1, :])  # [T, H, S, 17, 3]
    scene_gt = None
    if vis_gt:
        g = gt[0, :num_human, 0]
        scene_gt = to_view(g - g[:, :1])  # [H, 17, 3]
    scene_in = None
    if inp is not None:  # the image plane, just behind everything drawn for that human
        xy = inp[0, :num_human, 0]
        xy = xy - xy[:, :1]  # [H, 17, 2]
        depth = view[..., 1].max(axis=(0, 2, 3)) + 0.05  # [H]
        scene_in = np.stack([xy[..., 0], np.broadcast_to(depth[:, None], xy.shape[:2]), -xy[..., 1]], -1)
    scene = Scene(pred=view, gt=scene_gt, input2d=scene_in,
                  missing=miss[0, :num_human, 0].astype(bool) if miss is not None else None)
    if aggregate is not None:
        scene.aggregate, scene.uncertainty = _aggregate(arrays, aggregate, n, num_human, path)
    return scene


def _lift_scene(arrays: dict, num_human: int | None, path: Path) -> Scene:
    """run.lift's poses.npz: the frames as the animation steps, each person root-relative in metres, and the 2D
    input per frame (pixels at the root's depth) in a plane behind it. Frames where a person is absent repeat its
    last pose."""
    pose, valid = arrays["pose3d"], arrays["valid"].astype(bool)  # [T, P, 17, 3] mm, [T, P]
    if pose.ndim != 4 or pose.shape[2:] != (17, 3) or valid.shape != pose.shape[:2] or not valid.any():
        raise ToolkitError(f"{path}: pose3d {pose.shape} / valid {valid.shape} are not run.lift's [T, P, 17, 3] / "
                           f"[T, P] with someone in them")
    humans = min(num_human or 4, pose.shape[1])
    pose, valid, kps = pose[:, :humans], valid[:, :humans], arrays["keypoints2d"][:, :humans]
    depth, focal = arrays["root_depth"][:, :humans], arrays["camera"][0]
    last = np.maximum.accumulate(np.where(valid, np.arange(len(pose))[:, None], -1), axis=0)  # forward fill
    last = np.where(last < 0, valid.argmax(0)[None], last)
    pose, kps, depth = (np.take_along_axis(a, last.reshape(last.shape + (1,) * (a.ndim - 2)), 0)
                        for a in (pose, kps, depth))
    rel = (pose - pose[:, :, :1]) / 1000.0
    view = to_view(rel)[:, :, None]  # [T, H, 1, 17, 3]
    xy = np.nan_to_num((kps - kps[:, :, :1]) * depth[..., None, None] / focal / 1000.0)  # [T, H, 17, 2] metres
    plane = np.broadcast_to(view[..., 1].max(axis=(0, 2, 3))[None, :, None] + 0.3, xy.shape[:3])
    return Scene(pred=view, gt=None, input2d=np.stack([xy[..., 0], plane, -xy[..., 1]], -1), missing=None)


def _aggregate(arrays: dict, name: str, n: int, humans: int, path: Path) -> tuple[np.ndarray, np.ndarray]:
    names = [str(v) for v in arrays.get("aggregate_names", [])]
    if name not in names:
        raise ToolkitError(f"--aggregate {name}: {path} holds {', '.join(names) or 'no aggregates'} (aggregates are "
                           f"written by est / comp2d / comp3d evaluations)")
    agg = _optional(arrays, "aggregates", (len(names), n, 17, 3), path)[names.index(name), :humans]
    unc = _optional(arrays, "uncertainty", (n, 17), path)[:humans]
    return to_view(agg - agg[:, :1]), unc


def _optional(arrays: dict, key: str, shape: tuple[int, ...], path: Path) -> np.ndarray | None:
    if key not in arrays:
        return None
    if arrays[key].shape != shape:
        raise ToolkitError(f"{path}: {key} has shape {arrays[key].shape}, expected {shape} (as pred3d)")
    return arrays[key]


def _limits(scene: Scene) -> np.ndarray:
    """One cube [3, 2] for all humans (equal scales on all axes): around the ground truth when drawn, else
    around the bulk of the final hypotheses; outlying hypotheses and early noisy steps may leave it."""
    ref = scene.gt if scene.gt is not None else scene.pred[-1]
    pts = ref.reshape(-1, 3)
    lo, hi = np.percentile(pts, 2, axis=0), np.percentile(pts, 98, axis=0)
    centre, half = (lo + hi) / 2, max((hi - lo).max() / 2 * 1.3, 1e-3)  # (poses all on one spot: a small cube)
    return np.stack([centre - half, centre + half], -1)


# ---------------------------------------------------------------------------------------------------
# matplotlib: PNG (final step), GIF / MP4 (the saved trajectory)


def render_images(scene: Scene, out: Path, per_line: int, fps: int = 10) -> int:
    """Write a PNG (final step) or an animation (.gif, .mp4); returns the number of frames written."""
    t_len, humans, hypo = scene.pred.shape[:3]
    cols = min(per_line, humans)
    rows = -(-humans // cols)
    fig = Figure(figsize=(3.0 * cols, 3.2 * rows), dpi=100)  # no pyplot: no display, no global state
    fig.subplots_adjust(left=0, right=1, bottom=0, top=0.94, wspace=0, hspace=0.05)
    lim = _limits(scene)
    axes = []
    for h in range(humans):
        ax = fig.add_subplot(rows, cols, h + 1, projection="3d")
        ax.set_box_aspect((1, 1, 1))
        ax.view_init(elev=12, azim=-70)
        axes.append(ax)
    alpha = max(0.15, 1.0 / np.sqrt(hypo))
    vmax = float(scene.uncertainty.max()) if scene.uncertainty is not None else 1.0

    def draw(t: int) -> None:
        for h, ax in enumerate(axes):
            ax.cla()
            ax.set_xlim(*lim[0])
            ax.set_ylim(*lim[1])
            ax.set_zlim(*lim[2])
            ax.set_xticklabels([])
            ax.set_yticklabels([])
            ax.set_zticklabels([])
            if scene.input2d is not None:
                _mpl_skeleton(ax, _input_at(scene, t)[h], COLOURS["input"], 0.9, 1.0)
            if scene.gt is not None:
                _mpl_skeleton(ax, scene.gt[h], COLOURS["gt"], 0.9, 2.0)
                if scene.missing is not None and scene.missing[h].any():  # completion: mark what was hidden
                    ax.scatter(*scene.gt[h][scene.missing[h]].T, marker="x", color="black", s=25)
            for s in range(hypo):
                _mpl_skeleton(ax, scene.pred[t, h, s], None, alpha, 1.5)
            if scene.aggregate is not None:  # one pose, joints coloured by uncertainty (yellow: certain)
                _mpl_skeleton(ax, scene.aggregate[h], "black", 0.9, 2.5)
                ax.scatter(*scene.aggregate[h].T, c=scene.uncertainty[h], cmap="plasma_r", vmin=0, vmax=vmax, s=30,
                           depthshade=False)
            ax.set_title(f"human {h}" + (f", step {t + 1}/{t_len}" if out.suffix != ".png" else ""), fontsize=9)

    if out.suffix == ".png":
        draw(t_len - 1)
        with atomic_write(out) as f:
            fig.savefig(f, format="png")
        return 1
    if out.suffix == ".mp4" and not animation.writers.is_available("ffmpeg"):
        raise ToolkitError("--out .mp4 needs ffmpeg (apt install ffmpeg); or write a .gif")
    writer = animation.PillowWriter(fps=fps) if out.suffix == ".gif" else animation.FFMpegWriter(fps=fps)
    anim = animation.FuncAnimation(fig, draw, frames=t_len)
    with atomic_path(out) as tmp:
        anim.save(str(tmp), writer=writer)
    return t_len


def _mpl_skeleton(ax, pose: np.ndarray, colour: str | None, alpha: float, width: float) -> None:
    for side, bones in SIDES.items():
        c = colour or COLOURS[side]
        for a, b in bones:
            ax.plot(*pose[[a, b]].T, color=c, alpha=alpha, linewidth=width)


# ---------------------------------------------------------------------------------------------------
# plotly: one offline HTML page


def _segments(poses: np.ndarray, bones: list[tuple[int, int]]) -> list[list[float | None]]:
    """Line coordinates (x, y, z lists with None breaks) for bones of several poses [K, 17, 3]."""
    pts = []
    for pose in poses:
        for a, b in bones:
            pts += [pose[a], pose[b], [None] * 3]
    cols = list(zip(*pts, strict=True)) if pts else [[], [], []]
    return [[None if v is None else round(float(v), 3) for v in c] for c in cols]


def render_html(scene: Scene, out: Path, per_line: int) -> int:
    """Write one self-contained page: a 3D scene per human, a slider over diffusion steps, play / pause,
    toggles for hypotheses and ground truth. Returns the number of steps on the slider."""
    from plotly.subplots import make_subplots  # plotly is only needed here (import cost stays out of training)

    t_len, humans = scene.pred.shape[:2]
    cols = min(per_line, humans)
    rows = -(-humans // cols)
    fig = make_subplots(rows=rows, cols=cols, specs=[[{"type": "scene"}] * cols] * rows,
                        subplot_titles=[f"human {h}" for h in range(humans)], horizontal_spacing=0.01,
                        vertical_spacing=0.04)
    hyp_idx, gt_idx = _html_traces(fig, scene, cols)
    lim = _limits(scene)
    axis = {"showticklabels": False, "title": ""}
    for i in range(humans):
        fig.layout[f"scene{i + 1 if i else ''}"].update(
            xaxis={**axis, "range": list(lim[0])}, yaxis={**axis, "range": list(lim[1])},
            zaxis={**axis, "range": list(lim[2])}, aspectmode="cube",
            camera={"eye": {"x": 0.4, "y": -1.8, "z": 0.4}})
    _html_controls(fig, t_len, rows, cols, hyp_idx, gt_idx)
    write_text(out, fig.to_html(include_plotlyjs=True, full_html=True, auto_play=False, div_id="poses",
                                config={"displaylogo": False}))
    return t_len


def _html_traces(fig, scene: Scene, cols: int) -> tuple[list[int], list[int]]:
    """Lines of every human (final step), its ground truth and 2D input, and one frame per diffusion step;
    returns the trace indices of the hypotheses and of the ground truth."""
    import plotly.graph_objects as go

    t_len, humans = scene.pred.shape[:2]
    hyp_idx, gt_idx, in_idx = [], [], []

    def add(poses: np.ndarray, h: int, colour: str | None, group: str, width: float) -> list[int]:
        idx = []
        for side, bones in SIDES.items():
            x, y, z = _segments(poses, bones)
            fig.add_trace(go.Scatter3d(x=x, y=y, z=z, mode="lines", line={"color": colour or COLOURS[side],
                                                                          "width": width},
                                       name=group, legendgroup=group, showlegend=h == 0 and side == "centre",
                                       hoverinfo="skip"), row=h // cols + 1, col=h % cols + 1)
            idx.append(len(fig.data) - 1)
        return idx

    for h in range(humans):
        hyp_idx += add(scene.pred[-1, h], h, None, "hypotheses", 4)
        if scene.aggregate is not None:
            add(scene.aggregate[h][None], h, "black", "aggregate", 6)
            fig.add_trace(go.Scatter3d(x=scene.aggregate[h, :, 0], y=scene.aggregate[h, :, 1],
                                       z=scene.aggregate[h, :, 2], mode="markers", name="uncertainty",
                                       marker={"size": 5, "color": scene.uncertainty[h], "colorscale": "Plasma",
                                               "reversescale": True, "cmin": 0, "showscale": h == 0},
                                       showlegend=False), row=h // cols + 1, col=h % cols + 1)
        if scene.gt is not None:
            gt_idx += add(scene.gt[h][None], h, COLOURS["gt"], "ground truth", 6)
        if scene.input2d is not None:
            in_idx += add(_input_at(scene, -1)[h][None], h, COLOURS["input"], "2D input", 3)
    per_frame = scene.input2d is not None and scene.input2d.ndim == 4  # a video: its 2D input moves too
    fig.frames = [go.Frame(data=[go.Scatter3d(x=x, y=y, z=z) for h in range(humans) for bones in SIDES.values()
                                 for x, y, z in [_segments(scene.pred[t, h], bones)]]
                           + ([go.Scatter3d(x=x, y=y, z=z) for h in range(humans) for bones in SIDES.values()
                               for x, y, z in [_segments(scene.input2d[t, h][None], bones)]] if per_frame else []),
                           traces=hyp_idx + (in_idx if per_frame else []), name=str(t)) for t in range(t_len)]
    return hyp_idx, gt_idx


def _input_at(scene: Scene, t: int) -> np.ndarray:
    """The 2D input [H, 17, 3] drawn at step or frame t."""
    return scene.input2d[t] if scene.input2d.ndim == 4 else scene.input2d


def _html_controls(fig, t_len: int, rows: int, cols: int, hyp_idx: list[int], gt_idx: list[int]) -> None:
    """Play / pause, show / hide toggles and the step slider."""
    still = {"frame": {"duration": 0, "redraw": True}, "mode": "immediate", "transition": {"duration": 0}}
    play = {"frame": {"duration": 120, "redraw": True}, "fromcurrent": True, "transition": {"duration": 0}}
    show = {True: "show", False: "hide"}

    def toggle(label: str, idx: list[int], y: float) -> dict:
        return {"type": "buttons", "direction": "right", "x": 0.0 if label == "hypotheses" else 0.4, "y": y,
                "xanchor": "left", "yanchor": "bottom",
                "showactive": True, "active": 0,
                "buttons": [{"label": f"{show[v]} {label}", "method": "restyle", "args": [{"visible": v}, idx]}
                            for v in (True, False)]}

    menus = [{"type": "buttons", "direction": "right", "x": 0.0, "y": 0.0, "yanchor": "top", "showactive": False,
              "buttons": [{"label": "play", "method": "animate", "args": [None, play]},
                          {"label": "pause", "method": "animate", "args": [[None], still]}]},
             toggle("hypotheses", hyp_idx, 1.0 + 90 / (420 * rows))]
    if gt_idx:
        menus.append(toggle("ground truth", gt_idx, 1.0 + 90 / (420 * rows)))
    fig.update_layout(
        updatemenus=menus, margin={"l": 0, "r": 0, "t": 130, "b": 60}, height=420 * rows + 190,
        width=380 * cols + 40,
        sliders=[{"active": t_len - 1, "x": 0.12, "len": 0.85, "y": 0.0, "yanchor": "top",
                  "currentvalue": {"prefix": "step "},
                  "steps": [{"label": str(t + 1), "method": "animate", "args": [[str(t)], still]}
                            for t in range(t_len)]}],
        legend={"orientation": "h", "y": 1.0 + 45 / (420 * rows), "x": 0.0, "yanchor": "bottom"})


def plot_learning_curves(curves: dict[str, list[dict[str, float]]], out: Path, key: str = "p1") -> None:
    """The monitor's P1 (and root-aligned MPJPE, dashed) against wall-clock minutes, one line per run."""
    fig = Figure(figsize=(6.0, 3.6), dpi=110)
    ax = fig.add_subplot(1, 1, 1)
    for (label, history), colour in zip(curves.items(), ("#d62728", "#1f77b4", "#2ca02c", "#9467bd"), strict=False):
        minutes = [h["minutes"] for h in history]
        ax.plot(minutes, [h[key] for h in history], "-o", color=colour, markersize=3, label=f"{label}: P1")
        if "p1_root" in history[0]:
            ax.plot(minutes, [h["p1_root"] for h in history], "--", color=colour, alpha=0.6,
                    label=f"{label}: MPJPE root-aligned")
    ax.set_xlabel("minutes of training")
    ax.set_ylabel("single-hypothesis error (mm)")
    ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_write(out) as f:
        fig.savefig(f, format="png")
