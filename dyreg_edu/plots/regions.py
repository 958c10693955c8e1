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
from .style import node_color, node_colors, region_rectangle

__all__ = [
    "node_colors",
    "draw_regions",
    "plot_kernels",
    "region_loss_gradient",
    "draw_descent_arrow",
    "plot_region",
    "plot_region_gradients",
    "region_explorer",
    "draw_trajectory",
    "plot_alpha_constraints",
    "plot_alpha_point",
    "alpha_explorer",
]

#: Colour of the descent arrow (not a node colour: it is drawn over the node's rectangle).
ARROW_COLOR = "yellow"

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
    colorbar: bool = True,
) -> Figure:
    """A grid of ``N`` kernels ``[N, H, W]`` (Eq. 5), one panel each, on a shared colour scale
    (or each on its own with ``shared_scale=False``).

    ``regions`` (``[N, 4]``), if given, are outlined on their own kernel. ``colorbar`` adds the
    kernel weight's colour bar: one for the figure on a shared scale, else one per panel.
    Returns the figure; its first ``N`` axes hold one image each (colour bars come after).
    """
    kernels = torch.as_tensor(kernels).detach().float().cpu()
    if kernels.dim() == 2:
        kernels = kernels[None]
    if kernels.dim() != 3:
        raise ValueError(f"kernels must be [N, H, W], got {tuple(kernels.shape)}")
    n = len(kernels)
    ncols = ncols or min(n, 5)
    nrows = -(-n // ncols)
    width = size * ncols * (1.25 if colorbar and not shared_scale else 1.0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, size * nrows), squeeze=False)
    vmax = float(kernels.max())
    colors = node_colors(n)
    images = []
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        images.append(ax.imshow(kernels[i].numpy(), cmap=cmap, vmin=0, vmax=vmax if shared_scale else None))
        if regions is not None:
            draw_regions(ax, torch.as_tensor(regions)[i], colors=[colors[i]], centers=False)
            ax.set_xlim(-0.5, kernels.shape[-1] - 0.5)
            ax.set_ylim(kernels.shape[-2] - 0.5, -0.5)
        ax.set_title(titles[i] if titles is not None else f"node {i}", fontsize=9)
        if colorbar and not shared_scale:
            fig.colorbar(images[-1], ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=7)
    fig.tight_layout()
    if colorbar and shared_scale:
        fig.colorbar(images[0], ax=list(axes.flat), fraction=0.02, pad=0.01, label="kernel weight")
    return fig


def region_loss_gradient(
    image: Tensor,
    region: Sequence[float] | Tensor,
    target: Sequence[float] | Tensor,
    *,
    normalize: bool = True,
) -> tuple[float, Tensor, Tensor]:
    r"""The loss :math:`L = \lVert v - v^\ast \rVert^2` of one region's pooled feature (Eq. 7)
    against a target, and its gradient with respect to the region.

    Args:
        image: ``[H, W]`` or ``[C, H, W]``.
        region: ``(cx, cy, sx, sy)`` in pixels.
        target: ``[C]``, the feature :math:`v^\ast` the region should pool.

    Returns:
        ``(loss, grad, pooled)``: the loss, ``[4]`` = :math:`\partial L / \partial (c_x, c_y, s_x, s_y)`,
        and the pooled feature ``[C]``. Gradient descent moves the centre along ``-grad[:2]``
        and grows a size whose gradient is negative.
    """
    image = _as_map(image)
    _, height, width = image.shape
    region_t = torch.as_tensor(region, dtype=torch.float32).detach().reshape(4).clone().requires_grad_(True)
    target_t = torch.as_tensor(target, dtype=torch.float32).reshape(-1)
    if target_t.shape[0] != image.shape[0]:
        raise ValueError(f"target has {target_t.shape[0]} values, the map {image.shape[0]} channels")
    pooled = pool_nodes(image, region_kernels(region_t[None], height, width, normalize=normalize))[0]
    loss = ((pooled - target_t) ** 2).sum()
    (grad,) = torch.autograd.grad(loss, region_t)
    return loss.item(), grad, pooled.detach()


