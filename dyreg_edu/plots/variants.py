r"""Figures for the DyReg block's variants (paper Tables 5, 6 and 9): the regions and
kernels each variant gives on the same input, and a selector over the variants.

Pure, like the other figure modules: the chapter runs the blocks and passes their ``aux``
dictionaries (``aux["kernels"]`` ``[B, T, N, H, W]``, ``aux["regions"]`` ``[B, T, N, 4]``
when the variant has regions) and parameter counts; nothing here builds a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .graph import node_legend, plot_regions
from .style import as_numpy as _numpy
from .style import node_color, region_rectangle

#: For each variant: what it changes relative to DyReg-GNN, and where our version comes from.
VARIANT_NOTES: dict[str, tuple[str, str]] = {
    "dyreg": ("the full model: centres and sizes predicted at every frame",
              "the authors' release (ops/dyreg.py), equal on their golden files"),
    "pos_only": ("sizes fixed at H/6 + 1; centres still predicted at every frame",
                 "pre-release code (constrained_fix_size); the release accepts the name but runs dyreg"),
    "constant_time": ("one set of centres per video (the region GRU's last state), fixed size",
                      "our reconstruction from the paper's words (no code)"),
    "static": ("learned latents z_i: the same centres for every video and frame, fixed size",
               "our reconstruction from the paper's words (no code)"),
    "fixed": ("no region generator: area kernels of a 3 x 3 grid that tile the map",
              "our reconstruction (the release crashes; the pre-release loaded these filters from a pickle)"),
    "semantic": ("no regions: each node pools the whole map with predicted weights (softmax)",
                 "pre-release code (crashed there), with our softmax normalisation"),
    "lite": ("g_i = a global pooling with positions, no f: a cheaper region generator",
             "the authors' release (offset_generator='small'), equal on their golden file"),
    "no_gru": ("the region GRU of Eq. 3 removed: z_t = m_t (the LayerNorms kept)",
               "our reconstruction from Table 9 (no code)"),
    "oracle": ("no region generator: the regions are the digits' ground-truth boxes, one node per digit",
               "Appendix E.6's upper bound (no code: our reading, tents that cover each box)"),
    # the other readings of the paper's words, as switches of DyRegBlock
    "static, learn_size=True": ("as static, but the learned z_i also set each node's size",
                                "the other reading of 'the features z_i become learnable'"),
    "fixed, fixed_pooling='tent'": ("as fixed, but tents of the fixed-size variants' size at the grid anchors",
                                    "the other reading: Fixed -> Static then changes only learned positions"),
}


def plot_variant_frames(axes: Sequence, aux: Mapping, frames: Sequence[int], *, video: int = 0,
                        vmax: float | None = None, labels: bool = False):
    """One variant at a few frames: the sum of its nodes' kernels, and its regions if it has any.

    Args:
        axes: one axes per frame.
        aux: a block's ``aux`` (``kernels`` ``[B, T, N, H, W]``, optional ``regions`` ``[B, T, N, 4]``).
        frames: the frames to show.
        video: which video of the batch.
        vmax: top of the colour scale (default: the largest kernel sum over the shown frames).
        labels: write the node index at each region's centre.

    Returns:
        the last ``AxesImage`` (for a colour bar).
    """
    if len(axes) != len(frames):
        raise ValueError(f"need one axes per frame: {len(frames)} frames, {len(axes)} axes")
    kernels = _numpy(aux["kernels"])[video]  # [T, N, H, W]
    regions = _numpy(aux["regions"])[video] if "regions" in aux else None
    sums = kernels[list(frames)].sum(1)  # [F, H, W]
    vmax = float(sums.max()) if vmax is None else vmax
    image = None
    for ax, t, total in zip(axes, frames, sums):
        image = ax.imshow(total, cmap="magma", vmin=0.0, vmax=vmax)
        if regions is not None:
            plot_regions(ax, regions[t], height=total.shape[0], width=total.shape[1], lw=1.0, labels=labels)
        ax.set_xticks([])
        ax.set_yticks([])
    return image


def plot_variant(aux: Mapping, variant: str, frames: Sequence[int], *, parameters: int | None = None,
                 notes: Mapping[str, tuple[str, str]] = VARIANT_NOTES, video: int = 0):
    """One variant's regions and kernels at ``frames``, with its parameter count and what it
    changes relative to DyReg in the title.

    Returns:
        the figure.
    """
    fig, axes = plt.subplots(1, len(frames), figsize=(2.5 * len(frames) + 1.0, 3.6), constrained_layout=True,
                             squeeze=False)
    image = plot_variant_frames(axes[0], aux, frames, video=video)
    if "regions" in aux:
        node_legend(axes[0][len(frames) // 2], _numpy(aux["kernels"]).shape[2])
    for ax, t in zip(axes[0], frames):
        ax.set_title(f"frame {t}", fontsize=9)
    fig.colorbar(image, ax=list(axes[0]), fraction=0.03, pad=0.02, label="sum of the kernels")
    change, source = notes.get(variant, ("", ""))
    count = f", {parameters:,d} parameters" if parameters is not None else ""
    fig.suptitle(f"{variant}{count}\nvs DyReg: {change}\nsource: {source}", fontsize=9)
    return fig


def variant_explorer(outputs: Mapping[str, Mapping], frames: Sequence[int], *,
                     parameters: Mapping[str, int] | None = None,
                     notes: Mapping[str, tuple[str, str]] = VARIANT_NOTES, video: int = 0):
    """An ``ipywidgets.interactive`` with a dropdown over the variants of ``outputs``
    (variant name -> the block's ``aux`` on the same input), redrawing :func:`plot_variant`.

    Returns:
        the widget; ``display`` it. ``widget.result`` holds the last drawn figure.
    """
    import ipywidgets as widgets

    if not outputs:
        raise ValueError("outputs is empty: pass {variant: aux} for at least one variant")
    parameters = parameters or {}

    def draw(variant):
        fig = plot_variant(outputs[variant], variant, frames, parameters=parameters.get(variant),
                           notes=notes, video=video)
        plt.close(fig)  # interactive displays the returned figure once
        return fig

    names = list(outputs)
    start = "dyreg" if "dyreg" in outputs else names[0]
    return widgets.interactive(draw, variant=widgets.Dropdown(options=names, value=start, description="variant"))



def plot_kernel_owners(ax, kernels, regions=None, *, legend: bool = True):
    """Each pixel in the colour of the node whose kernel covers it (colours mixed by weight
    where several do; black where none does): shows whether a variant's kernels tile the map
    or overlap.

    Args:
        ax: axes to draw on.
        kernels: ``[N, H, W]`` (non-negative).
        regions: optional ``[N, 4]`` ``(cx, cy, sx, sy)``: each region's support as a rectangle.
        legend: a node-colour legend below the axes.

    Returns:
        the ``[H, W, 3]`` image drawn.
    """
    k = _numpy(kernels)
    if k.ndim != 3:
        raise ValueError(f"kernels must be [N, H, W], got shape {k.shape}")
    n = k.shape[0]
    colours = np.array([node_color(i)[:3] for i in range(n)])  # [N, 3]
    total = k.sum(0)
    weights = k / np.where(total > 0, total, 1.0)
    image = np.einsum("nhw,nc->hwc", weights, colours)
    ax.imshow(image)
    if regions is not None:
        for region in _numpy(regions):
            region_rectangle(ax, region, color="white", linewidth=0.8, linestyle="--")
    ax.set_xlim(-0.5, k.shape[2] - 0.5)
    ax.set_ylim(k.shape[1] - 0.5, -0.5)
    if legend:
        node_legend(ax, n)
    return image
