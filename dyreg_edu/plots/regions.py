r"""Figures of regions and kernels (paper Eq. 5-7, 12-14), and the region explorer widget.

Coordinates follow :mod:`dyreg_edu.kernels`: the pixel in row ``p``, column ``q`` sits at
``(x=q, y=p)``; a region is ``(cx, cy, sx, sy)``, its centre and half-extent in pixels.
``imshow`` with its default extent puts pixel centres exactly on those integer points, so
regions can be drawn on top of a map without any conversion.

Every function draws on the axes it is given (or on a new figure) and returns what it
drew; nothing is shown or saved here, and importing the module does nothing else.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from ..kernels import pool_nodes, region_kernels
from ..regions import initial_size, region_center, region_size
from .style import node_colors, region_rectangle

__all__ = [
    "node_colors",
    "draw_regions",
    "plot_kernels",
    "plot_region",
    "region_explorer",
    "draw_trajectory",
    "plot_alpha_constraints",
]




def _as_map(image: Tensor) -> Tensor:
    """``[H, W]`` or ``[C, H, W]`` -> ``[C, H, W]`` float (a copy on the CPU, no grad)."""
    image = torch.as_tensor(image).detach().float().cpu()
    if image.dim() == 2:
        image = image[None]
    if image.dim() != 3:
        raise ValueError(f"image must be [H, W] or [C, H, W], got {tuple(image.shape)}")
    return image


def _show_map(ax: Axes, image: Tensor, cmap: str = "gray"):
    """Draw ``[C, H, W]``: one channel as a grey map, three as RGB (clipped to [0, 1])."""
    if image.shape[0] == 3:
        return ax.imshow(image.permute(1, 2, 0).clamp(0, 1).numpy())
    return ax.imshow(image.mean(0).numpy(), cmap=cmap)


def draw_regions(
    ax: Axes,
    regions: Tensor,
    *,
    colors: Sequence | None = None,
    centers: bool = True,
    labels: bool = False,
    linewidth: float = 1.5,
    alpha: float = 1.0,
    linestyle: str = "-",
) -> list[Rectangle]:
    """Draw each region ``(cx, cy, sx, sy)`` as the rectangle ``c ± s`` (the support of its
    kernel, Eq. 6), with its centre as a dot and optionally its node index.

    Args:
        ax: the axes of a map drawn with ``imshow`` (pixel centres at integer points).
        regions: ``[N, 4]`` (or ``[4]`` for one region).
        colors: one colour per node; default :func:`node_colors`.

    Returns:
        the ``N`` rectangles added to ``ax``.
    """
    regions = torch.as_tensor(regions).detach().float().cpu().reshape(-1, 4)
    colors = list(colors) if colors is not None else node_colors(len(regions))
    patches = []
    for i, (cx, cy, sx, sy) in enumerate(regions.tolist()):
        color = colors[i % len(colors)]
        rect = region_rectangle(ax, (cx, cy, sx, sy), color=color, linewidth=linewidth, linestyle=linestyle)
        rect.set_alpha(alpha)
        patches.append(rect)
        if centers:
            ax.plot([cx], [cy], "o", color=color, markersize=4, alpha=alpha)
        if labels:
            ax.annotate(str(i), (cx, cy), xytext=(3, 3), textcoords="offset points", color=color,
                        fontsize=8, fontweight="bold")
    return patches


def plot_kernels(
    kernels: Tensor,
    *,
    ncols: int | None = None,
    titles: Sequence[str] | None = None,
    regions: Tensor | None = None,
    cmap: str = "viridis",
    size: float = 2.0,
    shared_scale: bool = True,
) -> Figure:
    """A grid of ``N`` kernels ``[N, H, W]`` (Eq. 5), one panel each, on a shared colour scale
    (or each on its own with ``shared_scale=False``).

    ``regions`` (``[N, 4]``), if given, are outlined on their own kernel.
    Returns the figure; its first ``N`` axes hold one image each.
    """
    kernels = torch.as_tensor(kernels).detach().float().cpu()
    if kernels.dim() == 2:
        kernels = kernels[None]
    if kernels.dim() != 3:
        raise ValueError(f"kernels must be [N, H, W], got {tuple(kernels.shape)}")
    n = len(kernels)
    ncols = ncols or min(n, 5)
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    vmax = float(kernels.max())
    colors = node_colors(n)
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(kernels[i].numpy(), cmap=cmap, vmin=0, vmax=vmax if shared_scale else None)
        if regions is not None:
            draw_regions(ax, torch.as_tensor(regions)[i], colors=[colors[i]], centers=False)
            ax.set_xlim(-0.5, kernels.shape[-1] - 0.5)
            ax.set_ylim(kernels.shape[-2] - 0.5, -0.5)
        ax.set_title(titles[i] if titles is not None else f"node {i}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_region(
    image: Tensor,
    region: Sequence[float] | Tensor,
    *,
    axes: Sequence[Axes] | None = None,
    normalize: bool = True,
    cmap: str = "gray",
) -> Figure:
    r"""One region on a map: the map with the region's support, its kernel, its pooled value.

    Left panel: the map (``[H, W]``, or ``[C, H, W]`` shown as RGB for C = 3, else as the
    channel mean) with the rectangle ``c ± s``. Right panel: the kernel
    :math:`\mathcal K = k_y k_x^\top` (Eq. 5-6), titled with the pooled feature
    :math:`v = \sum_{p,q} \mathcal K(p, q)\, X(:, p, q)` (Eq. 7).

    Args:
        image: ``[H, W]`` or ``[C, H, W]``.
        region: ``(cx, cy, sx, sy)`` in pixels.
        axes: two axes to draw on; default a new ``1 x 2`` figure.
        normalize: divide the kernel by its sum (the authors' code) or not (Eq. 7 as written).

    Returns:
        the figure.
    """
    image = _as_map(image)
    region_t = torch.as_tensor(region, dtype=torch.float32).reshape(1, 4)
    _, height, width = image.shape
    kernel = region_kernels(region_t, height, width, normalize=normalize)  # [1, H, W]
    pooled = pool_nodes(image, kernel)[0]  # [C]
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.8))
    else:
        fig = axes[0].figure
    ax_map, ax_kernel = axes
    _show_map(ax_map, image, cmap)
    draw_regions(ax_map, region_t, colors=["tab:orange"], linewidth=2)
    ax_map.set_xlim(-0.5, width - 0.5)
    ax_map.set_ylim(height - 0.5, -0.5)
    cx, cy, sx, sy = region_t[0].tolist()
    ax_map.set_title(f"map and region c=({cx:.2f}, {cy:.2f}), s=({sx:.2f}, {sy:.2f})", fontsize=9)
    ax_kernel.imshow(kernel[0].numpy(), cmap="viridis", vmin=0)
    values = ", ".join(f"{v:.3f}" for v in pooled[:3].tolist()) + (", ..." if len(pooled) > 3 else "")
    kind = "normalised" if normalize else "raw"
    ax_kernel.set_title(f"{kind} kernel (Eq. 5); pooled v = ({values})", fontsize=9)
    for ax in axes:
        ax.set_xlabel("x (column)")
    ax_map.set_ylabel("y (row)")
    fig.tight_layout()
    return fig


def region_explorer(
    image: Tensor,
    region: Sequence[float] | None = None,
    *,
    normalize: bool = True,
    max_size: float | None = None,
):
    """An ``ipywidgets.interactive`` with four sliders, ``cx, cy, w, h`` (``w = sx``,
    ``h = sy`` as in Eq. 6), that redraws :func:`plot_region` on every change.

    Args:
        image: ``[H, W]`` or ``[C, H, W]``.
        region: the sliders' start ``(cx, cy, sx, sy)``; default the centre of the map
            with the authors' initial size ``H / 6 + 2``.
        max_size: the sliders' largest half-extent; default half the map's larger side.

    Returns:
        the widget; ``display`` it. ``widget.result`` holds the last drawn figure.
    """
    import ipywidgets as widgets

    image = _as_map(image)
    _, height, width = image.shape
    if region is None:
        region = (width / 2, height / 2, initial_size(width, 3), initial_size(height, 3))
    cx, cy, sx, sy = (float(v) for v in region)
    max_size = max_size or max(height, width) / 2

    def slider(value, low, high, description):
        return widgets.FloatSlider(value=value, min=low, max=high, step=0.05, description=description,
                                   continuous_update=False, readout_format=".2f")

    def draw(cx, cy, w, h):
        fig = plot_region(image, (cx, cy, w, h), normalize=normalize)
        plt.close(fig)  # interactive displays the returned figure once
        return fig

    return widgets.interactive(
        draw,
        cx=slider(cx, 0.0, width - 1.0, "cx"),
        cy=slider(cy, 0.0, height - 1.0, "cy"),
        w=slider(sx, 0.2, max_size, "w (sx)"),
        h=slider(sy, 0.2, max_size, "h (sy)"),
    )


def draw_trajectory(
    ax: Axes,
    regions: Tensor,
    *,
    color="tab:orange",
    boxes: int = 4,
    label: str | None = None,
) -> None:
    """The path of a region's centre over steps ``[S, 4]``, with ``boxes`` of its rectangles
    (first, last and evenly spaced between), fading from light to solid."""
    regions = torch.as_tensor(regions).detach().float().cpu()
    ax.plot(regions[:, 0].numpy(), regions[:, 1].numpy(), "-", color=color, linewidth=1.5, label=label)
    ax.plot([regions[0, 0]], [regions[0, 1]], "s", color=color, markersize=5)
    ax.plot([regions[-1, 0]], [regions[-1, 1]], "*", color=color, markersize=11)
    steps = torch.linspace(0, len(regions) - 1, max(boxes, 2)).round().long().unique()
    for k, step in enumerate(steps.tolist()):
        draw_regions(ax, regions[step], colors=[color], centers=False,
                     alpha=0.3 + 0.7 * k / max(len(steps) - 1, 1), linestyle="--" if k < len(steps) - 1 else "-")


def plot_alpha_constraints(
    length: int = 16,
    cells: int = 3,
    anchors: Sequence[float] | None = None,
    offsets: Tensor | None = None,
) -> Figure:
    r"""The constraints :math:`\alpha` of Eq. 12-14, the paper's and the authors' code side by side.

    Left: the size (half-extent) against its offset :math:`\tilde w`:
    paper :math:`e^{\tilde w} L/(2\,cells)`, code :math:`e^{\tilde w}(L/(2\,cells)+1)+1`.
    Right: the centre against its offset :math:`\Delta\tilde x` for each anchor: the paper's
    tanh (Eq. 13, in ``(0, L)``) and the code's, clamped to ``[0, L-1]``.

    Args:
        length: ``L``, the map side.
        cells: the node grid's cells on this axis (3 for N = 9).
        anchors: anchor positions; default the centre ``L/2`` and the first grid cell's centre.
        offsets: ``[K]`` offsets to plot over; default ``linspace(-3, 3)``.

    Returns:
        the figure (two axes).
    """
    offsets = torch.linspace(-3, 3, 301) if offsets is None else torch.as_tensor(offsets, dtype=torch.float32)
    if anchors is None:
        anchors = (length / 2, length / (2 * cells))
    fig, (ax_size, ax_center) = plt.subplots(1, 2, figsize=(10, 3.8))
    ax_size.plot(offsets, region_size(offsets, length, cells, plus_one=False), label=r"paper: $e^{\tilde w} L/6$")
    ax_size.plot(offsets, region_size(offsets, length, cells, plus_one=True),
                 label=r"code: $e^{\tilde w}(L/6+1)+1$")
    ax_size.axhline(1.0, color="gray", linestyle=":", label="size 1 (bilinear)")
    ax_size.set_yscale("log")
    ax_size.set_xlabel(r"size offset $\tilde w$")
    ax_size.set_ylabel("half-extent s (pixels, log scale)")
    ax_size.set_title(f"Eq. 12, L = {length}", fontsize=10)
    ax_size.legend(fontsize=8)
    for k, anchor in enumerate(anchors):
        color = node_colors(len(anchors))[k]
        a = torch.tensor(float(anchor))
        ax_center.plot(offsets, region_center(offsets, a, length, clamp=False), color=color, linestyle="--",
                       label=f"paper, anchor {anchor:.2f}")
        ax_center.plot(offsets, region_center(offsets, a, length, clamp=True), color=color,
                       label=f"code (clamped), anchor {anchor:.2f}")
    for y in (0, length - 1, length):
        ax_center.axhline(y, color="gray", linestyle=":", linewidth=1)
    ax_center.set_xlabel(r"centre offset $\Delta\tilde x$")
    ax_center.set_ylabel("centre c (pixels)")
    ax_center.set_title(f"Eq. 13, L = {length}: c in (0, L) paper, [0, L-1] code", fontsize=10)
    ax_center.legend(fontsize=7)
    fig.tight_layout()
    return fig
