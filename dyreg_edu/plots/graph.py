r"""Figures for the graph chapters: attention between nodes, node regions on a frame, and
the data flow of the DyReg block.

Every function is pure: it draws what it is given (tensors or arrays, on the CPU or
not) on the axes it is given, or on new ones, and returns what it drew. Nothing here
computes a model; pass ``aux["attention"]`` / ``aux["regions"]`` from
:class:`dyreg_edu.dyreg.DyRegBlock` or the attention returned by
:class:`dyreg_edu.graph.SpatioTemporalGraph`.

Conventions (as in ``shared/api.md``): a region is ``(cx, cy, sx, sy)`` in feature-map
pixels; the pixel in row ``p``, column ``q`` is the point ``(x=q, y=p)``; attention
``a[i, j]`` is how much receiver ``i`` listens to sender ``j`` (rows sum to one).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .style import node_color, region_rectangle
from .style import as_numpy as _numpy


def node_legend(ax, num_nodes: int, *, loc: str = "upper center", bbox_to_anchor=(0.5, -0.06),
                ncol: int | None = None, title: str | None = "node"):
    """A legend of the node colours (node ``i`` = ``node_color(i)``), below ``ax`` by default:
    the way to name nodes when their regions crowd and labels on the map would overlap.

    Returns:
        the ``Legend``.
    """
    handles = [Line2D([], [], marker="o", linestyle="", color=node_color(i), label=str(i)) for i in range(num_nodes)]
    return ax.legend(handles=handles, title=title, loc=loc, bbox_to_anchor=bbox_to_anchor,
                     ncol=ncol or min(num_nodes, 10), fontsize=7, title_fontsize=7, frameon=False,
                     handletextpad=0.1, columnspacing=0.8)


def plot_attention(attention, ax=None, *, title: str | None = None, annotate: bool | None = None,
                   vmax: float | None = None, cmap: str = "viridis", colorbar: bool = True):
    """Heat map of one frame's attention matrix.

    Args:
        attention: ``[N, N]``; row ``i`` (receiver) holds ``a[i, j]`` over senders ``j``.
        ax: axes to draw on; new ones when ``None``.
        title: axes title.
        annotate: write each value in its cell; default: only when ``N <= 9``.
        vmax: top of the colour scale (default: the largest entry; 0 is the bottom).
        colorbar: add a colour bar next to the axes.

    Returns:
        the ``AxesImage`` (its array equals ``attention``).
    """
    a = _numpy(attention)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"attention must be a square [N, N] matrix, got shape {a.shape}")
    n = a.shape[0]
    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 3.0))
    image = ax.imshow(a, cmap=cmap, vmin=0.0, vmax=a.max() if vmax is None else vmax)
    ticks = np.arange(n) if n <= 16 else np.arange(0, n, max(1, n // 8))
    ax.set_xticks(ticks)
    ax.set_yticks(ticks)
    ax.set_xlabel("sender j")
    ax.set_ylabel("receiver i")
    if title:
        ax.set_title(title)
    if annotate if annotate is not None else n <= 9:
        top = image.norm.vmax
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{a[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if a[i, j] > 0.6 * top else "white")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    return image


def plot_attention_iterations(attention, *, axes: Sequence | None = None, title: str = "iteration"):
    """One heat map per graph iteration, on a common colour scale.

    Args:
        attention: ``[K, N, N]`` (one frame of ``aux["attention"]``, i.e. ``attn[b, t]``).
        axes: ``K`` axes; a new ``1 x K`` figure when ``None``.

    Returns:
        the figure.
    """
    a = _numpy(attention)
    if a.ndim != 3 or a.shape[1] != a.shape[2]:
        raise ValueError(f"attention must be [K, N, N], got shape {a.shape}")
    k = a.shape[0]
    if axes is None:
        _, axes = plt.subplots(1, k, figsize=(3.1 * k, 3.0), constrained_layout=True, squeeze=False)
        axes = axes[0]
    if len(axes) != k:
        raise ValueError(f"need {k} axes for {k} iterations, got {len(axes)}")
    vmax = a.max()
    for it, ax in enumerate(axes):
        plot_attention(a[it], ax=ax, title=f"{title} {it + 1}", vmax=vmax, colorbar=it == k - 1)
    return axes[0].figure


def plot_attention_arrows(ax, centers, attention, threshold: float | None = None, *,
                          image=None, max_width: float = 6.0, self_loops: bool = True, labels: bool = True):
    """Arrows from sender ``j`` to receiver ``i``, as thick and opaque as ``a[i, j]``.

    Args:
        ax: axes to draw on (a frame may already be shown there; pass ``image`` to show one).
        centers: ``[N, 2]`` node positions ``(x, y)`` in pixels, e.g. ``regions[..., :2]``.
        attention: ``[N, N]``, rows sum to one (receiver ``i``, sender ``j``).
        threshold: draw only pairs with ``a[i, j] > threshold``; default ``1 / N``
            (more than a uniform share).
        image: optional ``[H, W]`` map shown under the arrows (grey).
        max_width: line width of an arrow with weight 1.
        self_loops: mark ``a[i, i]`` above the threshold with a ring around node ``i``.
        labels: write each node's index next to it (turn off when nodes crowd, and use
            :func:`node_legend`).

    Returns:
        the list of ``(i, j)`` pairs drawn as arrows (``i != j``), strongest first.
    """
    c = _numpy(centers)
    a = _numpy(attention)
    n = c.shape[0]
    if c.ndim != 2 or c.shape[1] != 2:
        raise ValueError(f"centers must be [N, 2] (x, y), got shape {c.shape}")
    if a.shape != (n, n):
        raise ValueError(f"attention must be [N, N] = [{n}, {n}] for {n} centres, got shape {a.shape}")
    threshold = 1.0 / n if threshold is None else threshold
    if image is not None:
        ax.imshow(_numpy(image), cmap="gray")
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j and a[i, j] > threshold]
    pairs.sort(key=lambda ij: -a[ij])
    for i, j in reversed(pairs):  # strongest drawn last, on top
        w = a[i, j]
        ax.add_patch(FancyArrowPatch(
            tuple(c[j]), tuple(c[i]), arrowstyle="-|>", mutation_scale=8 + 10 * w,
            lw=max_width * w, color=node_color(i), alpha=float(np.clip(0.25 + w, 0, 1)),
            connectionstyle="arc3,rad=0.15", shrinkA=4, shrinkB=4))
    for i in range(n):
        if self_loops and a[i, i] > threshold:
            ax.scatter(*c[i], s=250 * (0.3 + a[i, i]), facecolors="none", edgecolors=node_color(i),
                       linewidths=max_width * a[i, i] / 2, zorder=3)
        ax.scatter(*c[i], s=60, color=node_color(i), edgecolors="white", linewidths=1, zorder=4)
        if labels:
            ax.annotate(str(i), c[i], xytext=(4, 4), textcoords="offset points", fontsize=8,
                        color="white", weight="bold", zorder=5)
    if image is None:
        ax.set_aspect("equal")
        ax.autoscale_view()
        if not ax.yaxis_inverted():
            ax.invert_yaxis()  # image convention: y grows downwards
    return pairs


def plot_regions(ax, regions, *, height: int | None = None, width: int | None = None,
                 kernels=None, lw: float = 1.5, labels: bool = True):
    """Node regions as rectangles ``[cx - sx, cx + sx] x [cy - sy, cy + sy]`` on a frame.

    Args:
        ax: axes to draw on.
        regions: ``[N, 4]`` as ``(cx, cy, sx, sy)`` in pixels.
        height, width: the map's size, to set the limits (taken from ``kernels`` if given).
        kernels: optional ``[N, H, W]``; their sum over nodes is shown underneath.
        lw: rectangle line width.
        labels: write the node index at each centre.

    Returns:
        the list of ``N`` rectangles.
    """
    r = _numpy(regions)
    if r.ndim != 2 or r.shape[1] != 4:
        raise ValueError(f"regions must be [N, 4] (cx, cy, sx, sy), got shape {r.shape}")
    if kernels is not None:
        k = _numpy(kernels)
        if k.ndim != 3 or k.shape[0] != r.shape[0]:
            raise ValueError(f"kernels must be [N, H, W] with N = {r.shape[0]}, got shape {k.shape}")
        height, width = k.shape[1:]
        ax.imshow(k.sum(0), cmap="magma", vmin=0.0)
    rects = []
    for i, (cx, cy, sx, sy) in enumerate(r):
        rects.append(region_rectangle(ax, (cx, cy, sx, sy), color=node_color(i), linewidth=lw))
        if labels:
            ax.text(cx, cy, str(i), color=node_color(i), ha="center", va="center", fontsize=7, weight="bold")
    if height is not None and width is not None:
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
    ax.set_aspect("equal")
    return rects


#: The boxes of :func:`plot_block_diagram`, top to bottom: (name, shape).
BLOCK_STEPS = (
    ("input X", "[B, T, C_in, H, W]"),
    ("1x1 conv + LN (optional)", "X' [B, T, C, H, W]"),
    ("regions, Eq. 1-4", "(cx, cy, sx, sy) [B, T, N, 4]"),
    ("kernels, Eq. 5-6", "K [B, T, N, H, W]"),
    ("pool + position, Eq. 7", "v [B, T, N, C]"),
    ("graph, Eq. 8-9 (K iterations)", "v' [B, T, N, C]"),
    ("re-map, Eq. 10", "[B, T, C, H, W]"),
    ("1x1 conv (optional) + LN, scale 0", "[B, T, C_in, H, W]"),
    ("X + branch", "y [B, T, C_in, H, W]"),
)


def plot_block_diagram(ax=None, steps: Sequence[tuple[str, str]] = BLOCK_STEPS):
    """The DyReg block's data flow: a column of boxes, the kernels reused by the re-map,
    and the residual skip from the input to the sum.

    Args:
        ax: axes to draw on; a new tall figure when ``None``.
        steps: ``(name, shape)`` pairs, top to bottom; the first is the input, the last
            the residual sum.

    Returns:
        the figure.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6.2, 0.72 * len(steps) + 0.4))
    n = len(steps)
    ys = np.arange(n)[::-1] * 1.0
    box_w, box_h = 4.2, 0.62
    for k, ((name, shape), y) in enumerate(zip(steps, ys)):
        face = "#dbe9f6" if 0 < k < n - 1 else "#f3e2c7"
        ax.add_patch(FancyBboxPatch((-box_w / 2, y - box_h / 2), box_w, box_h,
                                    boxstyle="round,pad=0.02", fc=face, ec="#333333", lw=1))
        ax.text(0, y + 0.1, name, ha="center", va="center", fontsize=9, weight="bold")
        ax.text(0, y - 0.15, shape, ha="center", va="center", fontsize=8, family="monospace")
        if k:
            ax.annotate("", xy=(0, y + box_h / 2), xytext=(0, ys[k - 1] - box_h / 2),
                        arrowprops=dict(arrowstyle="-|>", color="#333333"))
    def elbow(x_edge, x_out, y_from, y_to, color):
        ax.plot([x_edge, x_out, x_out], [y_from, y_from, y_to], color=color, lw=1.5)
        ax.annotate("", xy=(x_edge, y_to), xytext=(x_out, y_to),
                    arrowprops=dict(arrowstyle="-|>", color=color, lw=1.5))

    # residual skip: input -> sum, on the left
    x_skip = -box_w / 2 - 0.5
    elbow(-box_w / 2, x_skip, ys[0], ys[-1], "#c0392b")
    ax.text(x_skip - 0.1, (ys[0] + ys[-1]) / 2, "identity (residual)", rotation=90, ha="right",
            va="center", color="#c0392b", fontsize=9)
    # kernels reused by the re-map, on the right
    names = [s[0] for s in steps]
    k_idx = next((i for i, s in enumerate(names) if s.startswith("kernels")), None)
    r_idx = next((i for i, s in enumerate(names) if s.startswith("re-map")), None)
    if k_idx is not None and r_idx is not None:
        elbow(box_w / 2, box_w / 2 + 0.5, ys[k_idx], ys[r_idx], "#2471a3")
        ax.text(box_w / 2 + 0.6, (ys[k_idx] + ys[r_idx]) / 2, "same kernels K", rotation=-90,
                ha="left", va="center", color="#2471a3", fontsize=9)
    ax.set_xlim(-box_w / 2 - 1.3, box_w / 2 + 1.3)
    ax.set_ylim(ys[-1] - 0.6, ys[0] + 0.6)
    ax.axis("off")
    return ax.figure


