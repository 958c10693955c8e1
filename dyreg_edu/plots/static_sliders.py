r"""Sliders that work without a kernel: on the book's published (static) pages, in Jupyter, in Colab.

An ``ipywidgets`` slider asks a running Python kernel to redraw its figure; a static web page
has no kernel, so there it does nothing. The widgets here compute every setting the sliders
can reach *when the cell runs*, with the library's own functions (:mod:`dyreg_edu.kernels`,
:mod:`dyreg_edu.regions`, a trained model), and ship the results, small arrays and PNG frames,
inside one self-contained piece of HTML. A short script in that HTML draws the selected
setting on a ``<canvas>`` whenever a slider moves: no network, no CDN, no kernel.

- :func:`static_region_explorer`: a region ``(cx, cy, sx, sy)`` on a map, its kernel (Eq. 5-6)
  and the pooled feature (Eq. 7), with the loss's descent direction for a ``target``
  (Chapter 1; the static twin of :func:`dyreg_edu.plots.regions.region_explorer`).
- :func:`static_alpha_explorer`: the raw outputs :math:`W_o z`, :math:`\gamma` and the
  constraints :math:`\alpha` (Eq. 11-14), code or paper form (Chapter 2; the static twin of
  :func:`dyreg_edu.plots.regions.alpha_explorer`).
- :func:`static_frame_player` and :func:`static_region_player`: the frames of videos with a
  model's regions and the digits' boxes (Chapters 6-7; the static twin of
  :func:`dyreg_edu.plots.video.region_player`).

Each returns a :class:`SliderWidget`; the last line of a cell displays it (its ``_repr_html_``),
and the notebook stores it as ``text/html``, which the book's pages include as they are.
The sliders step through a grid of values (the ``values`` arguments), not a continuum: that
grid is what is precomputed. Nothing runs at import time.
"""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from ..kernels import pool_nodes, region_kernels, tent
from ..regions import SIZE_CELLS, initial_size, region_center, region_size
from .style import node_color

__all__ = [
    "Slider",
    "SliderWidget",
    "static_region_explorer",
    "static_alpha_explorer",
    "static_frame_player",
    "static_region_player",
    "MAX_BYTES",
]

#: The largest HTML a widget may weigh by default (it is stored in the notebook and in the page).
MAX_BYTES = 600_000
#: The grid of the region explorer's half-extents (the authors' start, ``16 / 6 + 2``, among them).
REGION_SIZES = (0.5, 1.0, 2.0, 3.0, 4.667, 6.0)
#: The grid of the alpha explorer's raw outputs and of gamma.
ALPHA_RAW = tuple(np.round(np.arange(-3.0, 3.01, 0.5), 2).tolist())
ALPHA_GAMMAS = tuple(np.round(np.arange(0.0, 2.01, 0.25), 2).tolist())
_ORANGE = "#ff7f0e"  # tab:orange, the region of plot_region
_ids = itertools.count()


# ----------------------------------------------------------------------------- the widget


@dataclass(frozen=True)
class Slider:
    """One slider: its ``name`` (the key the script reads), ``label`` (shown), the ``values`` it
    steps through, their ``labels`` (the readout) and the index it starts at."""

    name: str
    label: str
    values: tuple
    labels: tuple
    start: int = 0

    @classmethod
    def over(cls, name: str, values: Sequence, *, label: str | None = None, start=None, fmt: str = "{:g}"):
        """A slider over ``values``, starting at the value nearest ``start`` (default the first)."""
        values = tuple(values)
        if not values:
            raise ValueError(f"slider {name!r} needs at least one value")
        if start is None:
            index = 0
        elif isinstance(values[0], str):
            index = values.index(start)
        else:
            index = int(np.argmin([abs(float(v) - float(start)) for v in values]))
        labels = tuple(v if isinstance(v, str) else fmt.format(v) for v in values)
        return cls(name, label or name, values, labels, index)


@dataclass
class SliderWidget:
    """Sliders over precomputed frames, as one self-contained piece of HTML (no kernel needed).

    ``kind`` names the drawing the script does (``region``, ``alpha`` or ``player``); ``data``
    holds the precomputed arrays, one entry per setting of the sliders that the drawing
    depends on. ``html`` is the widget; a notebook displays it through ``_repr_html_``.
    """

    kind: str
    title: str
    sliders: list
    data: dict
    panels: list  # (name, width, height) of each canvas
    legend: list = field(default_factory=list)  # (colour, text) shown under the figure
    max_bytes: int = MAX_BYTES
    html: str = field(init=False, repr=False)

    def __post_init__(self):
        names = [s.name for s in self.sliders]
        if len(set(names)) != len(names):
            raise ValueError(f"slider names must differ, got {names}")
        self.html = _render(self)
        if len(self.html) > self.max_bytes:
            raise ValueError(f"the {self.kind} widget weighs {len(self.html):,} bytes, more than max_bytes="
                             f"{self.max_bytes:,}: give its sliders fewer values (or smaller frames)")

    @property
    def num_settings(self) -> int:
        """How many settings the sliders can reach (the product of their lengths)."""
        return math.prod(len(s.values) for s in self.sliders)

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        sliders = ", ".join(f"{s.name} ({len(s.values)} values)" for s in self.sliders)
        return (f"<static {self.kind} widget: {sliders}; {self.num_settings:,} settings, "
                f"{len(self.html) / 1000:.0f} kB of HTML; it needs a browser with JavaScript>")


