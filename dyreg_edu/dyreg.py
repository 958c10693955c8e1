r"""The DyReg block (Section 3, Fig. 2) and every variant the paper evaluates.

.. code-block:: text

    X [B, T, C_in, H, W]
      -> (optional) 1x1 conv C_in -> C + LayerNorm           X'
      -> regions (Eq. 1-4, 11-14) -> kernels (Eq. 5-6)        K  [B, T, N, H, W]
      -> nodes = pool(X', K) + Linear(K)  (Eq. 7 + position)  v  [B, T, N, C]
      -> graph (Eq. 8-9)                                      v' [B, T, N, C]
      -> remap(v', K) (Eq. 10) -> (optional) 1x1 conv C -> C_in
      -> X + LayerNorm(.)   with the LayerNorm's scale zero at initialisation

Because that last scale starts at zero, the block is exactly the identity when it is
created, so it can be dropped into a pre-trained backbone without changing it.

Variants (``variant=``): ``dyreg`` (the paper's model), ``pos_only``, ``constant_time``,
``static`` and ``fixed`` (Table 5), ``semantic`` and ``lite`` (Table 6), ``no_gru``
(Table 9). Every place where the authors' code differs from the paper is a keyword
switch, defaulting to the code:

======================= ========================= ==================================
switch                  default = authors' code   paper wording
======================= ========================= ==================================
``size_plus_one``       ``True``: s = e^o(L/6+1)+1 ``False``: s = e^o L/6 (Eq. 12)
``normalize_kernels``   ``True``: kernels sum to 1 ``False``: raw tents (Eq. 7)
``clamp_centers``       ``True``: centre in [0,L-1] ``False``: tanh only (Eq. 13)
``position_grad``       ``True``: regions learn     ``False``: the authors' pre-release
                        through the position        code, which cut that gradient
                        embedding too
``messages``            ``"sum"``: MLP(v_i+v_j)   ``"concat"``: MLP([v_j; v_i]) (Eq. 8)
``temporal_first``      ``True``                  ``False``: temporal after spatial (Eq. 9)
======================= ========================= ==================================

**Full-resolution evaluation** (the authors' ``--full_res``): a block trained on an
``iH x iW`` map (``train_height``, ``train_width``; 14 x 14 for res4 at 224) can run on a
larger ``H x W`` map (16 x 16 for 256 crops) with the same parameters. The region
generator reads the map average-pooled to ``iH x iW`` (f and g_i keep their sizes), the
regions and kernels live on the full ``H x W`` map (anchors at ``H/2``, sizes from ``H/6``),
and the positional embedding reads each kernel average-pooled to ``iH x iW``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

import torch.nn.functional as F

from .graph import SpatioTemporalGraph
from .kernels import AUTHORS_KERNEL_EPS, grid_kernels, pool_nodes, region_kernels, remap_nodes
from .layers import map_norm
from .regions import (
    F_WIDTH, GENERATED_VARIANTS, SIZE_CELLS, RegionGenerator, _conv_out, center_anchors, grid_anchors, node_grid,
    regions_from_offsets,
)

VARIANTS = ("dyreg", "pos_only", "constant_time", "static", "fixed", "semantic", "lite", "no_gru")


class SemanticKernels(nn.Module):
    r"""Kernels of the *Semantic* baseline (Table 6): predicted global pooling weights.

    A version of f that keeps the map size (two transposed convs back up, with skips),
    then a 1x1 conv to ``N`` maps, each made a distribution over the ``H x W`` positions
    by a softmax. (The authors' pre-release code used the raw maps; "global average
    pooling with predicted weights" implies weights that sum to one, so we normalise.)

    Shapes: ``[n, C, H, W] -> [n, N, H, W]``, each map summing to one.
    """

    def __init__(self, channels: int, height: int, width: int, num_nodes: int):
        super().__init__()
        if height != width:
            raise ValueError(f"the semantic kernels follow the authors' square maps; got {height} x {width}")
        stride = 2 if height > 10 else 1
        small = _conv_out(height, stride, 1)
        self.project = nn.Conv2d(channels, F_WIDTH, 1)
        self.down1 = nn.Conv2d(F_WIDTH, F_WIDTH, 3, stride=stride, padding=1)
        self.down2 = nn.Conv2d(F_WIDTH, 16, 3, padding=1)
        self.up1 = nn.ConvTranspose2d(16, F_WIDTH, 3, padding=1)
        up_size = (small - 1) * stride - 2 + 3
        self.up2 = nn.ConvTranspose2d(F_WIDTH, F_WIDTH, 3, stride=stride, padding=1, output_padding=height - up_size)
        self.norms = nn.ModuleList([map_norm(F_WIDTH), map_norm(F_WIDTH), map_norm(16), map_norm(F_WIDTH), map_norm(F_WIDTH)])
        self.to_maps = nn.Conv2d(F_WIDTH, num_nodes, 1)

    def forward(self, x: Tensor) -> Tensor:
        a0 = self.norms[0](self.project(x).relu())
        a1 = self.norms[1](self.down1(a0).relu())
        a2 = self.norms[2](self.down2(a1).relu())
        u1 = self.norms[3](self.up1(a2).relu()) + a1
        u2 = self.norms[4](self.up2(u1).relu()) + a0
        logits = self.to_maps(u2)
        weights = rearrange(logits, "b n h w -> b n (h w)").softmax(-1)
        return rearrange(weights, "b n (h w) -> b n h w", h=logits.shape[-2])


class DyRegBlock(nn.Module):
    r"""The DyReg-GNN block: dynamic regions, a spatio-temporal graph, and back to the map.

    Args:
        in_channels: ``C_in`` of the backbone map.
        height, width: ``H, W`` of the map (the authors' code needs ``H == W``).
        node_dim: ``C``, the node dimension. ``None`` (default) keeps ``C_in``; another
            value adds a 1x1 conv ``C_in -> C`` (+ LayerNorm) before and ``C -> C_in`` after.
        num_nodes: ``N`` (9 in the paper; 5 and 16 in Table 7).
        variant: one of :data:`VARIANTS` (see the module docstring).
        region_dim: ``D``, the region generator's latent size (32 on MultiSyncMNIST;
            128, the authors' default, on Something-Something).
        graph_iterations: ``K`` (3).
        grid: node grid ``(rows, cols)``; default square for square ``N``, else ``1 x N``.
        anchors: ``"center"`` (paper) or ``"grid"``.
        fixed_size: constant half-extent of ``pos_only``, ``constant_time`` and ``static``
            (default ``H / 6 + 1``, the authors' pre-release value; Table 11's sweep uses ``H / lambda``).
        learn_size: sizes from offsets (Eq. 12) or the constant ``fixed_size``; ``None`` follows
            Table 5 (learned only for ``dyreg``, ``lite``, ``no_gru``). ``variant="static",
            learn_size=True`` is the reading of Static in which the learned latents also set sizes.
        fixed_pooling: the ``fixed`` baseline's kernels. ``"area"`` (default, the paper's "fixed
            regions on a grid"): area-pooling cells that tile the map without overlap, each
            ``H/3`` wide for a 3 x 3 grid. ``"tent"``: tents of the fixed-size variants' size
            (``fixed_size``, default ``H/6 + 1``) at the ``"grid"`` anchors, so that Fixed ->
            Static changes only whether positions are learned.
        size_plus_one, normalize_kernels, clamp_centers, position_grad, messages,
        temporal_first: the code-versus-paper switches (module docstring).
        kernel_eps: added to a kernel's sum before normalising (the authors' 1e-37).
        residual_scale_init: the initial scale of the residual LayerNorm. ``0.0`` (the authors',
            the default) makes the block the identity at initialisation; a positive value lets the
            branch act from the first step (the mini training scale uses it, see ``dyreg_edu.train``).
        train_height, train_width: the map the block was trained on, when it now runs on a
            larger ``height x width`` one (full-resolution evaluation, module docstring). ``None``
            (default): the same as ``height``, ``width``. The parameters depend only on these.

    ``forward(x)`` with ``x`` ``[B, T, C_in, H, W]`` returns ``(y, aux)``: ``y`` like ``x``;
    ``aux`` holds ``regions`` ``[B, T, N, 4]`` as ``(cx, cy, sx, sy)`` (not for ``semantic``),
    ``kernels`` ``[B, T, N, H, W]``, ``nodes_in``/``nodes_out`` ``[B, T, N, C]`` and the graph's
    ``attention`` ``[B, T, K, N, N]``; generated variants also give ``offsets`` ``[B, T, N, 4]``.
    """

    def __init__(
        self,
        in_channels: int,
        height: int,
        width: int,
        *,
        node_dim: int | None = None,
        num_nodes: int = 9,
        variant: str = "dyreg",
        region_dim: int = 128,
        graph_iterations: int = 3,
        grid: tuple[int, int] | None = None,
        anchors: str = "center",
        fixed_size: float | None = None,
        learn_size: bool | None = None,
        fixed_pooling: str = "area",
        size_plus_one: bool = True,
        normalize_kernels: bool = True,
        clamp_centers: bool = True,
        position_grad: bool = True,
        messages: str = "sum",
        temporal_first: bool = True,
        kernel_eps: float = AUTHORS_KERNEL_EPS,
        residual_scale_init: float = 0.0,
        train_height: int | None = None,
        train_width: int | None = None,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        for name, value in (("in_channels", in_channels), ("height", height), ("width", width), ("num_nodes", num_nodes)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.variant = variant
        self.in_channels, self.height, self.width = in_channels, height, width
        self.train_height, self.train_width = train_height or height, train_width or width
        self.full_res = (self.train_height, self.train_width) != (height, width)
        if self.full_res and variant == "semantic":
            raise ValueError("full-resolution evaluation (train_height/train_width) is defined for generated "
                             "regions and the fixed grid, not for the semantic kernels")
        if self.full_res and (self.train_height > height or self.train_width > width):
            raise ValueError(f"the training map ({self.train_height} x {self.train_width}) must not be larger "
                             f"than the map the block runs on ({height} x {width})")
        self.node_dim = node_dim or in_channels
        self.num_nodes = num_nodes
        self.grid = grid or node_grid(num_nodes)
        self.normalize_kernels = normalize_kernels
        self.position_grad = position_grad
        self.kernel_eps = kernel_eps
        if self.node_dim != in_channels:
            self.project_in = nn.Conv2d(in_channels, self.node_dim, 1)
            self.project_norm = map_norm(self.node_dim)
            self.project_out = nn.Conv2d(self.node_dim, in_channels, 1)
        else:
            self.project_in = self.project_norm = self.project_out = None
        self.region_generator = None
        self.semantic = None
        if variant in GENERATED_VARIANTS:
            self.region_generator = RegionGenerator(
                self.node_dim, self.train_height, self.train_width, num_nodes=num_nodes, region_dim=region_dim, variant=variant,
                grid=self.grid, anchors=anchors, size_plus_one=size_plus_one, clamp_centers=clamp_centers,
                fixed_size=fixed_size, learn_size=learn_size,
            )
            if self.full_res:  # regions live on the full map: anchors and default sizes from H, W
                self.full_fixed_size = (None if self.region_generator.fixed_size is None
                                        else fixed_size or height / (2 * SIZE_CELLS) + 1)
                full_anchors = (center_anchors(num_nodes, height, width) if anchors == "center"
                                else grid_anchors(self.grid, height, width))
                self.register_buffer("full_anchors", full_anchors, persistent=False)
        elif learn_size is not None:
            raise ValueError(f"learn_size applies to generated regions, not to variant {variant!r}")
        elif fixed_size is not None and not (variant == "fixed" and fixed_pooling == "tent"):
            raise ValueError(f"fixed_size applies to generated regions of fixed size or to fixed_pooling='tent', "
                             f"not to variant {variant!r}")
        elif variant == "semantic":
            self.semantic = SemanticKernels(self.node_dim, height, width, num_nodes)
        else:  # fixed
            regions = self._fixed_regions(fixed_pooling, fixed_size)
            kernels = (grid_kernels(height, width, self.grid) if fixed_pooling == "area"
                       else region_kernels(regions, height, width, normalize_kernels, kernel_eps))
            self.register_buffer("fixed_kernels", kernels, persistent=False)
            self.register_buffer("fixed_regions", regions, persistent=False)
        self.position_embedding = nn.Linear(self.train_height * self.train_width, self.node_dim)
        self.graph = SpatioTemporalGraph(self.node_dim, graph_iterations, messages, temporal_first)
        self.residual_norm = map_norm(in_channels, scale_init=residual_scale_init)

    def _fixed_regions(self, kind: str, fixed_size: float | None) -> Tensor:
        """The Fixed baseline's regions ``(cx, cy, sx, sy)``, ``[N, 4]``: its area cells, or tents."""
        if kind == "area":
            return self._grid_cells()
        if kind != "tent":
            raise ValueError(f"fixed_pooling must be 'area' or 'tent', got {kind!r}")
        size = fixed_size if fixed_size is not None else self.height / (2 * SIZE_CELLS) + 1
        centers = grid_anchors(self.grid, self.height, self.width)
        return torch.cat([centers, torch.full_like(centers, float(size))], dim=-1)

    def _grid_cells(self) -> Tensor:
        """The Fixed baseline's area cells as regions ``(cx, cy, sx, sy)``, ``[N, 4]``.

        Centres in pixel coordinates (pixel ``q`` at ``x = q``): the centre of mass of each
        cell's area kernel, ``(k + 1/2) L / cells - 1/2``. The authors' anchors
        (:func:`~dyreg_edu.regions.grid_anchors`, :func:`~dyreg_edu.regions.center_anchors`)
        sit half a pixel right of and below that, at ``(k + 1/2) L / cells``; we keep theirs
        for the generated regions so that the golden fixtures match.
        """
        rows, cols = self.grid
        cy = (torch.arange(rows) + 0.5) * self.height / rows - 0.5
        cx = (torch.arange(cols) + 0.5) * self.width / cols - 0.5
        cy, cx = torch.meshgrid(cy, cx, indexing="ij")
        sizes = torch.tensor([self.width / (2 * cols), self.height / (2 * rows)]).expand(rows * cols, 2)
        return torch.cat([torch.stack([cx.flatten(), cy.flatten()], -1), sizes], -1)

    def _check_input(self, x: Tensor) -> None:
        expected = (self.in_channels, self.height, self.width)
        if x.dim() != 5 or tuple(x.shape[2:]) != expected:
            raise ValueError(
                f"DyRegBlock expects x of shape [B, T, {expected[0]}, {expected[1]}, {expected[2]}] "
                f"(B, T, C_in, H, W), got {tuple(x.shape)}"
            )

    def kernels(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The kernels of every frame and node, ``[B, T, C, H, W] -> [B, T, N, H, W]``, plus aux."""
        batch, frames = x.shape[:2]
        aux: dict[str, Tensor] = {}
        if self.region_generator is not None and self.full_res:
            aux["regions"], aux["offsets"] = self._full_res_regions(x)
            kernels = region_kernels(
                aux["regions"], self.height, self.width, self.normalize_kernels, self.kernel_eps, check=False
            )
        elif self.region_generator is not None:
            aux["regions"], aux["offsets"] = self.region_generator(x)
            kernels = region_kernels(
                aux["regions"], self.height, self.width, self.normalize_kernels, self.kernel_eps, check=False
            )
        elif self.semantic is not None:
            kernels = self.semantic(rearrange(x, "b t c h w -> (b t) c h w"))
            kernels = rearrange(kernels, "(b t) n h w -> b t n h w", b=batch)
        else:
            kernels = repeat(self.fixed_kernels, "n h w -> b t n h w", b=batch, t=frames)
            aux["regions"] = repeat(self.fixed_regions, "n r -> b t n r", b=batch, t=frames)
        return kernels, aux

    def _full_res_regions(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Regions on the full ``H x W`` map from the map pooled to the training size (module docstring).

        Shapes: ``[B, T, C, H, W] -> (regions [B, T, N, 4], offsets [B, T, N, 4])``.
        """
        generator = self.region_generator
        pooled = F.adaptive_avg_pool2d(rearrange(x, "b t c h w -> (b t) c h w"), (self.train_height, self.train_width))
        offsets = generator.offsets(generator.latents(rearrange(pooled, "(b t) c h w -> b t c h w", b=x.shape[0])))
        regions = regions_from_offsets(
            offsets, self.full_anchors, self.height, self.width, size_plus_one=generator.size_plus_one,
            clamp_centers=generator.clamp_centers, fixed_size=self.full_fixed_size,
        )
        return regions, offsets

    def position(self, kernels: Tensor) -> Tensor:
        """The positional embedding of each node, a Linear of its kernel: ``[B, T, N, H, W] -> [B, T, N, C]``.

        At full resolution the kernel is average-pooled to the training map first.
        """
        if not self.position_grad:
            kernels = kernels.detach()
        if self.full_res:
            batch = kernels.shape[0]
            kernels = F.adaptive_avg_pool2d(rearrange(kernels, "b t n h w -> (b t) n h w"),
                                            (self.train_height, self.train_width))
            kernels = rearrange(kernels, "(b t) n h w -> b t n h w", b=batch)
        return self.position_embedding(rearrange(kernels, "b t n h w -> b t n (h w)"))

    def forward(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        self._check_input(x)
        batch = x.shape[0]
        features = rearrange(x, "b t c h w -> (b t) c h w")
        if self.project_in is not None:
            features = self.project_norm(self.project_in(features))
        kernels, aux = self.kernels(rearrange(features, "(b t) c h w -> b t c h w", b=batch))
        aux["kernels"] = kernels
        nodes = pool_nodes(rearrange(features, "(b t) c h w -> b t c h w", b=batch), kernels) + self.position(kernels)
        aux["nodes_in"] = nodes
        nodes, aux["attention"] = self.graph(nodes)
        aux["nodes_out"] = nodes
        y = rearrange(remap_nodes(nodes, kernels), "b t c h w -> (b t) c h w")
        if self.project_out is not None:
            y = self.project_out(y)
        y = self.residual_norm(y)
        return x + rearrange(y, "(b t) c h w -> b t c h w", b=batch), aux

    @classmethod
    def from_official(cls, state_dict: Mapping[str, Tensor], config: Mapping[str, Any]) -> "DyRegBlock":
        """A block whose forward pass equals the authors' ``DynamicGraphWrapper`` with these weights.

        See :func:`dyreg_edu.official.block_from_official` for the accepted ``config`` keys.
        """
        from .official import block_from_official

        return block_from_official(cls, state_dict, config)
