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
(Table 9); what each has is a row of :data:`dyreg_edu.variants.PROPERTIES`. The kernels
come from one *kernel source* chosen at construction: the region generator
(:mod:`dyreg_edu.regions`), or a baseline's fixed grid or semantic maps
(:mod:`dyreg_edu.baselines`). ``variant="oracle"`` (Appendix E.6) has no source: its regions
are given to ``forward(x, regions)``, the ground-truth boxes as regions
(:func:`dyreg_edu.regions.regions_from_boxes`), one node per object. Every place where the
authors' code differs from the paper is a switch, defaulting to the code; ``switches=`` takes
all six at once (:data:`~dyreg_edu.variants.AUTHORS_CODE`, :data:`~dyreg_edu.variants.PAPER`),
and a keyword overrides one:

======================= ========================= ==================================
switch                  default = authors' code   paper wording
======================= ========================= ==================================
``size_plus_one``       ``True``: s = e^o(L/6+1)+1 ``False``: s = e^o L/6 (Eq. 12)
``normalize_kernels``   ``True``: kernels sum to 1 ``False``: raw tents (Eq. 7)
``clamp_centers``       ``True``: centre in [0,L-1] ``False``: tanh only (Eq. 13)
``position_grad``       ``True``: regions learn     ``False``: the kernel enters the
                        through the position        embedding detached, one mode of
                        embedding too               the authors' pre-release code
``messages``            ``"sum"``: MLP(v_i+v_j)   ``"concat"``: MLP([v_j; v_i]) (Eq. 8)
``temporal_first``      ``True``                  ``False``: temporal after spatial (Eq. 9)
======================= ========================= ==================================