def _pack(array, dtype: str = "f32") -> dict:
    """An array as base64 for the page: ``u8`` (0..255 as given), ``f16`` (scaled so its largest
    magnitude fits), or ``f32``. The script multiplies by ``scale`` when it reads it."""
    a = np.asarray(array, dtype=np.float64)
    scale = 1.0
    if dtype == "u8":
        raw = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    elif dtype == "f16":
        peak = float(np.abs(a).max()) if a.size else 0.0
        scale = max(1.0, peak / 60000.0)
        raw = (a / scale).astype("<f2")
    elif dtype == "f32":
        raw = a.astype("<f4")
    else:
        raise ValueError(f"dtype must be u8, f16 or f32, got {dtype!r}")
    return {"dtype": dtype, "shape": list(a.shape), "scale": scale,
            "b64": base64.b64encode(raw.tobytes()).decode("ascii")}


def _png(frame: np.ndarray) -> str:
    """A grey ``[H, W]`` or RGB ``[H, W, 3]`` uint8 frame as a PNG data URI."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _render(widget: SliderWidget) -> str:
    spec = {"kind": widget.kind, "data": widget.data,
            "sliders": [{"name": s.name, "values": list(s.values), "labels": list(s.labels)}
                        for s in widget.sliders]}
    payload = json.dumps(spec, separators=(",", ":")).replace("</", "<\\/")
    digest = hashlib.sha1(payload.encode()).hexdigest()[:8]
    uid = f"dyreg-sliders-{digest}-{next(_ids)}"
    rows = []
    for s in widget.sliders:
        rows.append(
            f'<label for="{uid}-{s.name}" style="white-space:nowrap">{_escape(s.label)}</label>'
            f'<input type="range" id="{uid}-{s.name}" data-name="{s.name}" min="0" max="{len(s.values) - 1}" '
            f'step="1" value="{s.start}" style="width:100%;min-width:140px">'
            f'<output data-name="{s.name}" style="font-family:monospace">{_escape(s.labels[s.start])}</output>')
    canvases = "".join(
        f'<canvas data-panel="{name}" width="{w}" height="{h}" '
        f'style="max-width:100%;height:auto;border:1px solid #ddd;background:#fff"></canvas>'
        for name, w, h in widget.panels)
    legend = "".join(f'<span style="white-space:nowrap;margin-right:10px"><span style="display:inline-block;'
                     f'width:14px;height:4px;background:{c};vertical-align:middle;margin-right:3px"></span>'
                     f'{_escape(text)}</span>' for c, text in widget.legend)
    return (
        f'<div class="dyreg-sliders" id="{uid}" data-kind="{widget.kind}" '
        f'style="font-family:sans-serif;font-size:13px;margin:0.5em 0;max-width:100%">'
        f'<div style="font-weight:bold;margin-bottom:4px">{_escape(widget.title)}</div>'
        f'<div style="display:grid;grid-template-columns:max-content minmax(140px,260px) max-content;'
        f'gap:2px 8px;align-items:center;margin-bottom:6px">{"".join(rows)}</div>'
        f'<div style="display:flex;flex-wrap:wrap;gap:8px;align-items:flex-start">{canvases}</div>'
        + (f'<div style="font-size:12px;margin-top:4px">{legend}</div>' if legend else "")
        + '<pre class="dyreg-caption" style="white-space:pre-wrap;font-size:12px;margin:4px 0 0 0;'
        'padding:4px;background:#f7f7f7">(the figure needs JavaScript)</pre>'
        f'<script type="application/json" class="dyreg-data">{payload}</script>'
        f'<script>{_SCRIPT.replace("__ID__", uid)}</script></div>')


def _escape(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _hex(color) -> str:
    from matplotlib.colors import to_hex

    return to_hex(color)


def _colormap(name: str) -> dict:
    from matplotlib import colormaps

    return _pack(colormaps[name](np.linspace(0, 1, 256))[:, :3] * 255, "u8")


# ----------------------------------------------------------------------------- Chapter 1


def static_region_explorer(
    image: Tensor,
    target: Sequence[float] | Tensor | None = None,
    *,
    centers: Sequence[float] | None = None,
    sizes: Sequence[float] = REGION_SIZES,
    start: Sequence[float] | None = None,
    normalize: bool = True,
    pixel: int = 16,
    max_bytes: int = MAX_BYTES,
) -> SliderWidget:
    r"""Four sliders, ``cx, cy`` (the centre) and ``w, h`` (the half-extents ``sx, sy``), over a
    map: the map with the region ``c ± s``, the region's kernel (Eq. 5-6) and the pooled
    feature :math:`v` (Eq. 7); with a ``target`` also the loss
    :math:`L = \lVert v - v^\ast \rVert^2`, its gradient with respect to the region and an arrow
    along :math:`-\partial L / \partial (c_x, c_y)` (3 pixels long), as in
    :func:`~dyreg_edu.plots.regions.plot_region`.

    Every one of the ``len(centers)**2 * len(sizes)**2`` regions is pooled here with
    :func:`~dyreg_edu.kernels.region_kernels` and :func:`~dyreg_edu.kernels.pool_nodes` (and
    differentiated with autograd). The kernel is separable, so the page receives the two tents
    (:func:`~dyreg_edu.kernels.tent`) of each ``(c, s)`` on each axis and draws their outer
    product (Eq. 5), divided by its sum when ``normalize``.

    Args:
        image: ``[H, W]`` or ``[C, H, W]`` (``C = 3`` is drawn as RGB in [0, 1], otherwise the
            channel mean in grey).
        target: ``[C]``, the feature :math:`v^\ast` the region should pool.
        centers: the centres of both sliders; default every pixel, ``0 .. max(H, W) - 1``.
        sizes: the half-extents of both size sliders (positive).
        start: ``(cx, cy, sx, sy)`` where the sliders start (the nearest grid values); default
            the centre of the map and the authors' initial size ``H / 6 + 2``.
        pixel: screen pixels per map pixel.

    Returns:
        the :class:`SliderWidget`; display it.
    """
    image = torch.as_tensor(image).detach().float().cpu()
    if image.dim() == 2:
        image = image[None]
    if image.dim() != 3:
        raise ValueError(f"image must be [H, W] or [C, H, W], got shape {tuple(image.shape)}")
    channels, height, width = image.shape
    centers = tuple(float(c) for c in (range(max(height, width)) if centers is None else centers))
    sizes = tuple(float(s) for s in sizes)
    if not sizes or min(sizes) <= 0:
        raise ValueError(f"sizes must be positive half-extents, got {sizes}")
    if not centers:
        raise ValueError("centers is empty")
    if start is None:
        start = (width / 2, height / 2, initial_size(width, SIZE_CELLS), initial_size(height, SIZE_CELLS))
    cs, ss = torch.tensor(centers), torch.tensor(sizes)
    grid = torch.stack(torch.meshgrid(cs, cs, ss, ss, indexing="ij"), -1)  # [cx, cy, w, h, 4]
    regions = grid.reshape(-1, 4).clone().requires_grad_(target is not None)
    pooled = pool_nodes(image, region_kernels(regions, height, width, normalize=normalize))  # [K, C] Eq. 7
    shape = grid.shape[:-1]
    data = {
        "H": height, "W": width, "C": channels, "pixel": pixel, "normalize": normalize,
        "map": _pack(_map_rgb(image), "u8"),
        "tx": _pack(tent(cs[:, None], ss[None, :], width), "f32"),   # [centres, sizes, W]  Eq. 6
        "ty": _pack(tent(cs[:, None], ss[None, :], height), "f32"),  # [centres, sizes, H]
        "pooled": _pack(pooled.detach().reshape(*shape, channels), "f16"),
        "viridis": _colormap("viridis"),
    }
    if target is not None:
        target = torch.as_tensor(target, dtype=torch.float32).reshape(-1)
        if target.shape[0] != channels:
            raise ValueError(f"target has {target.shape[0]} values, the map {channels} channels")
        losses = ((pooled - target) ** 2).sum(-1)  # [K]: one loss per region
        (grad,) = torch.autograd.grad(losses.sum(), regions)  # the regions are independent
        data["target"] = target.tolist()
        data["loss"] = _pack(losses.detach().reshape(shape), "f16")
        data["grad"] = _pack(grad.reshape(*shape, 4), "f16")
    size_label = "w (sx)", "h (sy)"
    sliders = [Slider.over("cx", centers, start=start[0]), Slider.over("cy", centers, start=start[1]),
               Slider.over("w", sizes, label=size_label[0], start=start[2]),
               Slider.over("h", sizes, label=size_label[1], start=start[3])]
    side = pixel * max(height, width)
    kind = "normalised" if normalize else "raw"
    title = f"Region explorer (no kernel needed): map and region, its {kind} kernel (Eq. 5-6), the pooled v (Eq. 7)"
    return SliderWidget("region", title, sliders, data, [("map", side, side), ("kernel", side + 70, side)],
                        max_bytes=max_bytes)


def _map_rgb(image: Tensor) -> np.ndarray:
    """``[C, H, W]`` -> ``[H, W, 3]`` in 0..255 as :func:`~dyreg_edu.plots.regions.plot_region`
    shows it: RGB clipped to [0, 1] for three channels, else the channel mean, min to max."""
    if image.shape[0] == 3:
        rgb = image.permute(1, 2, 0).clamp(0, 1)
    else:
        grey = image.mean(0)
        grey = (grey - grey.min()) / (grey.max() - grey.min()).clamp(min=1e-12)
        rgb = grey[..., None].expand(-1, -1, 3)
    return (rgb * 255).numpy()


# ----------------------------------------------------------------------------- Chapter 2


def static_alpha_explorer(
    length: int = 16,
    cells: int = SIZE_CELLS,
    anchor: Sequence[float] | None = None,
    *,
    raw_values: Sequence[float] = ALPHA_RAW,
    gammas: Sequence[float] = ALPHA_GAMMAS,
    start: Sequence[float] = (1.0, -0.5, 0.5, -0.5),
    start_gamma: float = 1.0,
    max_bytes: int = MAX_BYTES,
) -> SliderWidget:
    r"""Sliders for the four raw outputs :math:`W_o z = (x, y, w, h)` of one node, for
    :math:`\gamma` (Eq. 11) and for the form (the authors' ``code`` or the ``paper``'s
    Eq. 12-14), drawn as :func:`~dyreg_edu.plots.regions.plot_alpha_point` draws them: the
    centre's tanh with :math:`(\Delta\tilde x, c_x)` and :math:`(\Delta\tilde y, c_y)` marked, the
    size's exponential (log scale) with :math:`\tilde w`, :math:`\tilde h` marked, and the
    region's normalised kernel on the ``length x length`` map.

    The constraint is separable: :math:`c_x` depends only on :math:`(W_o z)_x`, :math:`\gamma` and
    the form, and so on. Each coordinate is computed here for every value of its slider with
    :func:`~dyreg_edu.regions.region_center` and :func:`~dyreg_edu.regions.region_size`, and the
    tents of every ``(c_x, s_x)`` and ``(c_y, s_y)`` with :func:`~dyreg_edu.kernels.tent`; the
    page draws the kernel as their outer product (Eq. 5) over its sum.

    Args:
        length: the map side ``L``; ``cells``: sizes start at ``L / (2 cells)`` (+2 in code).
        anchor: ``(ax, ay)``; default the centre ``(L/2, L/2)`` (the paper's).
        raw_values: the values of the four raw-output sliders; ``gammas``: those of gamma.
        start: where the raw outputs start; ``start_gamma``: where gamma starts.
    """
    if length < 2:
        raise ValueError(f"length must be at least 2, got {length}")
    raw = torch.tensor([float(v) for v in raw_values])
    gam = torch.tensor([float(g) for g in gammas])
    if raw.numel() == 0 or gam.numel() == 0:
        raise ValueError("raw_values and gammas need at least one value each")
    anchor = (length / 2, length / 2) if anchor is None else tuple(float(a) for a in anchor)
    offsets = raw[:, None] * gam[None, :]  # [raw, gamma]: gamma W_o z, Eq. 11
    reach = max(3.0, float(offsets.abs().max()) + 0.5)
    curve = torch.linspace(-reach, reach, 241)
    data = {"L": length, "anchor": list(anchor), "reach": reach, "curve": _pack(curve, "f32"),
            "ccx": [], "ccy": [], "csize": [], "cx": [], "cy": [], "sx": [], "sy": [],
            "tx": [], "ty": [], "txmax": [], "tymax": []}
    for code in (True, False):
        cx = region_center(offsets, torch.tensor(anchor[0]), length, clamp=code)  # [raw x, gamma]  Eq. 13-14
        cy = region_center(offsets, torch.tensor(anchor[1]), length, clamp=code)  # [raw y, gamma]
        size = region_size(offsets, length, cells, plus_one=code)                  # [raw w or h, gamma]  Eq. 12
        data["ccx"].append(_pack(region_center(curve, torch.tensor(anchor[0]), length, clamp=code), "f32"))
        data["ccy"].append(_pack(region_center(curve, torch.tensor(anchor[1]), length, clamp=code), "f32"))
        data["csize"].append(_pack(region_size(curve, length, cells, plus_one=code), "f32"))
        for name, value in (("cx", cx), ("cy", cy), ("sx", size), ("sy", size)):
            data[name].append(_pack(value, "f32"))
        for axis, centre in (("x", cx), ("y", cy)):
            # [raw centre, raw size, gamma, L]: the tent of every (c, s) the sliders reach, Eq. 6
            tents = tent(centre[:, None, :], size[None, :, :], length)
            factor = tents / tents.sum(-1, keepdim=True).clamp(min=1e-37)  # the normalised kernel's 1-D factor
            peak = factor.amax(-1)
            data[f"t{axis}"].append(_pack(255 * factor / peak.clamp(min=1e-37)[..., None], "u8"))
            data[f"t{axis}max"].append(_pack(peak, "f32"))
    data["greys"] = _colormap("Greys")
    sliders = [Slider.over(n, raw_values, label=f"(W_o z)_{n}", start=v) for n, v in zip("xywh", start)]
    sliders += [Slider.over("gamma", gammas, start=start_gamma), Slider.over("form", ("code", "paper"))]
    title = "Alpha explorer (no kernel needed): W_o z and gamma through the constraints alpha (Eq. 11-14)"
    return SliderWidget("alpha", title, sliders, data, [("centre", 235, 220), ("size", 235, 220), ("map", 190, 190)],
                        legend=[(_hex(node_color(0)), "x: circle, y: square")], max_bytes=max_bytes)


# ----------------------------------------------------------------------------- Chapters 6-7


def static_frame_player(
    videos,
    regions=None,
    boxes=None,
    sync=None,
    *,
    stride: float = 1.0,
    titles: Sequence[str] | None = None,
    pixel: int | None = None,
    title: str = "Region player (no kernel needed)",
    max_bytes: int = MAX_BYTES,
) -> SliderWidget:
    """Two sliders, ``video`` and ``frame``, over grey videos ``[B, T, H, W]`` (uint8, or float in
    [0, 1]), with a model's regions ``[B, T, N, 4]`` on its feature map (``stride`` video pixels
    per map pixel; node ``i`` in ``node_color(i)``, its centre a dot) and the digits' boxes
    ``[B, T, D, 4]`` ``(x1, y1, x2, y2)`` (green where ``sync`` ``[B, D]`` is true, red
    otherwise, yellow without ``sync``), as :func:`~dyreg_edu.plots.video.draw_frame_regions`
    draws them. ``titles``: one line per video; ``pixel``: screen pixels per video pixel (default: about 384
    screen pixels a side). The frames travel as PNG images.
    """
    from .video import OTHER_COLOR, SYNC_COLOR, regions_to_video

    v = torch.as_tensor(videos).detach().cpu()
    if v.dim() == 3:
        v = v[None]
    if v.dim() != 4:
        raise ValueError(f"videos must be [B, T, H, W], got shape {tuple(v.shape)}")
    B, T, H, W = v.shape
    if v.dtype != torch.uint8:
        v = (v.float().clamp(0, 1) * 255).round().to(torch.uint8)
    pixel = pixel or max(1, round(384 / max(H, W)))  # screen pixels per video pixel
    frames = [[_png(v[b, t].numpy()) for t in range(T)] for b in range(B)]
    data = {"frames": frames, "H": H, "W": W, "pixel": pixel, "titles": list(titles or [f"video {b}" for b in range(B)])}
    if len(data["titles"]) != B:
        raise ValueError(f"got {len(data['titles'])} titles for {B} videos")
    legend = []
    if regions is not None:
        r = torch.as_tensor(regions).detach().float().cpu()
        if r.dim() != 4 or tuple(r.shape[:2]) != (B, T) or r.shape[-1] != 4:
            raise ValueError(f"regions must be [B, T, N, 4] with B, T = {B}, {T}, got shape {tuple(r.shape)}")
        data["regions"] = _pack(regions_to_video(r.numpy(), stride), "f32")
        data["nodes"] = [_hex(node_color(i)) for i in range(r.shape[2])]
        legend = [(c, f"node {i}") for i, c in enumerate(data["nodes"])]
    if boxes is not None:
        b = torch.as_tensor(boxes).detach().float().cpu()
        if b.dim() != 4 or tuple(b.shape[:2]) != (B, T) or b.shape[-1] != 4:
            raise ValueError(f"boxes must be [B, T, D, 4] with B, T = {B}, {T}, got shape {tuple(b.shape)}")
        data["boxes"] = _pack(b, "f32")
        if sync is None:
            colors = [["yellow"] * b.shape[2]] * B
        else:
            s = torch.as_tensor(sync).bool().reshape(B, -1)
            if s.shape[1] != b.shape[2]:
                raise ValueError(f"sync must be [B, D] with D = {b.shape[2]}, got shape {tuple(s.shape)}")
            colors = [[SYNC_COLOR if x else OTHER_COLOR for x in row] for row in s.tolist()]
        data["boxcolors"] = [[_hex(c) for c in row] for row in colors]
    sliders = [Slider.over("video", range(B)), Slider.over("frame", range(T))]
    return SliderWidget("player", title, sliders, data, [("frame", W * pixel, H * pixel)], legend=legend,
                        max_bytes=max_bytes)


def static_region_player(checkpoint, videos: Sequence[int] = (0, 1, 2, 3), *, boxes: bool = True,
                         pixel: int | None = None, max_bytes: int = MAX_BYTES) -> SliderWidget:
    """The regions of a trained checkpoint (:func:`dyreg_edu.train.load_trained`) on validation
    ``videos`` (indices into the validation set it was trained for), frame by frame: a
    :func:`static_frame_player` whose titles give each video's true and predicted class."""
    from .. import train as trainer

    videos = [int(i) for i in videos]
    if not videos:
        raise ValueError("videos is empty: give at least one validation index")
    model, val = trainer.load_trained(checkpoint)
    if max(videos) >= len(val) or min(videos) < 0:
        raise ValueError(f"video indices must be in 0..{len(val) - 1}, got {videos}")
    batch = val.batch(videos)
    with torch.no_grad():
        logits, aux = model(trainer.as_input(batch["video"]), return_aux=True)
    if "regions" not in aux:
        raise ValueError(f"{checkpoint}: this model has no regions to draw")
    predicted = logits.argmax(-1).tolist()
    titles = [f"validation video {i}: class {int(y)}, predicted {p}" for i, y, p in zip(videos, batch["label"], predicted)]
    stride = val.size / model.graph.height
    return static_frame_player(batch["video"], aux["regions"], batch["boxes"] if boxes else None,
                               batch["sync"] if boxes else None, stride=stride, titles=titles, pixel=pixel,
                               title=f"Trained regions, frame by frame (no kernel needed): {Path(checkpoint).name}",
                               max_bytes=max_bytes)