def draw_descent_arrow(ax: Axes, region: Sequence[float] | Tensor, grad: Tensor, *, length: float = 3.0,
                       color=ARROW_COLOR) -> bool:
    r"""An arrow from the region's centre along :math:`-\partial L / \partial (c_x, c_y)`, the
    direction in which the loss decreases fastest, ``length`` pixels long whatever the gradient's
    magnitude. Returns ``False`` (and draws nothing) when the centre's gradient is zero."""
    cx, cy = (float(v) for v in torch.as_tensor(region).reshape(-1)[:2])
    step = -torch.as_tensor(grad, dtype=torch.float32).reshape(-1)[:2]
    norm = float(step.norm())
    if norm < 1e-12:
        return False
    dx, dy = (step / norm * length).tolist()
    ax.annotate("", xy=(cx + dx, cy + dy), xytext=(cx, cy),
                arrowprops=dict(arrowstyle="-|>", color=color, linewidth=2, mutation_scale=14), zorder=5)
    return True


def _gradient_text(loss: float, grad: Tensor) -> str:
    gx, gy, gw, gh = grad.tolist()

    def way(g):
        return "grow" if g < 0 else "shrink" if g > 0 else "stay"

    return (f"L = {loss:.4f}; -dL/dc = ({-gx:+.3f}, {-gy:+.3f})\n"
            f"dL/ds = ({gw:+.3f}, {gh:+.3f}): sx {way(gw)}s, sy {way(gh)}s")


def plot_region(
    image: Tensor,
    region: Sequence[float] | Tensor,
    *,
    axes: Sequence[Axes] | None = None,
    normalize: bool = True,
    cmap: str = "gray",
    target: Sequence[float] | Tensor | None = None,
) -> Figure:
    r"""One region on a map: the map with the region's support, its kernel, its pooled value.

    Left panel: the map (``[H, W]``, or ``[C, H, W]`` shown as RGB for C = 3, else as the
    channel mean) with the rectangle ``c ± s``. Right panel: the kernel
    :math:`\mathcal K = k_y k_x^\top` (Eq. 5-6) with its colour bar, titled with the pooled
    feature :math:`v = \sum_{p,q} \mathcal K(p, q)\, X(:, p, q)` (Eq. 7).

    Args:
        image: ``[H, W]`` or ``[C, H, W]``.
        region: ``(cx, cy, sx, sy)`` in pixels.
        axes: two axes to draw on; default a new ``1 x 2`` figure.
        normalize: divide the kernel by its sum (the authors' code) or not (Eq. 7 as written).
        target: ``[C]``; if given, the loss :math:`\lVert v - v^\ast \rVert^2` is computed and
            the map shows the centre's descent direction as an arrow
            (:func:`draw_descent_arrow`) and, under it, the loss and the size gradient.

    Returns:
        the figure.
    """
    image = _as_map(image)
    region_t = torch.as_tensor(region, dtype=torch.float32).detach().reshape(1, 4)
    _, height, width = image.shape
    kernel = region_kernels(region_t, height, width, normalize=normalize)  # [1, H, W]
    pooled = pool_nodes(image, kernel)[0]  # [C]
    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(8.4, 4.2 if target is not None else 3.8))
    else:
        fig = axes[0].figure
    ax_map, ax_kernel = axes
    _show_map(ax_map, image, cmap)
    draw_regions(ax_map, region_t, colors=["tab:orange"], linewidth=2)
    ax_map.set_xlim(-0.5, width - 0.5)
    ax_map.set_ylim(height - 0.5, -0.5)
    cx, cy, sx, sy = region_t[0].tolist()
    ax_map.set_title(f"map and region c=({cx:.2f}, {cy:.2f}), s=({sx:.2f}, {sy:.2f})", fontsize=9)
    shown = ax_kernel.imshow(kernel[0].numpy(), cmap="viridis", vmin=0)
    fig.colorbar(shown, ax=ax_kernel, fraction=0.046, pad=0.03)
    values = ", ".join(f"{v:.3f}" for v in pooled[:3].tolist()) + (", ..." if len(pooled) > 3 else "")
    kind = "normalised" if normalize else "raw"
    ax_kernel.set_title(f"{kind} kernel (Eq. 5); pooled v = ({values})", fontsize=9)
    ax_kernel.set_xlabel("x (column)")
    ax_map.set_ylabel("y (row)")
    if target is None:
        ax_map.set_xlabel("x (column)")
    else:
        loss, grad, _ = region_loss_gradient(image, region_t[0], target, normalize=normalize)
        draw_descent_arrow(ax_map, region_t[0], grad)
        ax_map.set_xlabel("x (column)\n" + _gradient_text(loss, grad), fontsize=8)
    fig.tight_layout()
    return fig


