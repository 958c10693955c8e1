r"""Figures of video clips with boxes: frame strips, animations, trajectories, label tables.

Regions ``(cx, cy, sx, sy)`` of a model (centre and half-extent, Eq. 6) live on its feature
map; :func:`regions_to_video` puts them in video pixels, :func:`draw_frame_regions` draws
one frame with its regions (one colour per node, :mod:`dyreg_edu.plots.style`) and boxes,
and :func:`region_player` is a widget with a slider for the frame and one for the video.

A clip is a grey-level video ``[T, H, W]`` (uint8 0..255 or float), a batch of clips
``[B, T, H, W]``. Boxes are ``(x1, y1, x2, y2)`` in *continuous* pixel coordinates, the
convention of :class:`data_gen.multisync.MultiSyncMNIST`: pixel ``(row p, column q)``
covers ``[q, q + 1) x [p, p + 1)``, so a 14-pixel digit whose top-left is ``x1`` ends at
``x2 = x1 + 14``. ``imshow`` puts pixel centres on integer points, so every box is drawn
shifted by half a pixel: the rectangle from ``(x1 - 0.5, y1 - 0.5)`` to ``(x2 - 0.5, y2 - 0.5)``.

Per clip, boxes are ``[T, D, 4]`` (frame, digit, coordinate) and the optional ``sync``
flags ``[D]`` colour them: synchronous digits green, the others red.

Every function draws (on the axes it is given, or on a new figure) and returns what it
drew; nothing is shown or saved here, and importing the module does nothing else.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib import animation
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from .style import node_color, region_rectangle

__all__ = [
    "SYNC_COLOR",
    "OTHER_COLOR",
    "box_colors",
    "draw_boxes",
    "show_clip_frames",
    "animate_clips",
    "box_centers",
    "plot_trajectories",
    "plot_displacements",
    "plot_pair_table",
    "regions_to_video",
    "draw_frame_regions",
    "variant_player",
    "clip_player",
    "region_player",
]

SYNC_COLOR = "lime"
OTHER_COLOR = "red"


def _numpy(x) -> np.ndarray:
    """A tensor or array as a NumPy array on the CPU (no grad)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _clips(videos) -> np.ndarray:
    """``[T, H, W]`` or ``[B, T, H, W]`` -> ``[B, T, H, W]`` NumPy array."""
    v = _numpy(videos)
    if v.ndim == 3:
        v = v[None]
    if v.ndim != 4:
        raise ValueError(f"videos must be [T, H, W] or [B, T, H, W], got shape {v.shape}")
    return v


def _per_clip(x, batch: int, trailing: int, name: str):
    """An optional per-clip array: ``None`` stays ``None``; a single clip's gets a batch axis."""
    if x is None:
        return None
    a = _numpy(x)
    if a.ndim == trailing:
        a = a[None]
    if a.ndim != trailing + 1 or a.shape[0] != batch:
        raise ValueError(f"{name} must have {trailing} axes per clip for {batch} clip(s), got shape {a.shape}")
    return a


def _vmax(video: np.ndarray) -> float:
    return 255.0 if video.dtype == np.uint8 else max(float(video.max()), 1e-8)


def box_colors(num_digits: int, sync=None) -> list:
    """One colour per digit: green for synchronous digits, red for the others.

    Without ``sync`` (``[D]`` bools) every box is yellow.
    """
    if sync is None:
        return ["yellow"] * num_digits
    sync = _numpy(sync).astype(bool)
    if sync.shape != (num_digits,):
        raise ValueError(f"sync must be [{num_digits}], got shape {sync.shape}")
    return [SYNC_COLOR if s else OTHER_COLOR for s in sync]


def draw_boxes(ax: Axes, boxes, sync=None, *, linewidth: float = 1.0, numbers: bool = False) -> list:
    """Draw one frame's boxes ``[D, 4]`` ``(x1, y1, x2, y2)`` on ``ax``; returns the Rectangles.

    ``sync`` ``[D]`` colours them (green synchronous, red the others); ``numbers``
    writes each digit's index ``d`` above its box.
    """
    b = _numpy(boxes).astype(float)
    if b.ndim != 2 or b.shape[-1] != 4:
        raise ValueError(f"boxes must be [D, 4], got shape {b.shape}")
    patches = []
    for d, ((x1, y1, x2, y2), color) in enumerate(zip(b, box_colors(len(b), sync))):
        rect = Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=color, linewidth=linewidth)
        ax.add_patch(rect)
        patches.append(rect)
        if numbers:
            ax.text(x1 - 0.5, y1 - 1.5, str(d), color=color, fontsize=6, va="bottom")
    return patches