def plot_attention_step(attention, centers, *, image=None, title: str | None = None,
                        threshold: float | None = None, vmax: float | None = None, axes: Sequence | None = None,
                        labels: bool = True):
    """One attention matrix twice: as a heat map, and as arrows between the node centres.

    Args:
        attention: ``[N, N]`` (receiver ``i``, sender ``j``; rows sum to one).
        centers: ``[N, 2]`` node positions ``(x, y)`` in pixels.
        image: optional ``[H, W]`` map under the arrows (grey, with its colour bar).
        title: the figure's title.
        threshold: arrows for ``a[i, j] > threshold`` only (default ``1 / N``).
        vmax: top of the heat map's colour scale (default: the largest entry).
        axes: two axes (heat map, arrows); a new ``1 x 2`` figure when ``None``.
        labels: write the node indices next to the nodes (else a colour legend below).

    Returns:
        the figure.
    """
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(8.4, 3.6), constrained_layout=True)
    if len(axes) != 2:
        raise ValueError(f"need 2 axes (heat map, arrows), got {len(axes)}")
    heat, arrows = axes
    plot_attention(attention, ax=heat, title="attention a_ij", vmax=vmax)
    n = _numpy(attention).shape[0]
    threshold = 1.0 / n if threshold is None else threshold
    if image is not None:
        grey = arrows.imshow(_numpy(image), cmap="gray")
        arrows.figure.colorbar(grey, ax=arrows, fraction=0.046, pad=0.04)
    drawn = plot_attention_arrows(arrows, centers, attention, threshold, image=None, labels=labels)
    if not labels:
        node_legend(arrows, n)
    if image is not None:
        h, w = _numpy(image).shape
        arrows.set_xlim(-0.5, w - 0.5)
        arrows.set_ylim(h - 0.5, -0.5)
    arrows.set_title(f"arrows j → i where a_ij > {threshold:.2f} ({len(drawn)})")
    if title:
        heat.figure.suptitle(title)
    return heat.figure


