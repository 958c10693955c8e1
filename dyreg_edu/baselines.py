r"""The two baselines whose nodes do not come from predicted regions (Tables 5 and 6).

- :class:`FixedGridKernels`, *Fixed*: the nodes pool fixed cells of a grid, the same for
  every video and frame.
- :class:`SemanticKernels`, *Semantic*: each node pools the whole map with weights
  predicted from it (global average pooling with predicted weights).

Both are a kernel source of :class:`~dyreg_edu.dyreg.DyRegBlock`, like the region
generator: ``forward(x [B, T, C, H, W]) -> (kernels [B, T, N, H, W], aux)``.
"""
from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from .kernels import AUTHORS_KERNEL_EPS, grid_kernels, region_kernels
from .layers import map_norm
from .regions import F_OUT_CHANNELS, F_WIDTH, SIZE_CELLS, conv_out_size, grid_anchors

__all__ = ["FixedGridKernels", "SemanticKernels", "grid_cells"]


def grid_cells(grid: tuple[int, int], height: int, width: int) -> Tensor:
    """The cells of a ``grid`` as regions ``(cx, cy, sx, sy)``, ``[N, 4]``, row-major.

    Centres in pixel coordinates (pixel ``q`` at ``x = q``): the centre of mass of each
    cell's area kernel, ``(k + 1/2) L / cells - 1/2``. The authors' anchors
    (:func:`~dyreg_edu.regions.grid_anchors`, :func:`~dyreg_edu.regions.center_anchors`)
    sit half a pixel right of and below that, at ``(k + 1/2) L / cells``; we keep theirs
    for the generated regions so that the golden fixtures match.
    """
    rows, cols = grid
    cy = (torch.arange(rows) + 0.5) * height / rows - 0.5
    cx = (torch.arange(cols) + 0.5) * width / cols - 0.5
    cy, cx = torch.meshgrid(cy, cx, indexing="ij")
    sizes = torch.tensor([width / (2 * cols), height / (2 * rows)]).expand(rows * cols, 2)
    return torch.cat([torch.stack([cx.flatten(), cy.flatten()], -1), sizes], -1)


class FixedGridKernels(nn.Module):
    """Kernels of the *Fixed* baseline: one cell of a ``grid`` per node, for every frame.

    Args:
        pooling: ``"area"`` (the paper's fixed regions on a grid): area-pooling cells that
            tile the map without overlap (``H/3`` wide for 3 x 3). ``"tent"``: tents of the
            fixed-size variants' size (``size``, default ``H/6 + 1``) at the grid anchors, so
            that Fixed -> Static changes only whether positions are learned.
        normalize, eps: as for the region kernels (tents only; area cells sum to one).

    Holds no parameters (its buffers are not saved). ``forward`` returns the kernels
    ``[B, T, N, H, W]`` and, for the figures, the cells as ``aux["regions"]`` ``[B, T, N, 4]``.
    """

    def __init__(self, height: int, width: int, grid: tuple[int, int], pooling: str = "area",
                 size: float | None = None, normalize: bool = True, eps: float = AUTHORS_KERNEL_EPS):
        super().__init__()
        if pooling == "area":
            if size is not None:
                raise ValueError("a size applies to fixed_pooling='tent', not to the area cells")
            regions, kernels = grid_cells(grid, height, width), grid_kernels(height, width, grid)
        elif pooling == "tent":
            centers = grid_anchors(grid, height, width)
            size = size if size is not None else height / (2 * SIZE_CELLS) + 1
            regions = torch.cat([centers, torch.full_like(centers, float(size))], dim=-1)
            kernels = region_kernels(regions, height, width, normalize, eps)
        else:
            raise ValueError(f"fixed_pooling must be 'area' or 'tent', got {pooling!r}")
        self.pooling = pooling
        self.register_buffer("kernels", kernels, persistent=False)  # [N, H, W]
        self.register_buffer("regions", regions, persistent=False)  # [N, 4]

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        batch, frames = x.shape[:2]
        kernels = repeat(self.kernels, "n h w -> b t n h w", b=batch, t=frames)
        return kernels, {"regions": repeat(self.regions, "n r -> b t n r", b=batch, t=frames)}


class SemanticKernels(nn.Module):
    r"""Kernels of the *Semantic* baseline (Table 6): predicted global pooling weights.

    The layers of f (:class:`~dyreg_edu.regions.FunctionF`: a 1x1 projection to 32
    channels, two 3x3 convs down to 16) with the authors' ``keep_spatial_size`` ending:
    two transposed convs back up to the map size with U-Net skips, then a 1x1 conv to
    ``N`` maps, each made a distribution over the ``H x W`` positions by a softmax. (The
    authors' pre-release code used the raw maps; "global average pooling with predicted
    weights" implies weights that sum to one, so we normalise.)

    Shapes: ``forward([B, T, C, H, W]) -> ([B, T, N, H, W], {})``, each map summing to one.
    """

    def __init__(self, channels: int, height: int, width: int, num_nodes: int):
        super().__init__()
        if height != width:
            raise ValueError(f"the semantic kernels follow the authors' square maps; got {height} x {width}")
        stride = 2 if height > 10 else 1
        small = conv_out_size(height, stride, 1)
        up_size = (small - 1) * stride - 2 + 3
        self.project = nn.Conv2d(channels, F_WIDTH, 1)
        self.down1 = nn.Conv2d(F_WIDTH, F_WIDTH, 3, stride=stride, padding=1)
        self.down2 = nn.Conv2d(F_WIDTH, F_OUT_CHANNELS, 3, padding=1)
        self.up1 = nn.ConvTranspose2d(F_OUT_CHANNELS, F_WIDTH, 3, padding=1)
        self.up2 = nn.ConvTranspose2d(F_WIDTH, F_WIDTH, 3, stride=stride, padding=1, output_padding=height - up_size)
        self.norms = nn.ModuleList([map_norm(F_WIDTH), map_norm(F_WIDTH), map_norm(F_OUT_CHANNELS),
                                    map_norm(F_WIDTH), map_norm(F_WIDTH)])
        self.to_maps = nn.Conv2d(F_WIDTH, num_nodes, 1)

    def weights(self, x: Tensor) -> Tensor:
        """One frame's pooling weights: ``[n, C, H, W] -> [n, N, H, W]`` (conv, ReLU, LayerNorm each)."""
        a0 = self.norms[0](self.project(x).relu())
        a1 = self.norms[1](self.down1(a0).relu())
        a2 = self.norms[2](self.down2(a1).relu())
        u1 = self.norms[3](self.up1(a2).relu()) + a1
        u2 = self.norms[4](self.up2(u1).relu()) + a0
        logits = self.to_maps(u2)
        weights = rearrange(logits, "n k h w -> n k (h w)").softmax(-1)
        return rearrange(weights, "n k (h w) -> n k h w", h=logits.shape[-2])

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        kernels = self.weights(rearrange(x, "b t c h w -> (b t) c h w"))
        return rearrange(kernels, "(b t) n h w -> b t n h w", b=x.shape[0]), {}