**Full-resolution evaluation** (the authors' ``--full_res``): a block trained on an
``iH x iW`` map (``train_height``, ``train_width``; 14 x 14 for res4 at 224) can run on a
larger ``H x W`` map (16 x 16 for 256 crops) with the same parameters. The region
generator reads the map average-pooled to ``iH x iW`` (f and g_i keep their sizes), the
regions and kernels live on the full ``H x W`` map (anchors at ``H/2``, sizes from ``H/6 + 2``),
and the positional embedding reads each kernel average-pooled to ``iH x iW``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .baselines import FixedGridKernels, SemanticKernels
from .graph import SpatioTemporalGraph
from .kernels import AUTHORS_KERNEL_EPS, pool_nodes, region_kernels, remap_nodes
from .layers import map_norm
from .official_block import block_from_official
from .regions import SIZE_CELLS, RegionGenerator, center_anchors, grid_anchors, node_grid, regions_from_offsets
from .variants import AUTHORS_CODE, BLOCK_VARIANTS, GENERATED_VARIANTS, VARIANTS, Switches, properties

__all__ = ["DyRegBlock", "VARIANTS", "BLOCK_VARIANTS", "GENERATED_VARIANTS", "SemanticKernels"]


class DyRegBlock(nn.Module):
    r"""The DyReg-GNN block: dynamic regions, a spatio-temporal graph, and back to the map.

    Args:
        in_channels: ``C_in`` of the backbone map.
        height, width: ``H, W`` of the map (the authors' code needs ``H == W``).
        node_dim: ``C``, the node dimension. ``None`` (default) keeps ``C_in``; another
            value adds a 1x1 conv ``C_in -> C`` (+ LayerNorm) before and ``C -> C_in`` after.
        num_nodes: ``N`` (9 in the paper; 5 and 16 in Table 7).
        variant: one of :data:`VARIANTS`, or ``"oracle"`` (see the module docstring).
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
        switches: the six code-versus-paper switches at once (default
            :data:`~dyreg_edu.variants.AUTHORS_CODE`; :data:`~dyreg_edu.variants.PAPER`).
        size_plus_one, normalize_kernels, clamp_centers, position_grad, messages,
        temporal_first: one switch each (module docstring); ``None`` takes it from ``switches``.
        kernel_eps: added to a kernel's sum before normalising (the authors' 1e-37).
        train_height, train_width: the map the block was trained on, when it now runs on a
            larger ``height x width`` one (full-resolution evaluation, module docstring). ``None``
            (default): the same as ``height``, ``width``. The parameters depend only on these.

    Every keyword is the paper's or the authors' code's. Switches of our own research (other
    initial scales, each node's motion as an input, ...) live apart, in :mod:`dyreg_edu.experiments`.

    ``forward(x, regions=None)`` with ``x`` ``[B, T, C_in, H, W]`` (and, for ``oracle`` only,
    the given ``regions`` ``[B, T, N, 4]``) returns ``(y, aux)``: ``y`` like ``x``;
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
        switches: Switches = AUTHORS_CODE,
        size_plus_one: bool | None = None,
        normalize_kernels: bool | None = None,
        clamp_centers: bool | None = None,
        position_grad: bool | None = None,
        messages: str | None = None,
        temporal_first: bool | None = None,
        kernel_eps: float = AUTHORS_KERNEL_EPS,
        train_height: int | None = None,
        train_width: int | None = None,
    ):
        super().__init__()
        self.properties = properties(variant)
        for name, value in (("in_channels", in_channels), ("height", height), ("width", width), ("num_nodes", num_nodes)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, value in (("node_dim", node_dim), ("train_height", train_height), ("train_width", train_width)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive int (or None: the block's own), got {value!r}")
        given = dict(size_plus_one=size_plus_one, normalize_kernels=normalize_kernels, clamp_centers=clamp_centers,
                     position_grad=position_grad, messages=messages, temporal_first=temporal_first)
        self.switches = dataclasses.replace(switches, **{k: v for k, v in given.items() if v is not None})
        self.variant = variant
        self.in_channels, self.height, self.width = in_channels, height, width
        self.train_height = height if train_height is None else train_height
        self.train_width = width if train_width is None else train_width
        self.full_res = (self.train_height, self.train_width) != (height, width)
        if self.full_res and variant == "semantic":
            raise ValueError("full-resolution evaluation (train_height/train_width) is defined for generated "
                             "regions and the fixed grid, not for the semantic kernels")
        if self.full_res and (self.train_height > height or self.train_width > width):
            raise ValueError(f"the training map ({self.train_height} x {self.train_width}) must not be larger "
                             f"than the map the block runs on ({height} x {width})")
        self.node_dim = in_channels if node_dim is None else node_dim
        self.num_nodes = num_nodes
        self.grid = grid or node_grid(num_nodes)
        self.normalize_kernels = self.switches.normalize_kernels
        self.position_grad = self.switches.position_grad
        self.kernel_eps = kernel_eps
        if self.node_dim != in_channels:
            self.project_in = nn.Conv2d(in_channels, self.node_dim, 1)
            self.project_norm = map_norm(self.node_dim)
            self.project_out = nn.Conv2d(self.node_dim, in_channels, 1)
        else:
            self.project_in = self.project_norm = self.project_out = None
        self._add_kernel_source(region_dim, anchors, fixed_size, learn_size, fixed_pooling)
        self.position_embedding = nn.Linear(self.train_height * self.train_width, self.node_dim)
        self._add_node_inputs()
        self.graph = SpatioTemporalGraph(self.node_dim, graph_iterations, self.switches.messages,
                                         self.switches.temporal_first)
        self.residual_norm = map_norm(in_channels, scale_init=0.0)  # the identity at initialisation

    def _add_node_inputs(self) -> None:
        """Nothing in the paper's block: a node is its pooled features and its position (Eq. 7, Sec. 3.2).
        A subclass that gives the nodes another input creates its layers here, after the positional
        embedding and before the graph, so that the random draws of the graph's initial weights come
        in the same order whatever the subclass adds (the order of the runs that introduced it)."""

    #: The attribute that holds each kind of kernel source (and so its state-dict prefix).
    KERNEL_SOURCES = {"regions": "region_generator", "grid": "fixed_grid", "maps": "semantic"}

    def _add_kernel_source(self, region_dim, anchors, fixed_size, learn_size, fixed_pooling) -> None:
        """Build the one kernel source of this variant, under its name in :attr:`KERNEL_SOURCES`."""
        kind = self.properties.kernels
        if kind != "regions" and learn_size is not None:
            raise ValueError(f"learn_size applies to generated regions, not to variant {self.variant!r}")
        if kind in ("maps", "boxes") and fixed_size is not None:
            raise ValueError(f"fixed_size applies to generated regions of fixed size or to fixed_pooling='tent', "
                             f"not to variant {self.variant!r}")
        if kind == "regions":
            source = RegionGenerator(
                self.node_dim, self.train_height, self.train_width, num_nodes=self.num_nodes, region_dim=region_dim,
                variant=self.variant, grid=self.grid, anchors=anchors, size_plus_one=self.switches.size_plus_one,
                clamp_centers=self.switches.clamp_centers, fixed_size=fixed_size, learn_size=learn_size,
            )
            if self.full_res:  # regions live on the full map: anchors and default sizes from H, W
                self.full_fixed_size = (None if source.fixed_size is None
                                        else fixed_size or self.height / (2 * SIZE_CELLS) + 1)
                full_anchors = (center_anchors(self.num_nodes, self.height, self.width) if anchors == "center"
                                else grid_anchors(self.grid, self.height, self.width))
                self.register_buffer("full_anchors", full_anchors, persistent=False)
        elif kind == "grid":
            if fixed_size is not None and fixed_pooling != "tent":
                raise ValueError(f"fixed_size applies to generated regions of fixed size or to fixed_pooling='tent', "
                                 f"not to variant {self.variant!r}")
            source = FixedGridKernels(self.height, self.width, self.grid, fixed_pooling, fixed_size,
                                      self.normalize_kernels, self.kernel_eps)
        elif kind == "maps":
            source = SemanticKernels(self.node_dim, self.height, self.width, self.num_nodes)
        else:  # "boxes": the regions come with the input
            return
        self.add_module(self.KERNEL_SOURCES[kind], source)

    @property
    def kernel_source(self) -> nn.Module | None:
        """The module that gives the kernels: a :class:`~dyreg_edu.regions.RegionGenerator`, a
        :class:`~dyreg_edu.baselines.FixedGridKernels` or a :class:`~dyreg_edu.baselines.SemanticKernels`
        (``None`` for the oracle, whose regions are given)."""
        kind = self.properties.kernels
        return getattr(self, self.KERNEL_SOURCES[kind]) if kind in self.KERNEL_SOURCES else None

    @property
    def given_regions(self) -> bool:
        """Whether ``forward`` takes the regions (the oracle) instead of making them."""
        return self.properties.kernels == "boxes"

    def _check_input(self, x: Tensor) -> None:
        expected = (self.in_channels, self.height, self.width)
        if x.dim() != 5 or tuple(x.shape[2:]) != expected:
            raise ValueError(
                f"DyRegBlock expects x of shape [B, T, {expected[0]}, {expected[1]}, {expected[2]}] "
                f"(B, T, C_in, H, W), got {tuple(x.shape)}"
            )

    def kernels(self, x: Tensor, regions: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """Eq. 1-6: the kernels of every frame and node, ``[B, T, C, H, W] -> [B, T, N, H, W]``, plus
        ``aux`` (``regions`` and ``offsets`` for generated regions, ``regions`` for the grid and
        for the oracle, whose ``regions`` ``[B, T, N, 4]`` are given)."""
        self._check_regions(x, regions)
        if self.given_regions:
            kernels = region_kernels(regions, self.height, self.width, self.normalize_kernels, self.kernel_eps)
            return kernels, {"regions": regions}
        if self.properties.kernels != "regions":
            return self.kernel_source(x)
        regions, offsets = self._full_res_regions(x) if self.full_res else self.region_generator(x)
        kernels = region_kernels(regions, self.height, self.width, self.normalize_kernels, self.kernel_eps, check=False)
        return kernels, {"regions": regions, "offsets": offsets}

    def _check_regions(self, x: Tensor, regions: Tensor | None) -> None:
        if not self.given_regions:
            if regions is not None:
                raise ValueError(f"variant {self.variant!r} makes its own regions; only 'oracle' is given them")
            return
        expected = (x.shape[0], x.shape[1], self.num_nodes, 4)
        if regions is None or tuple(regions.shape) != expected:
            got = None if regions is None else tuple(regions.shape)
            raise ValueError(f"the oracle needs regions [B, T, N, 4] = {list(expected)} (cx, cy, sx, sy in map "
                             f"pixels, one node per object: num_nodes={self.num_nodes}), got {got}")

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
        return self.position_embedding(self._training_map(kernels))

    def nodes(self, features: Tensor, kernels: Tensor) -> Tensor:
        """Eq. 7 and Sec. 3.2: each node pools the map with its kernel and adds its position,
        ``([B, T, C, H, W], [B, T, N, H, W]) -> [B, T, N, C]``."""
        return pool_nodes(features, kernels) + self.position(kernels)

    def _training_map(self, kernels: Tensor) -> Tensor:
        """Kernels flattened over the training map: ``[B, T, N, H, W] -> [B, T, N, H_train * W_train]``
        (average-pooled to it first at full resolution)."""
        if self.full_res:
            batch = kernels.shape[0]
            kernels = F.adaptive_avg_pool2d(rearrange(kernels, "b t n h w -> (b t) n h w"),
                                            (self.train_height, self.train_width))
            kernels = rearrange(kernels, "(b t) n h w -> b t n h w", b=batch)
        return rearrange(kernels, "b t n h w -> b t n (h w)")

    def project(self, x: Tensor) -> Tensor:
        """The optional 1x1 conv ``C_in -> C`` and LayerNorm: ``[B, T, C_in, H, W] -> [B, T, C, H, W]``."""
        if self.project_in is None:
            return x
        y = self.project_in(rearrange(x, "b t c h w -> (b t) c h w"))
        return rearrange(self.project_norm(y), "(b t) c h w -> b t c h w", b=x.shape[0])

    def project_back(self, y: Tensor) -> Tensor:
        """The optional 1x1 conv ``C -> C_in``: ``[B, T, C, H, W] -> [B, T, C_in, H, W]``."""
        if self.project_out is None:
            return y
        return rearrange(self.project_out(rearrange(y, "b t c h w -> (b t) c h w")), "(b t) c h w -> b t c h w",
                         b=y.shape[0])

    def forward(self, x: Tensor, regions: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """``x`` ``[B, T, C_in, H, W]`` -> ``(x + LN(y), aux)``, one line per step of the block.
        ``regions`` ``[B, T, N, 4]``: the oracle's given regions (no other variant takes them)."""
        self._check_input(x)
        features = self.project(x)                                      # X'  [B, T, C, H, W]
        kernels, aux = self.kernels(features, regions)                  # K   [B, T, N, H, W]   Eq. 1-6
        nodes = self.nodes(features, kernels)                           # v   [B, T, N, C]      Eq. 7, Sec. 3.2
        updated, attention = self.graph(nodes)                          # v'  [B, T, N, C]      Eq. 8-9
        y = self.project_back(remap_nodes(updated, kernels))            # y   [B, T, C_in, H, W] Eq. 10
        out = x + self.residual_norm(y)                                 # zero scale at init: the identity
        return out, {**aux, "kernels": kernels, "nodes_in": nodes, "nodes_out": updated, "attention": attention}

    @classmethod
    def from_official(cls, state_dict: Mapping[str, Tensor] | str | os.PathLike,
                      config: Mapping[str, Any] | None = None) -> "DyRegBlock":
        """A block whose forward pass equals the authors' ``DynamicGraphWrapper`` with these weights.

        ``state_dict``: one block's parameters under the authors' names, or a path to a torch file
        holding them or a golden fixture (``{'state_dict', 'config', ...}``; ``config`` may then be
        left out). A file of another kind raises one ``ValueError`` that names it. See
        :func:`dyreg_edu.official_block.block_from_official` for the accepted ``config`` keys.
        """
        return block_from_official(cls, state_dict, config)