def plot_attention_steps(attentions, centers, steps: Sequence[int], *, image=None, label: str = "step",
                         threshold: float | None = None):
    """:func:`plot_attention_step` at a few of ``S`` recorded steps, one column each, on one colour scale.

    Args:
        attentions: ``[S, N, N]``, one attention matrix per recorded step (training steps,
            graph iterations, frames ...).
        centers: ``[N, 2]`` node positions ``(x, y)``, or ``[S, N, 2]`` when they move.
        steps: which of the ``S`` to show.
        image: optional ``[H, W]`` map under the arrows.
        label: what a step is, for the column titles.

    Returns:
        the figure (top row heat maps, bottom row arrows).
    """
    a = _numpy(attentions)
    if a.ndim != 3 or a.shape[1] != a.shape[2]:
        raise ValueError(f"attentions must be [S, N, N], got shape {a.shape}")
    c = _numpy(centers)
    c = np.broadcast_to(c, (a.shape[0],) + c.shape[-2:])
    fig, axes = plt.subplots(2, len(steps), figsize=(3.6 * len(steps), 6.6), constrained_layout=True, squeeze=False)
    vmax = float(a[list(steps)].max())
    for col, s in enumerate(steps):
        plot_attention_step(a[s], c[s], image=image, vmax=vmax, threshold=threshold, axes=axes[:, col])
        axes[0, col].set_title(f"{label} {s}: attention a_ij")
    return fig