def plot_region_gradients(
    image: Tensor,
    regions: Tensor,
    target: Sequence[float] | Tensor,
    *,
    normalize: bool = True,
    cmap: str = "gray",
    size: float = 3.2,
) -> Figure:
    r"""The descent direction of the loss :math:`\lVert v - v^\ast \rVert^2` at several regions
    ``[K, 4]``, one panel each: the map, the region, the arrow along
    :math:`-\partial L/\partial(c_x, c_y)` and, under the panel, the loss and the size gradient.
    What :func:`region_explorer` with a ``target`` shows, for the printed page.

    Returns:
        the figure, one axes per region.
    """
    image = _as_map(image)
    regions = torch.as_tensor(regions, dtype=torch.float32).detach().reshape(-1, 4)
    _, height, width = image.shape
    fig, axes = plt.subplots(1, len(regions), figsize=(size * len(regions), size + 0.9), squeeze=False)
    for ax, region in zip(axes[0], regions):
        _show_map(ax, image, cmap)
        draw_regions(ax, region, colors=["tab:orange"], linewidth=2)
        loss, grad, _ = region_loss_gradient(image, region, target, normalize=normalize)
        draw_descent_arrow(ax, region, grad)
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
        cx, cy, sx, sy = region.tolist()
        ax.set_title(f"c=({cx:.1f}, {cy:.1f}), s=({sx:.2f}, {sy:.2f})", fontsize=9)
        ax.set_xlabel(_gradient_text(loss, grad), fontsize=7.5)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def region_explorer(
    image: Tensor,
    region: Sequence[float] | None = None,
    *,
    normalize: bool = True,
    max_size: float | None = None,
    target: Sequence[float] | Tensor | None = None,
):
    """An ``ipywidgets.interactive`` with four sliders, ``cx, cy, w, h`` (``w = sx``,
    ``h = sy`` as in Eq. 6), that redraws :func:`plot_region` on every change.

    Args:
        image: ``[H, W]`` or ``[C, H, W]``.
        region: the sliders' start ``(cx, cy, sx, sy)``; default the centre of the map
            with the authors' initial size ``H / 6 + 2``.
        max_size: the sliders' largest half-extent; default half the map's larger side.
        target: ``[C]``; if given, every redraw also shows the descent direction of the
            loss :math:`\\lVert v - v^\\ast \\rVert^2` as an arrow, and the size gradient as text.

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
        fig = plot_region(image, (cx, cy, w, h), normalize=normalize, target=target)
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


def _alpha(offsets: Tensor, anchors: Sequence[float], length: int, cells: int, code: bool) -> Tensor:
    """``(dx, dy, dw, dh)`` pre-activation offsets ``[4]`` -> the region ``(cx, cy, sx, sy)`` (Eq. 12-14)."""
    dx, dy, dw, dh = offsets.unbind(-1)
    return torch.stack([
        region_center(dx, torch.tensor(float(anchors[0])), length, clamp=code),
        region_center(dy, torch.tensor(float(anchors[1])), length, clamp=code),
        region_size(dw, length, cells, plus_one=code),
        region_size(dh, length, cells, plus_one=code),
    ])


def plot_alpha_point(
    raw: Sequence[float],
    gamma: float = 1.0,
    *,
    length: int = 16,
    cells: int = 3,
    anchor: Sequence[float] | None = None,
    form: str = "code",
    axes: Sequence[Axes] | None = None,
) -> Figure:
    r"""One point of the constraints :math:`\alpha` (Eq. 11-14): the raw outputs
    :math:`W_o z = (x, y, w, h)` times :math:`\gamma` give the offsets
    :math:`\tilde o = \gamma\, W_o z`, which the centre's tanh (Eq. 13-14) and the size's
    exponential (Eq. 12) turn into a region on an ``length x length`` map.

    Panels: (1) the centre against its offset, the current :math:`\Delta\tilde x`,
    :math:`\Delta\tilde y` marked; (2) the half-extent against its offset, :math:`\tilde w`,
    :math:`\tilde h` marked; (3) the region's kernel on the map, with its colour bar, the
    rectangle ``c ± s`` and the anchor (+).

    Args:
        raw: the four outputs of :math:`W_o z`, paper order ``(x, y, w, h)``.
        gamma: one value for all four entries of :math:`\gamma` (Eq. 11).
        length: the map side ``L`` (square map).
        cells: sizes start at ``L / (2 cells)`` (+2 in code), ``L / 6`` for the default 3.
        anchor: ``(ax, ay)``; default the centre ``(L/2, L/2)`` (the paper's).
        form: ``"code"`` (the authors' ``+1`` terms and clamp) or ``"paper"`` (Eq. 12-14 as printed).
        axes: three axes to draw on; default a new ``1 x 3`` figure.

    Returns:
        the figure.
    """
    if form not in ("code", "paper"):
        raise ValueError(f"form must be 'code' or 'paper', got {form!r}")
    code = form == "code"
    anchor = (length / 2, length / 2) if anchor is None else tuple(float(a) for a in anchor)
    offsets = float(gamma) * torch.as_tensor(raw, dtype=torch.float32).reshape(4)
    region = _alpha(offsets, anchor, length, cells, code)
    if axes is None:
        fig, axes = plt.subplots(1, 3, figsize=(12.5, 3.7), gridspec_kw={"width_ratios": [1, 1, 1.15]})
    else:
        fig = axes[0].figure
    ax_center, ax_size, ax_map = axes
    low = min(-3.0, float(offsets.min()) - 0.5)
    high = max(3.0, float(offsets.max()) + 0.5)
    grid = torch.linspace(low, high, 301)
    color = node_color(0)
    for k, (axis, style, marker) in enumerate((("x", "-", "o"), ("y", "--", "s"))):
        curve = region_center(grid, torch.tensor(anchor[k]), length, clamp=code)
        ax_center.plot(grid, curve, style, color="black" if k == 0 else "dimgray",
                       label=f"c{axis}, anchor {anchor[k]:.2f}")
        ax_center.plot([offsets[k]], [region[k]], marker, color=color, markersize=8,
                       markeredgecolor="black", label=f"c{axis} = {region[k]:.2f}")
    for y in (0, length - 1, length):
        ax_center.axhline(y, color="gray", linestyle=":", linewidth=1)
    ax_center.set_xlabel(r"centre offset $\Delta\tilde x$, $\Delta\tilde y$")
    ax_center.set_ylabel("centre (pixels)")
    ax_center.set_title(("code: tanh, clamped to [0, L-1]" if code else "paper: tanh into (0, L)")
                        + " (Eq. 13-14)", fontsize=9)
    ax_center.legend(fontsize=7, loc="upper left")
    size_curve = region_size(grid, length, cells, plus_one=code)
    base = f"L/{2 * cells}"
    ax_size.plot(grid, size_curve, color="black",
                 label=f"code: $e^{{\\tilde w}}({base}+1)+1$" if code else f"paper: $e^{{\\tilde w}} {base}$")
    for k, (axis, marker) in enumerate((("x", "o"), ("y", "s"))):
        ax_size.plot([offsets[2 + k]], [region[2 + k]], marker, color=color, markersize=8,
                     markeredgecolor="black", label=f"s{axis} = {region[2 + k]:.2f}")
    ax_size.axhline(1.0, color="gray", linestyle=":", linewidth=1)
    ax_size.set_yscale("log")
    ax_size.set_xlabel(r"size offset $\tilde w$, $\tilde h$")
    ax_size.set_ylabel("half-extent (pixels, log scale)")
    ax_size.legend(fontsize=7, loc="upper left")
    kernel = region_kernels(region[None], length, length)[0]
    empty = float(kernel.max()) == 0.0  # a paper-form size below 1 can fall between pixels
    shown = ax_map.imshow(kernel.numpy(), cmap="Greys", vmin=0, vmax=1.0 if empty else None)
    fig.colorbar(shown, ax=ax_map, fraction=0.046, pad=0.03, label="kernel weight")
    region_rectangle(ax_map, region, color=color, linewidth=2)
    ax_map.plot([anchor[0]], [anchor[1]], "+", color="black", markersize=12, markeredgewidth=2)
    cx, cy, sx, sy = region.tolist()
    ax_map.set_xlim(min(-2.5, cx - sx - 1), max(length + 1.5, cx + sx + 1))
    ax_map.set_ylim(max(length + 1.5, cy + sy + 1), min(-2.5, cy - sy - 1))
    ax_map.add_patch(plt.Rectangle((-0.5, -0.5), length, length, fill=False, edgecolor="gray", linewidth=1))
    if empty:
        ax_map.set_xlabel("no pixel inside c ± s: the kernel is zero", fontsize=8)
    ax_map.set_title(f"{form}: c=({cx:.2f}, {cy:.2f}), s=({sx:.2f}, {sy:.2f})", fontsize=9)
    ax_size.set_title(rf"exp (Eq. 12); $\gamma$ = {float(gamma):g}, $W_o z$ = ({', '.join(f'{v:g}' for v in raw)})"
                      "\n" rf"offsets $\tilde o = \gamma W_o z$ = ({', '.join(f'{v:.2f}' for v in offsets.tolist())})",
                      fontsize=9)
    fig.tight_layout()
    return fig


def alpha_explorer(length: int = 16, cells: int = 3, anchor: Sequence[float] | None = None):
    r"""An ``ipywidgets.interactive`` over :func:`plot_alpha_point`: sliders for the four raw
    outputs of :math:`W_o z` and for :math:`\gamma`, and a paper / code switch.

    Returns:
        the widget; ``display`` it. ``widget.result`` holds the last drawn figure.
    """
    import ipywidgets as widgets

    def slider(value, low, high, description):
        return widgets.FloatSlider(value=value, min=low, max=high, step=0.05, description=description,
                                   continuous_update=False, readout_format=".2f")

    def draw(x, y, w, h, gamma, form):
        fig = plot_alpha_point((x, y, w, h), gamma, length=length, cells=cells, anchor=anchor, form=form)
        plt.close(fig)  # interactive displays the returned figure once
        return fig

    return widgets.interactive(
        draw,
        x=slider(1.0, -3.0, 3.0, "(W_o z)_x"),
        y=slider(-0.5, -3.0, 3.0, "(W_o z)_y"),
        w=slider(0.5, -3.0, 3.0, "(W_o z)_w"),
        h=slider(-0.5, -3.0, 3.0, "(W_o z)_h"),
        gamma=slider(1.0, 0.0, 2.0, "gamma"),
        form=widgets.ToggleButtons(options=["code", "paper"], value="code", description="form"),
    )