# ----------------------------------------------------------------------------- the script

_SCRIPT = r"""
(function () {
  "use strict";
  var root = document.getElementById("__ID__");
  if (!root || root.getAttribute("data-ready")) return;
  root.setAttribute("data-ready", "1");
  var spec = JSON.parse(root.querySelector("script.dyreg-data").textContent);
  var D = spec.data;

  function half(h) {
    var s = (h & 0x8000) ? -1 : 1, e = (h >> 10) & 0x1f, f = h & 0x3ff;
    if (e === 0) return s * Math.pow(2, -14) * (f / 1024);
    if (e === 31) return f ? NaN : s * Infinity;
    return s * Math.pow(2, e - 15) * (1 + f / 1024);
  }
  function unpack(p) {
    var bin = atob(p.b64), bytes = new Uint8Array(bin.length), i;
    for (i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    var raw, out;
    if (p.dtype === "u8") raw = bytes;
    else if (p.dtype === "f16") raw = new Uint16Array(bytes.buffer);
    else raw = new Float32Array(bytes.buffer);
    out = new Float32Array(raw.length);
    for (i = 0; i < raw.length; i++) out[i] = (p.dtype === "f16" ? half(raw[i]) : raw[i]) * p.scale;
    return {a: out, shape: p.shape};
  }
  function decode(x) {
    if (x && typeof x === "object" && !Array.isArray(x) && x.b64 !== undefined) return unpack(x);
    if (Array.isArray(x)) return x.map(decode);
    return x;
  }
  for (var key in D) D[key] = decode(D[key]);
  // the values at an index prefix: at(A, i, j) is A[i, j, :]
  function at(A) {
    var idx = Array.prototype.slice.call(arguments, 1), off = 0, rest = 1, k;
    for (k = 0; k < A.shape.length; k++) off = off * A.shape[k] + (k < idx.length ? idx[k] : 0);
    for (k = idx.length; k < A.shape.length; k++) rest *= A.shape[k];
    return A.a.subarray(off, off + rest);
  }
  function fmt(x, d) { d = (d === undefined) ? 3 : d; return (Math.abs(x) < 1e-12 ? 0 : x).toFixed(d); }
  function sgn(x, d) { var s = fmt(x, d); return (x >= 0 ? "+" : "") + s; }
  function lut(map, t) {
    var i = Math.max(0, Math.min(255, Math.round(255 * t)));
    return "rgb(" + map.a[3 * i] + "," + map.a[3 * i + 1] + "," + map.a[3 * i + 2] + ")";
  }
  var canvases = {};
  root.querySelectorAll("canvas[data-panel]").forEach(function (c) { canvases[c.getAttribute("data-panel")] = c; });
  var caption = root.querySelector(".dyreg-caption");
  var sliders = {}, state = {};
  spec.sliders.forEach(function (s) { sliders[s.name] = s; });
  function text(ctx, s, x, y, align, size) {
    ctx.fillStyle = "#000"; ctx.font = (size || 11) + "px sans-serif"; ctx.textAlign = align || "left"; ctx.fillText(s, x, y);
  }
  function ticks(lo, hi) {
    var step = Math.pow(10, Math.floor(Math.log10((hi - lo) / 4))), m = (hi - lo) / 4 / step, out = [];
    step *= (m >= 5) ? 5 : (m >= 2) ? 2 : 1;
    for (var t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) out.push(Math.round(t / step) * step);
    return out;
  }
  // axes on a canvas: returns the data -> pixel maps; ylog: log10 axis
  function axes(ctx, xr, yr, ylog, title, xlabel) {
    var w = ctx.canvas.width, h = ctx.canvas.height, l = 44, r = 8, t = 20, b = 32;
    var ly0 = ylog ? Math.log10(yr[0]) : yr[0], ly1 = ylog ? Math.log10(yr[1]) : yr[1];
    var X = function (u) { return l + (u - xr[0]) / (xr[1] - xr[0]) * (w - l - r); };
    var Y = function (v) { var q = ylog ? Math.log10(Math.max(v, 1e-30)) : v; return h - b - (q - ly0) / (ly1 - ly0) * (h - t - b); };
    ctx.clearRect(0, 0, w, h); ctx.strokeStyle = "#000"; ctx.lineWidth = 1; ctx.strokeRect(l, t, w - l - r, h - t - b);
    ticks(xr[0], xr[1]).forEach(function (u) { ctx.beginPath(); ctx.moveTo(X(u), h - b); ctx.lineTo(X(u), h - b + 4); ctx.stroke(); text(ctx, String(u), X(u), h - b + 14, "center", 10); });
    var yt = ylog ? ticks(Math.ceil(ly0), Math.floor(ly1)).filter(function (e) { return e === Math.round(e); }).map(function (e) { return Math.pow(10, e); }) : ticks(yr[0], yr[1]);
    yt.forEach(function (v) { ctx.beginPath(); ctx.moveTo(l - 4, Y(v)); ctx.lineTo(l, Y(v)); ctx.stroke(); text(ctx, String(v), l - 6, Y(v) + 3, "right", 10); });
    text(ctx, title, w / 2, 13, "center", 11); text(ctx, xlabel, (l + w - r) / 2, h - 4, "center", 10);
    return {X: X, Y: Y, box: [l, t, w - l - r, h - t - b]};
  }
  function line(ctx, ax, xs, ys, color, dash) {
    ctx.save(); ctx.beginPath(); ctx.rect(ax.box[0], ax.box[1], ax.box[2], ax.box[3]); ctx.clip();
    ctx.strokeStyle = color; ctx.lineWidth = 1.5; ctx.setLineDash(dash || []); ctx.beginPath();
    for (var i = 0; i < xs.length; i++) { if (i) ctx.lineTo(ax.X(xs[i]), ax.Y(ys[i])); else ctx.moveTo(ax.X(xs[i]), ax.Y(ys[i])); }
    ctx.stroke(); ctx.restore();
  }
  function marker(ctx, x, y, color, square) {
    ctx.fillStyle = color; ctx.strokeStyle = "#000"; ctx.lineWidth = 1; ctx.beginPath();
    if (square) ctx.rect(x - 5, y - 5, 10, 10); else ctx.arc(x, y, 5.5, 0, 2 * Math.PI);
    ctx.fill(); ctx.stroke();
  }
  function rect(ctx, x0, y0, x1, y1, color, width, dot) {
    ctx.strokeStyle = color; ctx.lineWidth = width; ctx.setLineDash([]); ctx.strokeRect(x0, y0, x1 - x0, y1 - y0);
    if (dot) { ctx.fillStyle = color; ctx.beginPath(); ctx.arc((x0 + x1) / 2, (y0 + y1) / 2, dot, 0, 2 * Math.PI); ctx.fill(); }
  }
  function value(name) { return sliders[name].values[state[name]]; }

  function drawRegion() {
    var H = D.H, W = D.W, C = D.C, px = D.pixel, i = state.cx, j = state.cy, m = state.w, n = state.h;
    var cx = value("cx"), cy = value("cy"), sx = value("w"), sy = value("h");
    var ctx = canvases.map.getContext("2d"), p, q, c;
    for (p = 0; p < H; p++) for (q = 0; q < W; q++) {
      c = 3 * (p * W + q);
      ctx.fillStyle = "rgb(" + D.map.a[c] + "," + D.map.a[c + 1] + "," + D.map.a[c + 2] + ")";
      ctx.fillRect(q * px, p * px, px, px);
    }
    var U = function (u) { return (u + 0.5) * px; };  // pixel q covers [q - 0.5, q + 0.5]
    rect(ctx, U(cx - sx), U(cy - sy), U(cx + sx), U(cy + sy), "#ff7f0e", 2, 3);
    var lines = [], pooled = at(D.pooled, i, j, m, n);
    if (D.grad) {
      var g = at(D.grad, i, j, m, n), norm = Math.hypot(g[0], g[1]);
      if (norm > 0) {  // 3 map pixels along -dL/dc
        var ex = U(cx - 3 * g[0] / norm), ey = U(cy - 3 * g[1] / norm), a = Math.atan2(ey - U(cy), ex - U(cx));
        ctx.strokeStyle = "yellow"; ctx.fillStyle = "yellow"; ctx.lineWidth = 3; ctx.beginPath();
        ctx.moveTo(U(cx), U(cy)); ctx.lineTo(ex, ey); ctx.stroke(); ctx.beginPath(); ctx.moveTo(ex, ey);
        ctx.lineTo(ex - 12 * Math.cos(a - 0.4), ey - 12 * Math.sin(a - 0.4));
        ctx.lineTo(ex - 12 * Math.cos(a + 0.4), ey - 12 * Math.sin(a + 0.4)); ctx.fill();
      }
    }
    var kx = at(D.tx, i, m), ky = at(D.ty, j, n), sum = 0, peak = 0, k;
    for (p = 0; p < H; p++) for (q = 0; q < W; q++) sum += ky[p] * kx[q];
    var div = D.normalize ? sum + 1e-37 : 1;
    for (p = 0; p < H; p++) for (q = 0; q < W; q++) peak = Math.max(peak, ky[p] * kx[q] / div);
    ctx = canvases.kernel.getContext("2d"); ctx.clearRect(0, 0, ctx.canvas.width, ctx.canvas.height);
    for (p = 0; p < H; p++) for (q = 0; q < W; q++) {
      ctx.fillStyle = lut(D.viridis, peak > 0 ? ky[p] * kx[q] / div / peak : 0); ctx.fillRect(q * px, p * px, px, px);
    }
    var bar = W * px + 12;  // the colour bar, 0 .. the largest weight
    for (k = 0; k < H * px; k++) { ctx.fillStyle = lut(D.viridis, 1 - k / (H * px - 1)); ctx.fillRect(bar, k, 12, 1); }
    text(ctx, fmt(peak, 3), bar + 15, 10, "left", 10); text(ctx, "0", bar + 15, H * px, "left", 10);
    var vs = []; for (c = 0; c < Math.min(C, 3); c++) vs.push(fmt(pooled[c], 3));
    lines.push("region c = (" + fmt(cx, 2) + ", " + fmt(cy, 2) + "), s = (" + fmt(sx, 2) + ", " + fmt(sy, 2) + ")");
    lines.push((D.normalize ? "normalised" : "raw") + " kernel (Eq. 5), largest weight " + fmt(peak, 4) +
               "; pooled v = (" + vs.join(", ") + (C > 3 ? ", ..." : "") + ")");
    if (D.grad) {
      var gg = at(D.grad, i, j, m, n), way = function (x) { return x < 0 ? "grows" : x > 0 ? "shrinks" : "stays"; };
      lines.push("target v* = (" + D.target.join(", ") + "): L = " + fmt(at(D.loss, i, j, m)[n], 4) +
                 "; -dL/dc = (" + sgn(-gg[0]) + ", " + sgn(-gg[1]) + ")");
      lines.push("dL/ds = (" + sgn(gg[2]) + ", " + sgn(gg[3]) + "): sx " + way(gg[2]) + ", sy " + way(gg[3]) +
                 " (descent); the arrow points along -dL/dc");
    }
    return lines.join("\n");
  }

  function drawAlpha() {
    var f = state.form, L = D.L, xs = D.curve.a, reach = D.reach, color = "#1f77b4";
    var ix = state.x, iy = state.y, iw = state.w, ih = state.h, g = state.gamma, gamma = value("gamma");
    var ox = value("x") * gamma, oy = value("y") * gamma, ow = value("w") * gamma, oh = value("h") * gamma;
    var cx = at(D.cx[f], ix)[g], cy = at(D.cy[f], iy)[g], sx = at(D.sx[f], iw)[g], sy = at(D.sy[f], ih)[g];
    var code = f === 0, ctx = canvases.centre.getContext("2d");
    var ax = axes(ctx, [-reach, reach], [-1, L + 1], false,
                  code ? "code: tanh, clamped to [0, L-1] (Eq. 13-14)" : "paper: tanh into (0, L) (Eq. 13-14)",
                  "centre offset (dx~, dy~)");
    [0, L - 1, L].forEach(function (v) { line(ctx, ax, [-reach, reach], [v, v], "#999", [2, 3]); });
    line(ctx, ax, xs, D.ccx[f].a, "#000"); line(ctx, ax, xs, D.ccy[f].a, "#666", [6, 4]);
    marker(ctx, ax.X(ox), ax.Y(cx), color, false); marker(ctx, ax.X(oy), ax.Y(cy), color, true);
    ctx = canvases.size.getContext("2d");
    ax = axes(ctx, [-reach, reach], [1e-3, 1e4], true, "size: exp (Eq. 12), log scale", "size offset (w~, h~)");
    line(ctx, ax, [-reach, reach], [1, 1], "#999", [2, 3]); line(ctx, ax, xs, D.csize[f].a, "#000");
    marker(ctx, ax.X(ow), ax.Y(sx), color, false); marker(ctx, ax.X(oh), ax.Y(sy), color, true);
    // the map, pixel q covers [q - 0.5, q + 0.5]
    ctx = canvases.map.getContext("2d");
    // the view: the map and 2 pixels around it, wider to show the region (up to a map's width more each side)
    var lo = Math.max(-L, Math.min(-3, cx - sx - 1, cy - sy - 1)), hi = Math.min(2 * L, Math.max(L + 2, cx + sx + 1, cy + sy + 1));
    var w = ctx.canvas.width, V = function (u) { return (u - lo) / (hi - lo) * w; }, p, q;
    ctx.clearRect(0, 0, w, w); ctx.fillStyle = "#fff"; ctx.fillRect(0, 0, w, w);
    var kx = at(D.tx[f], ix, iw, g), ky = at(D.ty[f], iy, ih, g), mx = at(D.txmax[f], ix, iw)[g], my = at(D.tymax[f], iy, ih)[g];
    var empty = !(mx > 0 && my > 0);
    for (p = 0; p < L; p++) for (q = 0; q < L; q++) {
      ctx.fillStyle = lut(D.greys, empty ? 0 : ky[p] * kx[q] / (255 * 255));
      ctx.fillRect(V(q - 0.5), V(p - 0.5), V(q + 0.5) - V(q - 0.5) + 0.5, V(p + 0.5) - V(p - 0.5) + 0.5);
    }
    ctx.strokeStyle = "#888"; ctx.lineWidth = 1; ctx.strokeRect(V(-0.5), V(-0.5), V(L - 0.5) - V(-0.5), V(L - 0.5) - V(-0.5));
    rect(ctx, V(cx - sx), V(cy - sy), V(cx + sx), V(cy + sy), color, 2, 0);
    ctx.strokeStyle = "#000"; ctx.lineWidth = 2; ctx.beginPath();
    ctx.moveTo(V(D.anchor[0]) - 7, V(D.anchor[1])); ctx.lineTo(V(D.anchor[0]) + 7, V(D.anchor[1]));
    ctx.moveTo(V(D.anchor[0]), V(D.anchor[1]) - 7); ctx.lineTo(V(D.anchor[0]), V(D.anchor[1]) + 7); ctx.stroke();
    return (code ? "code" : "paper") + " form, gamma = " + gamma + ", W_o z = (" + [value("x"), value("y"), value("w"), value("h")].join(", ") +
      "); offsets gamma W_o z = (" + [ox, oy, ow, oh].map(function (o) { return fmt(o, 2); }).join(", ") + ")\n" +
      "region: c = (" + fmt(cx, 2) + ", " + fmt(cy, 2) + "), s = (" + fmt(sx, 2) + ", " + fmt(sy, 2) + ")" +
      (empty ? "; no pixel inside c \u00b1 s: the kernel is zero" :
       "; the normalised kernel's largest weight " + fmt(mx * my, 4) + " (black), + the anchor");
  }

  var images = null;
  function drawPlayer() {
    var b = state.video, t = state.frame, px = D.pixel, ctx = canvases.frame.getContext("2d"), k;
    if (!images) images = D.frames.map(function (row) { return row.map(function (src) {
      var im = new Image(); im.onload = function () { render(); }; im.src = src; return im; }); });
    var im = images[b][t], T = D.frames[b].length;
    ctx.imageSmoothingEnabled = false; ctx.fillStyle = "#000"; ctx.fillRect(0, 0, ctx.canvas.width, ctx.canvas.height);
    if (im.complete && im.naturalWidth) ctx.drawImage(im, 0, 0, D.W * px, D.H * px);
    var U = function (u) { return (u + 0.5) * px; };  // imshow coordinates -> canvas
    if (D.boxes) { var bx = at(D.boxes, b, t), nd = D.boxes.shape[2];
      for (k = 0; k < nd; k++) rect(ctx, bx[4 * k] * px, bx[4 * k + 1] * px, bx[4 * k + 2] * px, bx[4 * k + 3] * px, D.boxcolors[b][k], 1, 0); }
    if (D.regions) { var r = at(D.regions, b, t), nn = D.regions.shape[2];
      for (k = 0; k < nn; k++) rect(ctx, U(r[4 * k] - r[4 * k + 2]), U(r[4 * k + 1] - r[4 * k + 3]),
                                    U(r[4 * k] + r[4 * k + 2]), U(r[4 * k + 1] + r[4 * k + 3]), D.nodes[k], 1.5, 2.5); }
    return D.titles[b] + "; frame " + t + " of " + (T - 1) +
      (D.regions ? "\nregions: one colour per node; boxes: green synchronous digits, red the others" : "");
  }

  var draw = {region: drawRegion, alpha: drawAlpha, player: drawPlayer}[spec.kind];
  function render() {
    try { caption.textContent = draw(); }
    catch (e) { caption.textContent = "this widget failed to draw: " + e; }
  }
  root.querySelectorAll("input[type=range]").forEach(function (input) {
    var name = input.getAttribute("data-name"), out = root.querySelector('output[data-name="' + name + '"]');
    state[name] = parseInt(input.value, 10);
    input.addEventListener("input", function () {
      state[name] = parseInt(input.value, 10); out.textContent = sliders[name].labels[state[name]]; render();
    });
  });
  render();
})();
"""