def attention_explorer(attentions, centers, *, image=None, label: str = "step", threshold: float | None = None):
    """An ``ipywidgets.interactive`` with one slider over the ``S`` recorded attention
    matrices, redrawing :func:`plot_attention_step` (heat map and arrows) at each.

    Args:
        attentions: ``[S, N, N]``; centers: ``[N, 2]`` or ``[S, N, 2]``; image: optional ``[H, W]``.
        label: the slider's name (``"step"``, ``"iteration"`` ...).

    Returns:
        the widget; ``display`` it. ``widget.result`` holds the last drawn figure.
    """
    import ipywidgets as widgets

    a = _numpy(attentions)
    if a.ndim != 3 or a.shape[1] != a.shape[2]:
        raise ValueError(f"attentions must be [S, N, N], got shape {a.shape}")
    c = np.broadcast_to(_numpy(centers), (a.shape[0],) + _numpy(centers).shape[-2:])
    vmax = float(a.max())

    def draw(**kwargs):
        s = kwargs[label]
        fig = plot_attention_step(a[s], c[s], image=image, vmax=vmax, threshold=threshold,
                                  title=f"{label} {s} of {a.shape[0] - 1}")
        plt.close(fig)  # interactive displays the returned figure once
        return fig

    slider = widgets.IntSlider(value=0, min=0, max=a.shape[0] - 1, step=1, description=label,
                               continuous_update=False)
    return widgets.interactive(draw, **{label: slider})