def show_clip_frames(video, boxes=None, sync=None, *, frames: Sequence[int] | None = None,
                     title: str | None = None, numbers: bool = False, axes=None,
                     frame_size: float = 1.3) -> Figure:
    """A static strip of a clip's frames, with boxes, for the printed page.

    ``video`` ``[T, H, W]``; ``boxes`` ``[T, D, 4]``; ``sync`` ``[D]``; ``frames`` the
    frame indices to show (default: all ``T``); ``axes`` a sequence of as many axes
    (default: a new one-row figure). Returns the figure.
    """
    v = _clips(video)[0]
    b = None if boxes is None else _numpy(boxes)
    if b is not None and (b.ndim != 3 or b.shape[0] != v.shape[0] or b.shape[-1] != 4):
        raise ValueError(f"boxes must be [T, D, 4] with T = {v.shape[0]}, got shape {b.shape}")
    frames = list(range(v.shape[0])) if frames is None else list(frames)
    if axes is None:
        fig, axes = plt.subplots(1, len(frames), figsize=(frame_size * len(frames), frame_size + 0.35), squeeze=False)
        axes = axes[0]
    else:
        axes = list(np.ravel(axes))
        if len(axes) != len(frames):
            raise ValueError(f"got {len(axes)} axes for {len(frames)} frames")
        fig = axes[0].figure
    for ax, t in zip(axes, frames):
        ax.imshow(v[t], cmap="gray", vmin=0, vmax=_vmax(v))
        if b is not None:
            draw_boxes(ax, b[t], sync, numbers=numbers)
        ax.set_title(f"t = {t}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=8)
    return fig


def animate_clips(videos, boxes=None, sync=None, *, titles: Sequence[str] | None = None,
                  interval: int = 400, clip_size: float = 2.0, dpi: int = 72,
                  numbers: bool = False) -> animation.FuncAnimation:
    """An animation of ``B`` clips side by side, with their boxes, one frame per step.

    ``videos`` ``[B, T, H, W]`` (or one clip ``[T, H, W]``); ``boxes`` ``[B, T, D, 4]``;
    ``sync`` ``[B, D]``; ``titles`` one string per clip (e.g. the label). ``interval``
    is the milliseconds per frame. Display it in a notebook with
    ``IPython.display.HTML(anim.to_jshtml())`` (works in the static book), or save it
    with ``anim.save("clip.gif")``. The figure is closed so it is not also shown as a
    still image; the animation keeps it alive.
    """
    v = _clips(videos)
    B, T = v.shape[:2]
    b = _per_clip(boxes, B, 3, "boxes")
    s = _per_clip(sync, B, 1, "sync")
    if titles is not None and len(titles) != B:
        raise ValueError(f"got {len(titles)} titles for {B} clips")
    fig, axes = plt.subplots(1, B, figsize=(clip_size * B, clip_size + 0.45), dpi=dpi, squeeze=False)
    axes = axes[0]
    images, patches = [], []
    for j, ax in enumerate(axes):
        images.append(ax.imshow(v[j, 0], cmap="gray", vmin=0, vmax=_vmax(v[j]), animated=True))
        patches.append([] if b is None else draw_boxes(ax, b[j, 0], None if s is None else s[j], numbers=False))
        ax.set_xticks([])
        ax.set_yticks([])
        if titles is not None:
            ax.set_title(titles[j], fontsize=7)
    stamp = fig.text(0.01, 0.01, f"frame 0/{T - 1}", fontsize=7)
    fig.tight_layout()

    def update(t: int):
        changed = [stamp]
        stamp.set_text(f"frame {t}/{T - 1}")
        for j in range(B):
            images[j].set_data(v[j, t])
            changed.append(images[j])
            for d, rect in enumerate(patches[j]):
                x1, y1, x2, y2 = (float(c) for c in b[j, t, d])
                rect.set_xy((x1 - 0.5, y1 - 0.5))
                rect.set_width(x2 - x1)
                rect.set_height(y2 - y1)
                changed.append(rect)
        return changed

    anim = animation.FuncAnimation(fig, update, frames=T, interval=interval, blit=False)
    plt.close(fig)
    return anim


def box_centers(boxes) -> np.ndarray:
    """Centres ``[..., 2]`` ``(x, y)`` of boxes ``[..., 4]`` ``(x1, y1, x2, y2)``."""
    b = _numpy(boxes).astype(float)
    return np.stack([(b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2], -1)


def plot_trajectories(boxes, sync=None, *, ax: Axes | None = None, digits=None,
                      size: float | None = None, background=None) -> Axes:
    """The path of each digit's box centre over the frames of one clip.

    ``boxes`` ``[T, D, 4]``; ``sync`` ``[D]`` colours the paths (green synchronous,
    red the others); ``digits`` ``[D]`` class names for the legend; ``size`` the
    frame size in pixels (sets the limits); ``background`` an ``[H, W]`` image drawn
    under the paths (e.g. the first frame). A circle marks frame 0, a cross the last.
    """
    c = box_centers(boxes)  # [T, D, 2]
    if c.ndim != 3:
        raise ValueError(f"boxes must be [T, D, 4], got shape {_numpy(boxes).shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    if background is not None:
        bg = _numpy(background)
        ax.imshow(bg, cmap="gray", vmin=0, vmax=_vmax(bg), alpha=0.5)
    colors = box_colors(c.shape[1], sync)
    names = None if digits is None else [int(d) for d in _numpy(digits)]
    for d in range(c.shape[1]):
        label = f"digit {d}" + ("" if names is None else f" (a {names[d]})")
        ax.plot(c[:, d, 0] - 0.5, c[:, d, 1] - 0.5, "-", color=colors[d], lw=1.2, label=label)
        ax.plot(c[0, d, 0] - 0.5, c[0, d, 1] - 0.5, "o", color=colors[d], ms=4)
        ax.plot(c[-1, d, 0] - 0.5, c[-1, d, 1] - 0.5, "x", color=colors[d], ms=5)
        ax.annotate(str(d), (c[0, d, 0] - 0.5, c[0, d, 1] - 0.5), fontsize=7, color=colors[d],
                    xytext=(3, 3), textcoords="offset points")
    if size is not None:
        ax.set_xlim(-0.5, size - 0.5)
        ax.set_ylim(size - 0.5, -0.5)
    elif background is None:
        ax.invert_yaxis()
    ax.set_aspect("equal")
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    return ax


def plot_displacements(boxes, sync=None, *, axes=None, digits=None) -> Figure:
    """Per-transition displacement of every digit, ``x`` and ``y`` in two panels.

    ``boxes`` ``[T, D, 4]`` -> displacements ``[T - 1, D, 2]`` of the top-left corners,
    in pixels. Synchronous digits (``sync`` ``[D]``) share every displacement, so
    their green lines lie on top of each other. Returns the figure.
    """
    b = _numpy(boxes).astype(float)
    if b.ndim != 3 or b.shape[-1] != 4:
        raise ValueError(f"boxes must be [T, D, 4], got shape {b.shape}")
    step = np.diff(b[..., :2], axis=0)  # [T-1, D, 2]
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3), sharey=True)
    else:
        fig = np.ravel(axes)[0].figure
    axes = list(np.ravel(axes))
    colors = box_colors(b.shape[1], sync)
    sync_flags = [False] * b.shape[1] if sync is None else [bool(s) for s in _numpy(sync)]
    names = None if digits is None else [int(d) for d in _numpy(digits)]
    t = np.arange(1, b.shape[0])
    for a, (ax, axis) in enumerate(zip(axes, "xy")):
        for d in range(b.shape[1]):
            label = f"digit {d}" + ("" if names is None else f" (a {names[d]})")
            # synchronous lines are drawn thicker and underneath, so all of them show
            ax.plot(t, step[:, d, a], "o-" if sync_flags[d] else ".--", color=colors[d],
                    lw=3 if sync_flags[d] else 1, alpha=0.7 if sync_flags[d] else 0.9,
                    zorder=1 if sync_flags[d] else 2, label=label)
        ax.axhline(0, color="gray", lw=0.5)
        ax.set_xlabel("transition t-1 -> t")
        ax.set_title(f"{axis} displacement (pixels)", fontsize=9)
    axes[-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return fig


def plot_pair_table(table, *, ax: Axes | None = None, highlight: Sequence[tuple[int, int]] = (),
                    title: str | None = None, cmap: str = "viridis", colorbar: str | None = None) -> Axes:
    """A ``[R, C]`` integer table as an annotated heat map (e.g. the label of each pair).

    ``table[i, j] < 0`` cells are left blank (pairs without a label). ``highlight``
    lists ``(i, j)`` cells to outline. Rows are the first index, columns the second.
    ``colorbar``, if given, adds a colour bar with that label.
    """
    tab = _numpy(table).astype(int)
    if tab.ndim != 2:
        raise ValueError(f"table must be [R, C], got shape {tab.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.5 * tab.shape[1] + 1.5, 0.5 * tab.shape[0] + 1))
    masked = np.ma.masked_less(tab, 0)
    image = ax.imshow(masked, cmap=cmap)
    if colorbar is not None:
        ax.figure.colorbar(image, ax=ax, shrink=0.8, label=colorbar)
    top = max(int(tab.max()), 1)
    for i in range(tab.shape[0]):
        for j in range(tab.shape[1]):
            if tab[i, j] >= 0:
                ax.text(j, i, str(tab[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if tab[i, j] < 0.6 * top else "black")
    for i, j in highlight:
        ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2))
    ax.set_xticks(range(tab.shape[1]))
    ax.set_yticks(range(tab.shape[0]))
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def regions_to_video(regions, stride) -> np.ndarray:
    """Regions ``[..., 4]`` ``(cx, cy, sx, sy)`` on a feature map -> the same rectangles in video pixels.

    Map pixel ``q`` covers the video's ``[q * stride, (q + 1) * stride)``, whose centre
    ``imshow`` draws at ``(q + 0.5) * stride - 0.5``; half-extents scale by ``stride``.
    ``stride`` is video pixels per map pixel (``video size / map size``), one number or ``(x, y)``.
    """
    r = _numpy(regions).astype(float)
    if r.shape[-1] != 4:
        raise ValueError(f"regions must be [..., 4], got shape {r.shape}")
    sx, sy = (float(stride), float(stride)) if np.ndim(stride) == 0 else (float(v) for v in stride)
    scale = np.array([sx, sy, sx, sy])
    shift = np.array([0.5 * sx - 0.5, 0.5 * sy - 0.5, 0.0, 0.0])
    return r * scale + shift


def draw_frame_regions(ax: Axes, frame, regions=None, boxes=None, sync=None, *, stride: float = 1.0,
                       centers: bool = True, linewidth: float = 1.2, box_linewidth: float = 0.7) -> tuple[list, list]:
    """One frame ``[H, W]`` with a model's regions ``[N, 4]`` and the digits' boxes ``[D, 4]``.

    Region ``i`` is drawn in ``node_color(i)`` (the same colour in every figure of the book),
    its centre as a dot; ``regions`` are on the feature map, ``stride`` video pixels per map
    pixel (:func:`regions_to_video`). Boxes are coloured by ``sync`` ``[D]`` (green
    synchronous, red the others; yellow without ``sync``). Returns ``(region rectangles,
    box rectangles)``.
    """
    f = _numpy(frame)
    if f.ndim != 2:
        raise ValueError(f"frame must be [H, W], got shape {f.shape}")
    ax.imshow(f, cmap="gray", vmin=0, vmax=_vmax(f))
    box_patches = [] if boxes is None else draw_boxes(ax, boxes, sync, linewidth=box_linewidth)
    region_patches = []
    if regions is not None:
        r = regions_to_video(regions, stride).reshape(-1, 4)
        for i, region in enumerate(r):
            region_patches.append(region_rectangle(ax, region, color=node_color(i), linewidth=linewidth))
            if centers:
                ax.plot([region[0]], [region[1]], "o", color=node_color(i), markersize=3)
    ax.set_xlim(-0.5, f.shape[1] - 0.5)
    ax.set_ylim(f.shape[0] - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    return region_patches, box_patches


def region_player(videos, regions, boxes=None, sync=None, *, stride: float = 1.0,
                  titles: Sequence[str] | None = None, size: float = 4.0):
    """A widget: one frame of one video with the model's regions, and two sliders, ``video`` and ``frame``.

    ``videos`` ``[B, T, H, W]``; ``regions`` ``[B, T, N, 4]`` on the feature map (``stride``
    video pixels per map pixel); ``boxes`` ``[B, T, D, 4]`` and ``sync`` ``[B, D]`` optional;
    ``titles`` one string per video. Each move of a slider redraws with
    :func:`draw_frame_regions`. Returns an ``ipywidgets.interactive``; ``display`` it.
    ``widget.result`` holds the last figure drawn.
    """
    return _player({"": regions}, videos, boxes, sync, stride=stride, titles=titles, size=size, menu=False)


def variant_player(regions_by_variant, videos, boxes=None, sync=None, *, stride: float = 1.0,
                   titles: Sequence[str] | None = None, size: float = 4.0):
    """A widget to compare trained variants on the same videos: a ``variant`` menu and two
    sliders, ``video`` and ``frame``.

    ``regions_by_variant`` maps a name to its regions ``[B, T, N, 4]`` on the feature map, all
    on the same ``videos`` ``[B, T, H, W]`` (``boxes`` ``[B, T, D, 4]`` and ``sync`` ``[B, D]``
    optional; ``titles`` one string per video). Returns an ``ipywidgets.interactive``;
    ``widget.result`` holds the last figure drawn.
    """
    return _player(dict(regions_by_variant), videos, boxes, sync, stride=stride, titles=titles, size=size, menu=True)


def clip_player(videos, boxes=None, sync=None, *, titles: Sequence[str] | None = None, size: float = 4.0):
    """A widget to step through videos ``[B, T, H, W]`` frame by frame: sliders ``video`` and
    ``frame``, the digits' boxes ``[B, T, D, 4]`` drawn if given (coloured by ``sync`` ``[B, D]``;
    yellow without it, which keeps the answer hidden). Returns an ``ipywidgets.interactive``."""
    return _player({"": None}, videos, boxes, sync, stride=1.0, titles=titles, size=size, menu=False)


def _player(runs: dict, videos, boxes, sync, *, stride: float, titles, size: float, menu: bool):
    """The widget behind :func:`clip_player` (no regions), :func:`region_player` (one set of
    regions) and :func:`variant_player` (a ``variant`` menu over several)."""
    import ipywidgets as widgets

    v = _clips(videos)
    B, T = v.shape[:2]
    if not runs:
        raise ValueError("regions_by_variant is empty: give at least one variant's regions")
    runs = {name: None if r is None else _numpy(r) for name, r in runs.items()}
    for name, r in runs.items():
        if r is not None and (r.ndim != 4 or r.shape[:2] != (B, T) or r.shape[-1] != 4):
            what = f"regions of {name!r}" if menu else "regions"
            raise ValueError(f"{what} must be [B, T, N, 4] with B, T = {B}, {T}, got shape {r.shape}")
    b = _per_clip(boxes, B, 3, "boxes")
    s = _per_clip(sync, B, 1, "sync")
    if titles is not None and len(titles) != B:
        raise ValueError(f"got {len(titles)} titles for {B} videos")
    first = next(iter(runs))

    def draw(video: int, frame: int, variant: str = first):
        r = runs[variant]
        fig, ax = plt.subplots(figsize=(size + 1.2, size))
        draw_frame_regions(ax, v[video, frame], None if r is None else r[video, frame],
                           None if b is None else b[video, frame], None if s is None else s[video], stride=stride)
        name = titles[video] if titles is not None else f"video {video}"
        ax.set_title(f"{variant + ': ' if menu else ''}{name}, frame {frame} of {T - 1}", fontsize=9)
        if r is not None:
            legend = [Line2D([], [], color=node_color(i), lw=2, label=f"node {i}") for i in range(r.shape[2])]
            ax.legend(handles=legend, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        fig.tight_layout()
        plt.close(fig)  # interactive displays the returned figure once
        return fig

    def slider(high: int, description: str):
        return widgets.IntSlider(value=0, min=0, max=high, step=1, description=description, continuous_update=False)

    controls = {"video": slider(B - 1, "video"), "frame": slider(T - 1, "frame")}
    if menu:
        controls = {"variant": widgets.Dropdown(options=list(runs), value=first, description="variant"), **controls}
    return widgets.interactive(draw, **controls)
