"""What every figure of the book shares: one colour per node, and one way to draw a region.

Node ``i`` has the same colour in every chapter: ``tab10`` for the first ten nodes, then
the lighter ``tab20`` shades (so 16 nodes still get 16 different colours).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

__all__ = ["node_color", "node_colors", "region_rectangle", "as_numpy"]

_DARK = plt.get_cmap("tab10").colors
_LIGHT = plt.get_cmap("tab20").colors[1::2]
#: One colour per node, reused in every figure so that node ``i`` keeps its colour.
NODE_COLORS = tuple(_DARK) + tuple(_LIGHT)


def node_color(i: int):
    """The colour of node ``i`` (cycles after 20 nodes)."""
    return NODE_COLORS[i % len(NODE_COLORS)]


def node_colors(num_nodes: int) -> list:
    """The colours of nodes ``0 .. num_nodes - 1``."""
    return [node_color(i) for i in range(num_nodes)]


def as_numpy(x) -> np.ndarray:
    """A tensor (any device, with or without grad) or array-like as a float numpy array."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=float)


def region_rectangle(ax: Axes, region, *, color, linewidth: float = 1.5, linestyle: str = "-",
                     label: str | None = None, zorder: int = 3) -> Rectangle:
    """Draw the support ``c ± s`` of one region ``(cx, cy, sx, sy)`` (map pixels) on ``ax``."""
    cx, cy, sx, sy = (float(v) for v in as_numpy(region)[:4])
    rect = Rectangle((cx - sx, cy - sy), 2 * sx, 2 * sy, fill=False, edgecolor=color, linewidth=linewidth,
                     linestyle=linestyle, label=label, zorder=zorder)
    ax.add_patch(rect)
    return rect
