r"""Region generation: paper Eq. 1-4 (Section 3.1) and the constraints of Eq. 11-14 (Appendix C).

For every frame :math:`X_t` the block predicts, for each node :math:`i`, a region
:math:`(c_x, c_y, s_x, s_y)`:

1. :math:`M_t = f(X_t)` (Eq. 1): a small conv net, :class:`FunctionF`.
2. :math:`\hat m_{i,t} = g_i(M_t)` (Eq. 2): one fully connected layer per node
   (:class:`NodeLatentsFull`), or the cheaper *Lite* version (:class:`NodeLatentsLite`).
3. :math:`z_{i,t} = \mathrm{GRU}(z_{i,t-1}, \hat m_{i,t})` (Eq. 3), shared by all nodes,
   between two LayerNorms over the ``N x D`` latents of a frame.
4. :math:`\tilde o_{i,t} = (W_o z_{i,t}) \odot \gamma` (Eq. 4, 11), with :math:`\gamma`
   zero at initialisation so that every region starts at its anchor.
5. :math:`\alpha`: sizes through an exponential (Eq. 12), centres through a tanh that
   keeps them on the map (Eq. 13-14): :func:`regions_from_offsets`.

Offsets are ordered like the paper, ``(dx, dy, dw, dh)``; the authors' code orders
them ``(h, w, y, x)`` and :mod:`dyreg_edu.official` reorders them when loading.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from .layers import map_norm, node_norm, run_over_time
from .variants import GENERATED_VARIANTS, PROPERTIES, properties

#: Channel widths of f in the authors' code: M_t has 16 channels, the middle 32.
F_WIDTH = 32
F_OUT_CHANNELS = 16
#: The authors' artanh clamps its argument to (-1 + 1e-7, 1 - 1e-7).
ARTANH_CLAMP = 1e-7


# --------------------------------------------------------------------------- f (Eq. 1)


def function_f_strides(size: int) -> tuple[int, int, int, int]:
    """Strides and paddings ``(s0, s1, p0, p1)`` of f for a map of side ``size``.

    The authors pick them from the map size so that :math:`M_t` stays small (7 x 7 for the
    16 x 16 map of MultiSyncMNIST, 6 x 6 for TSM's 28 and 14, 5 x 5 for its 7):

    ====== == == == == =================================== =======
    size   s0 s1 p0 p1 H' (output)                         range
    ====== == == == == =================================== =======
    <= 10  1  1  0  1  size - 2                            1-8
    11-20  2  1  0  1  (size - 3) // 2 + 1                 5-9
    21-50  2  2  0  0  ((size - 3) // 2 - 2) // 2 + 1      4-11
    ====== == == == == =================================== =======
    """
    if size < 3:
        raise ValueError(f"function f needs a map of at least 3 x 3 pixels, got {size}")
    if size <= 10:
        return 1, 1, 0, 1
    if size <= 20:
        return 2, 1, 0, 1
    if size <= 50:
        return 2, 2, 0, 0
    raise ValueError(
        f"function f is defined for maps up to 50 pixels (the authors' table), got {size}; "
        "pool the map first"
    )


def conv_out_size(size: int, stride: int, padding: int, kernel: int = 3) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class FunctionF(nn.Module):
    r"""Function f of Eq. 1, as the authors build it (Appendix C).

    Per frame: a 1x1 conv to 32 channels, two 3x3 convs (32 then 16 channels), a 3x3
    transposed conv back to 32 channels added to the first 3x3 conv's output (a U-Net
    skip), and a final 3x3 conv to :math:`C' = 16` channels. Every conv is followed by a
    ReLU and a LayerNorm over the whole map with per-channel affine.

    Shapes: ``[n, C, H, W] -> [n, 16, H', W']`` with ``H'`` from :func:`function_f_strides`.
    """

    def __init__(self, in_channels: int, height: int, width: int):
        super().__init__()
        if height != width:
            raise ValueError(f"function f follows the authors' square maps; got {height} x {width}")
        s0, s1, p0, p1 = function_f_strides(height)
        size1 = conv_out_size(height, s0, p0)
        size2 = conv_out_size(size1, s1, p1)
        up_size = (size2 - 1) * s1 - 2 * p1 + 3
        self.project = nn.Conv2d(in_channels, F_WIDTH, 1)
        self.down1 = nn.Conv2d(F_WIDTH, F_WIDTH, 3, stride=s0, padding=p0)
        self.down2 = nn.Conv2d(F_WIDTH, F_OUT_CHANNELS, 3, stride=s1, padding=p1)
        self.up = nn.ConvTranspose2d(
            F_OUT_CHANNELS, F_WIDTH, 3, stride=s1, padding=p1, output_padding=size1 - up_size
        )
        self.head = nn.Conv2d(F_WIDTH, F_OUT_CHANNELS, 3, stride=s1, padding=p1)
        self.project_norm = map_norm(F_WIDTH)
        self.down1_norm = map_norm(F_WIDTH)
        self.down2_norm = map_norm(F_OUT_CHANNELS)
        self.up_norm = map_norm(F_WIDTH)
        self.head_norm = map_norm(F_OUT_CHANNELS)
        self.out_size = conv_out_size(size1, s1, p1)

    def forward(self, x: Tensor) -> Tensor:
        a0 = self.project_norm(self.project(x).relu())
        a1 = self.down1_norm(self.down1(a0).relu())
        a2 = self.down2_norm(self.down2(a1).relu())
        up = self.up_norm(self.up(a2).relu()) + a1
        return self.head_norm(self.head(up).relu())


# --------------------------------------------------------------------------- g_i (Eq. 2)


class NodeLatentsFull(nn.Module):
    r"""Functions :math:`g_i` of Eq. 2, full variant: one fully connected layer per node.

    Each :math:`g_i` sees all of :math:`M_t` (``16 x H' x W'`` values) and returns a
    ``D``-dimensional latent (the paper says ``C``; the code uses ``D``). The authors write
    it as one conv whose kernel covers the whole map; a single ``Linear`` to ``N * D`` is
    the same computation.

    Shapes: ``[n, 16, H', W'] -> [n, N, D]``.
    """

    def __init__(self, map_channels: int, map_size: int, num_nodes: int, region_dim: int):
        super().__init__()
        self.num_nodes = num_nodes
        self.fc = nn.Linear(map_channels * map_size * map_size, num_nodes * region_dim)

    def forward(self, m: Tensor) -> Tensor:
        latents = self.fc(rearrange(m, "b c h w -> b (c h w)"))
        return rearrange(latents, "b (n d) -> b n d", n=self.num_nodes)


def sinusoidal_positions(channels: int, height: int, width: int) -> Tensor:
    r"""The fixed sinusoidal position map ``E`` of the Lite variant, ``[C, H, W]``.

    Rows and columns are placed at ``linspace(0, 1, ·)``. With ``half = C / 2`` and
    :math:`\tau_k = 10000^{k / half}`, channel ``k < half`` holds
    :math:`\sin(r / \tau_k)` for even ``k`` and :math:`\cos(r / \tau_k)` for odd ``k``
    of the row position ``r``; channel ``half + k`` does the same for the column.
    """
    if channels % 2:
        raise ValueError(f"the sinusoidal position map needs an even channel count, got {channels}")
    half = channels // 2
    tau = 10000.0 ** (torch.arange(half, dtype=torch.float64) / half)
    waves = torch.where(torch.arange(half) % 2 == 0, 0, 1)  # 0: sin, 1: cos

    def encode(positions: Tensor) -> Tensor:  # [L] -> [half, L]
        phase = positions[None, :] / tau[:, None]
        return torch.where(waves[:, None] == 0, phase.sin(), phase.cos())

    rows = repeat(encode(torch.linspace(0, 1, height, dtype=torch.float64)), "k h -> k h w", w=width)
    cols = repeat(encode(torch.linspace(0, 1, width, dtype=torch.float64)), "k w -> k h w", h=height)
    return torch.cat([rows, cols]).to(torch.get_default_dtype())


class NodeLatentsLite(nn.Module):
    r"""Functions :math:`g_i` of the Lite variant (paper Table 6; the authors' ``GloRe``).

    No f. Every location splits itself among the nodes (a softmax over the ``N`` nodes of
    a 1x1 conv), the map gets a learned projection of a fixed sinusoidal position map, and
    each node's latent is the weighted sum of the map followed by a ``C -> D`` linear layer.

    Shapes: ``[n, C, H, W] -> [n, N, D]``.
    """

    def __init__(self, channels: int, height: int, width: int, num_nodes: int, region_dim: int):
        super().__init__()
        self.node_weights = nn.Conv2d(channels, num_nodes, 1)
        self.position_proj = nn.Conv2d(channels, channels, 1)
        self.to_latent = nn.Linear(channels, region_dim)
        self.register_buffer("positions", sinusoidal_positions(channels, height, width), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        weights = self.node_weights(x).softmax(dim=1)  # [n, N, H, W], sums to 1 over nodes
        x = x + self.position_proj(self.positions[None])
        latents = torch.einsum("bnhw,bchw->bnc", weights, x)
        return self.to_latent(latents)


# --------------------------------------------------------------------------- alpha (Eq. 11-14)


def artanh_clamped(x: Tensor) -> Tensor:
    """``artanh`` with its argument clamped to ``(-1 + 1e-7, 1 - 1e-7)``, as the authors do."""
    return torch.atanh(x.clamp(-1 + ARTANH_CLAMP, 1 - ARTANH_CLAMP))


def initial_size(length: int, cells: int, plus_one: bool = True) -> float:
    r"""The size a region has when its offset is zero (Eq. 12's :math:`h_{init}`).

    The paper: :math:`L / (2 \cdot cells)` (a third of the map's half for a 3 x 3 grid).
    The authors' code (``plus_one=True``) adds 1 inside and 1 outside:
    :math:`(L / (2 \cdot cells) + 1) + 1`, so a region is never narrower than bilinear.
    """
    base = length / (2 * cells)
    return base + 2 if plus_one else base


def region_size(offset: Tensor, length: int, cells: int, plus_one: bool = True) -> Tensor:
    r"""Eq. 12: a positive half-extent from an unconstrained offset.

    Paper: :math:`s = e^{\tilde o} \cdot L/(2\,cells)`.
    Code (``plus_one=True``): :math:`s = e^{\tilde o} \cdot (L/(2\,cells) + 1) + 1`.
    """
    base = length / (2 * cells)
    if plus_one:
        return offset.exp() * (base + 1) + 1
    return offset.exp() * base


def region_center(offset: Tensor, anchor: Tensor, length: int, clamp: bool = True) -> Tensor:
    r"""Eq. 13-14: a centre on the map from an unconstrained offset and an anchor.

    .. math:: c = \frac{L}{2}\left(1 + \tanh\left(\tilde o + \operatorname{artanh}\left(\frac{2a}{L} - 1\right)\right)\right)

    which equals :math:`a + \Delta` with :math:`\Delta = \frac{L}{2}\tanh(\cdot) + \frac{L}{2} - a`.
    At :math:`\tilde o = 0` the centre is the anchor :math:`a`.
    ``clamp=True`` (the authors' code) then clamps to ``[0, L - 1]``; the gradient is zero there.
    """
    center = length / 2 * (1 + torch.tanh(offset + artanh_clamped(2 * anchor / length - 1)))
    return center.clamp(0, length - 1) if clamp else center


#: Eq. 12's :math:`h_{init} = H/6`: the initial size is a third of the map's half, whatever the
#: number of nodes (the authors' ``h_g = w_g = 3``). The node count changes the anchors, not this.
SIZE_CELLS = 3


def regions_from_offsets(
    offsets: Tensor,
    anchors: Tensor,
    height: int,
    width: int,
    size_cells: int = SIZE_CELLS,
    *,
    size_plus_one: bool = True,
    clamp_centers: bool = True,
    fixed_size: float | None = None,
) -> Tensor:
    r"""The constraints :math:`\alpha` (Eq. 11-14): offsets to regions.

    Args:
        offsets: ``[..., N, 4]`` as ``(dx, dy, dw, dh)`` (paper order).
        anchors: ``[N, 2]`` as ``(ax, ay)`` in pixels.
        size_cells: sizes start at ``L / (2 * size_cells)`` (+2 in code), ``H / 6`` by default.
        fixed_size: if given, every region has this half-extent and ``dw, dh`` are ignored
            (the *Position-only* variant and the region-size sweep of Table 11).

    Returns:
        ``[..., N, 4]`` as ``(cx, cy, sx, sy)`` in pixels.
    """
    if offsets.shape[-1] != 4 or anchors.shape != (offsets.shape[-2], 2):
        raise ValueError(
            f"offsets must be [..., N, 4] and anchors [N, 2]; got {tuple(offsets.shape)} and {tuple(anchors.shape)}"
        )
    dx, dy, dw, dh = offsets.unbind(-1)
    cx = region_center(dx, anchors[:, 0], width, clamp_centers)
    cy = region_center(dy, anchors[:, 1], height, clamp_centers)
    if fixed_size is None:
        sx = region_size(dw, width, size_cells, size_plus_one)
        sy = region_size(dh, height, size_cells, size_plus_one)
    else:
        sx = sy = torch.full_like(dw, float(fixed_size))
    return torch.stack([cx, cy, sx, sy], dim=-1)


def center_anchors(num_nodes: int, height: int, width: int) -> Tensor:
    """All anchors at the map centre ``(W/2, H/2)`` (the authors' ``center``; paper Sec. 3.1).

    Note: pixel indices run ``0 .. L-1``, so ``L/2`` is half a pixel right of and below the true
    centre (8 rather than 7.5 for L = 16). The authors' code uses H for both axes (square
    maps); we use W for x. Returns ``[N, 2]`` as ``(ax, ay)``.
    """
    return torch.tensor([[width / 2, height / 2]]).repeat(num_nodes, 1)


def grid_anchors(grid: tuple[int, int], height: int, width: int) -> Tensor:
    """Anchors at the cell centres of a ``grid`` partition, row-major (the authors' ``grid``).

    The centres are ``linspace(0, L, 2 * cells + 1)[1::2]``: 2.67, 8, 13.33 for L = 16, i.e.
    ``(k + 1/2) L / cells``. As with :func:`center_anchors`, that is half a pixel right of and
    below the cells' true centres in pixel coordinates, ``(k + 1/2) L / cells - 1/2`` (2.17, 7.5,
    12.83), which the Fixed baseline's area cells use; we keep the authors' value here.
    Returns ``[rows * cols, 2]`` as ``(ax, ay)``.
    """
    ys = torch.linspace(0, height, 2 * grid[0] + 1)[1::2]
    xs = torch.linspace(0, width, 2 * grid[1] + 1)[1::2]
    ay, ax = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([ax.flatten(), ay.flatten()], dim=-1)


def node_grid(num_nodes: int) -> tuple[int, int]:
    """The node grid ``(rows, cols)`` used for sizes, grid anchors and Fixed kernels:
    a square when ``N`` is a square number (3 x 3 for 9, 4 x 4 for 16), else ``1 x N``."""
    if num_nodes < 1:
        raise ValueError(f"num_nodes must be positive, got {num_nodes}")
    side = math.isqrt(num_nodes)
    return (side, side) if side * side == num_nodes else (1, num_nodes)



# --------------------------------------------------------------------------- ground-truth regions (App. E.6)

#: Half a map pixel added to each half-extent of a ground-truth box (:func:`regions_from_boxes`).
BOX_MARGIN = 0.5


def regions_from_boxes(boxes: Tensor, video_size: int, height: int, width: int, margin: float = BOX_MARGIN) -> Tensor:
    """The regions of ground-truth boxes, for the oracle of Appendix E.6 (``variant="oracle"``).

    Each box ``(x1, y1, x2, y2)`` in video pixels becomes the region ``(cx, cy, sx, sy)`` in
    map pixels with the same centre (on the map's grid of pixel indices ``0 .. L-1``, as
    :func:`dyreg_edu.metrics.region_centers` reads it back) and half-extents of half the box plus
    ``margin`` map pixels, so that the tent of Eq. 5 gives every map pixel the box covers a
    positive weight (a pixel centred on the box's edge gets ``margin``).

    Shapes: ``boxes [..., D, 4] -> regions [..., D, 4]``.
    """
    if boxes.shape[-1] != 4:
        raise ValueError(f"boxes must end in 4 numbers (x1, y1, x2, y2 in video pixels), got {tuple(boxes.shape)}")
    scale = boxes.new_tensor([width / video_size, height / video_size])
    corner, far = boxes[..., :2] * scale, boxes[..., 2:] * scale
    return torch.cat([(corner + far) / 2 - 0.5, (far - corner) / 2 + margin], dim=-1)


# --------------------------------------------------------------------------- the whole generator

#: Variants whose regions keep a constant size (paper Table 5: no "Dynamic Size").
FIXED_SIZE_VARIANTS = tuple(v for v in GENERATED_VARIANTS if not PROPERTIES[v].size_predicted)


class RegionGenerator(nn.Module):
    r"""Eq. 1-4 and 11-14 end to end: a clip's maps to its regions.

    Args:
        channels, height, width: the map the regions are predicted from (``C x H x W``).
        num_nodes: ``N``.
        region_dim: ``D``, the latent size (32 on MultiSyncMNIST, 128 on Something-Something).
        variant: one of :data:`GENERATED_VARIANTS`:

            - ``dyreg``: f, full g_i, LN, GRU over time, LN, W_o, gamma (the paper's model).
            - ``lite``: the Lite g_i on the map itself, no f (Table 6).
            - ``no_gru``: as ``dyreg`` without the GRU of Eq. 3, ``z = m`` (Table 9); both
              LayerNorms are kept.
            - ``constant_time``: the GRU reads the whole clip and its last state gives the
              centres of every frame (Table 5, *Constant-Time*).
            - ``static``: learned latents ``z_i`` (``N x D``), the same for every video and
              frame (Table 5, *Static*: "the features z_i from Eq. 4 become learnable").
            - ``pos_only``: predicted centres, every frame (Table 5, *Position-Only*).

            Table 5 checks "Dynamic Size" only for DyReg-GNN, so ``static``,
            ``constant_time`` and ``pos_only`` keep a constant size ``fixed_size`` and
            predict centres only: each row of the table adds one property to the one above.
        grid: node grid ``(rows, cols)`` for the ``"grid"`` anchors. The initial size is
            ``L / 6`` (+2 in code) and the fixed size ``H / 6 + 1`` whatever ``N`` is (Eq. 12's
            :math:`h_{init} = H/6`), so that Table 7 changes the node count and nothing else.
        anchors: ``"center"`` (the paper and the authors' scripts) or ``"grid"``.
        size_plus_one: the authors' ``+1`` terms in the size (Eq. 12); ``False`` = paper.
        clamp_centers: the authors' clamp of centres to ``[0, L-1]``; ``False`` = paper.
        fixed_size: half-extent of the fixed-size variants; default ``H / 6 + 1``, the
            authors' pre-release ``constrained_fix_size``.
        learn_size: whether the sizes come from offsets (``dw, dh`` through Eq. 12) rather
            than the constant ``fixed_size``. ``None`` (default) follows Table 5: ``True`` only
            for ``dyreg``, ``lite`` and ``no_gru``. ``learn_size=True`` with ``static`` is the
            other reading of the paper's Static ("the features z_i become learnable"): the
            learned z_i then give each node a learned size as well as a learned position.

    Shapes: ``forward([B, T, C, H, W]) -> (regions [B, T, N, 4], offsets [B, T, N, 4])``,
    regions as ``(cx, cy, sx, sy)``, offsets as ``(dx, dy, dw, dh)`` (before alpha).
    """

    def __init__(
        self,
        channels: int,
        height: int,
        width: int,
        *,
        num_nodes: int = 9,
        region_dim: int = 128,
        variant: str = "dyreg",
        grid: tuple[int, int] | None = None,
        anchors: str = "center",
        size_plus_one: bool = True,
        clamp_centers: bool = True,
        fixed_size: float | None = None,
        learn_size: bool | None = None,
    ):
        super().__init__()
        if variant not in GENERATED_VARIANTS:
            raise ValueError(f"RegionGenerator variant must be one of {GENERATED_VARIANTS}, got {variant!r}")
        self.variant = variant
        self.properties = properties(variant)  # what this variant's regions have (dyreg_edu.variants)
        self.height, self.width = height, width
        self.grid = grid or node_grid(num_nodes)
        if self.grid[0] * self.grid[1] != num_nodes:
            raise ValueError(f"grid {self.grid} does not hold num_nodes={num_nodes}")
        self.size_plus_one = size_plus_one
        self.clamp_centers = clamp_centers
        if learn_size is None:
            learn_size = self.properties.size_predicted
        if fixed_size is not None and learn_size:
            raise ValueError(f"fixed_size applies to regions of constant size (the variants {FIXED_SIZE_VARIANTS} "
                             f"with learn_size=False), not to {variant!r} with learn_size=True")
        if not learn_size and fixed_size is None:
            fixed_size = height / (2 * SIZE_CELLS) + 1
        if fixed_size is not None and fixed_size <= 0:
            raise ValueError(f"fixed_size must be a positive half-extent in pixels, got {fixed_size}")
        self.fixed_size = fixed_size
        latents = self.properties.latents
        if latents == "learned":  # Static: z_i are parameters
            self.static_latents = nn.Parameter(torch.randn(num_nodes, region_dim))
        else:
            if latents == "lite":
                self.f = None
                self.g = NodeLatentsLite(channels, height, width, num_nodes, region_dim)
            else:
                self.f = FunctionF(channels, height, width)
                self.g = NodeLatentsFull(F_OUT_CHANNELS, self.f.out_size, num_nodes, region_dim)
            self.latent_norm = node_norm(region_dim)
            self.gru = nn.GRU(region_dim, region_dim, batch_first=True) if self.properties.region_gru else None
            self.output_norm = node_norm(region_dim)
        num_offsets = 2 if self.fixed_size is not None else 4
        self.w_o = nn.Linear(region_dim, num_offsets)
        self.gamma = nn.Parameter(torch.zeros(num_offsets))  # Eq. 11: every region starts at its anchor
        self.register_buffer("anchors", self._anchors(anchors, num_nodes), persistent=False)

    def _anchors(self, kind: str, num_nodes: int) -> Tensor:
        if kind == "center":
            return center_anchors(num_nodes, self.height, self.width)
        if kind == "grid":
            return grid_anchors(self.grid, self.height, self.width)
        raise ValueError(f"anchors must be 'center' or 'grid', got {kind!r}")

    def node_latents(self, x: Tensor) -> Tensor:
        r"""Eq. 1-2: :math:`\hat m_{i,t} = g_i(f(X_t))`, every frame on its own.

        Shapes: ``[B, T, C, H, W] -> [B, T, N, D]`` (Lite: ``g_i`` reads ``X_t`` itself).
        """
        frames = rearrange(x, "b t c h w -> (b t) c h w")
        m_hat = self.g(frames) if self.f is None else self.g(self.f(frames))
        return rearrange(m_hat, "(b t) n d -> b t n d", b=x.shape[0])

    def region_latents(self, m_hat: Tensor) -> Tensor:
        r"""Eq. 3: :math:`z_{i,t} = \mathrm{GRU}(\mathrm{LN}(\hat m_{i,1..t}))`, then LN.

        The GRU runs over each node's frames from a zero state. ``no_gru``: ``z = LN(m_hat)``;
        ``constant_time``: the last state :math:`z_{i,T}` for every frame. Both LayerNorms
        normalise a frame's ``N x D`` latents jointly (the authors'). Shapes: ``[B, T, N, D]``.
        """
        m = self.latent_norm(m_hat)
        if self.gru is None:
            z = m
        else:
            z = run_over_time(self.gru, m)
            if not self.properties.per_frame:  # Constant-Time
                z = repeat(z[:, -1], "b n d -> b t n d", t=z.shape[1])
        return self.output_norm(z)

    def latents(self, x: Tensor) -> Tensor:
        r"""The latents :math:`z_{i,t}` of Eq. 4, ``[B, T, C, H, W] -> [B, T, N, D]``: Eq. 1-3,
        or, for ``static``, the learned :math:`z_i`, the same for every video and frame."""
        if not self.properties.from_video:  # Static
            return repeat(self.static_latents, "n d -> b t n d", b=x.shape[0], t=x.shape[1])
        return self.region_latents(self.node_latents(x))

    def offsets(self, z: Tensor) -> Tensor:
        r"""Eq. 4 and 11: :math:`\tilde o = (W_o z) \odot \gamma`, ``[..., N, D] -> [..., N, 4]``."""
        offsets = self.w_o(z) * self.gamma
        if self.fixed_size is not None:  # sizes are fixed: pad dw = dh = 0
            offsets = torch.cat([offsets, torch.zeros_like(offsets)], dim=-1)
        return offsets

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        offsets = self.offsets(self.latents(x))
        regions = regions_from_offsets(
            offsets,
            self.anchors,
            self.height,
            self.width,
            size_plus_one=self.size_plus_one,
            clamp_centers=self.clamp_centers,
            fixed_size=self.fixed_size,
        )
        return regions, offsets
