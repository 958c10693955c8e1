r"""Kernel pooling and re-mapping: paper Eq. 5, 6, 7 and 10.

Coordinates are feature-map pixels: the pixel in row ``p``, column ``q`` sits at the
integer point ``(x=q, y=p)``, 0-based. A *region* is the 4-vector ``(cx, cy, sx, sy)``:
its centre and its half-extent (the :math:`w`, :math:`h` of Eq. 6).

Every function accepts any leading batch dimensions ``...`` (``B`` or ``B, T``); those of
the map and of the kernels broadcast (one map pooled by a batch of kernels, say).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor

#: The authors add this to a kernel's sum before dividing (``dyreg.py``). It is 0 in
#: fp16/bf16, so a kernel with no support would give NaN there.
AUTHORS_KERNEL_EPS = 1e-37


def _check_last_dim(name: str, tensor: Tensor, size: int, meaning: str) -> None:
    if tensor.dim() < 2 or tensor.shape[-1] != size:
        raise ValueError(
            f"{name} must have shape [..., N, {size}] ({meaning}), got {tuple(tensor.shape)}"
        )


def tent(center: Tensor | float, size: Tensor | float, length: int, *, check: bool = True) -> Tensor:
    r"""The one-dimensional tent of Eq. 6: :math:`k(p) = \max(0, s - |c - p|)`.

    Args:
        center: the centre :math:`c` in pixels, any shape ``[...]``.
        size: the half-extent :math:`s` in pixels, broadcastable with ``center``.
            Must be positive.
        length: the number of pixels on this axis; ``p = 0 .. length - 1``.
        check: raise on non-positive sizes. The block turns this off: its sizes are
            positive by construction, and the check would wait for the GPU every call.

    Returns:
        ``[..., length]``: the weight of every pixel.

    A size of 1 gives bilinear interpolation weights: the two pixels around ``c`` get
    ``1 - distance``.
    """
    if length < 1:
        raise ValueError(f"length must be a positive number of pixels, got {length}")
    center = torch.as_tensor(center)
    if not center.is_floating_point():
        center = center.to(torch.get_default_dtype())
    size = torch.as_tensor(size, dtype=center.dtype, device=center.device)
    if check and (size <= 0).any():
        raise ValueError(f"region sizes must be positive (half-extents in pixels), got min {size.min().item():g}")
    positions = torch.arange(length, dtype=center.dtype, device=center.device)
    center, size = torch.broadcast_tensors(center, size)
    return (size[..., None] - (center[..., None] - positions).abs()).clamp(min=0)


def region_kernels(
    regions: Tensor,
    height: int,
    width: int,
    normalize: bool = True,
    eps: float = AUTHORS_KERNEL_EPS,
    *,
    check: bool = True,
) -> Tensor:
    r"""Eq. 5: the kernel of each region, the outer product of its two tents.

    .. math:: K_i(p, q) = k_y(p)\, k_x(q), \quad k_y(p) = \max(0, s_y - |c_y - p|)

    Args:
        regions: ``[..., N, 4]`` as ``(cx, cy, sx, sy)`` in feature-map pixels.
        height, width: ``H`` and ``W`` of the feature map.
        normalize: ``True`` (the authors' code) divides each kernel by its sum, so that
            pooling is a weighted *average*; ``False`` keeps the raw weights of Eq. 7.
        eps: added to the sum before dividing (the authors' 1e-37).
        check: raise on non-positive sizes (see :func:`tent`).

    Returns:
        ``[..., N, H, W]``.
    """
    _check_last_dim("regions", regions, 4, "(cx, cy, sx, sy) per node")
    cx, cy, sx, sy = regions.unbind(-1)
    rows = tent(cy, sy, height, check=check)  # [..., N, H]
    cols = tent(cx, sx, width, check=check)  # [..., N, W]
    kernels = torch.einsum("...h,...w->...hw", rows, cols)
    if normalize:
        kernels = kernels / (kernels.sum(dim=(-2, -1), keepdim=True) + eps)
    return kernels


def _check_batch_dims(name: str, tensor: Tensor, batch_shape: torch.Size, kernels: Tensor) -> None:
    try:
        torch.broadcast_shapes(batch_shape, kernels.shape[:-3])
    except RuntimeError:
        raise ValueError(
            f"{name} {tuple(tensor.shape)} and kernels {tuple(kernels.shape)} "
            "must have broadcastable leading (batch) dimensions"
        ) from None


def check_kernels(kernels: Tensor) -> None:
    """A ``ValueError`` naming the shape unless ``kernels`` is ``[..., N, H, W]``."""
    if kernels.dim() < 3:
        raise ValueError(f"kernels must have shape [..., N, H, W], got {tuple(kernels.shape)}")


def pool_nodes(features: Tensor, kernels: Tensor) -> Tensor:
    r"""Eq. 7: node features as kernel-weighted sums of the map.

    .. math:: v_i = \sum_{p, q} K_i(p, q)\, X(:, p, q)

    Args:
        features: ``[..., C, H, W]``.
        kernels: ``[..., N, H, W]``.

    Returns:
        ``[..., N, C]``.
    """
    if features.dim() < 3:
        raise ValueError(f"features must have shape [..., C, H, W], got {tuple(features.shape)}")
    check_kernels(kernels)
    if features.shape[-2:] != kernels.shape[-2:]:
        raise ValueError(
            f"features {tuple(features.shape)} and kernels {tuple(kernels.shape)} "
            "must share the map size H x W in their last two dimensions"
        )
    _check_batch_dims("features", features, features.shape[:-3], kernels)
    return torch.einsum("...chw,...nhw->...nc", features, kernels)


def remap_nodes(nodes: Tensor, kernels: Tensor) -> Tensor:
    r"""Eq. 10: send each node back to the pixels its kernel covers.

    .. math:: Y(:, p, q) = \sum_i K_i(p, q)\, \hat v_i

    Args:
        nodes: ``[..., N, C]``.
        kernels: ``[..., N, H, W]`` (the same kernels that pooled them).

    Returns:
        ``[..., C, H, W]``.
    """
    check_kernels(kernels)
    if nodes.dim() < 2 or nodes.shape[-2] != kernels.shape[-3]:
        raise ValueError(f"nodes {tuple(nodes.shape)} must be [..., N, C] with the N of kernels {tuple(kernels.shape)}")
    _check_batch_dims("nodes", nodes, nodes.shape[:-2], kernels)
    return torch.einsum("...nc,...nhw->...chw", nodes, kernels)


def area_weights(length: int, cells: int) -> Tensor:
    r"""Area-pooling weights from ``length`` pixels down to ``cells`` cells, one axis.

    Cell ``j`` covers the interval :math:`[j L / n, (j+1) L / n)`; pixel ``p`` covers
    :math:`[p, p+1)`; the weight is the overlap divided by the cell length, so each row
    sums to one. This is TensorFlow's ``resize_area`` with ``align_corners=False``,
    which the authors used for the *Fixed* grid baseline.

    Returns:
        ``[cells, length]``.
    """
    if cells < 1 or length < 1:
        raise ValueError(f"need at least one cell and one pixel, got cells={cells}, length={length}")
    step = length / cells
    starts = torch.arange(cells, dtype=torch.float64)[:, None] * step
    pixels = torch.arange(length, dtype=torch.float64)[None, :]
    overlap = (torch.minimum(starts + step, pixels + 1) - torch.maximum(starts, pixels)).clamp(min=0)
    return (overlap / step).to(torch.get_default_dtype())


def grid_kernels(height: int, width: int, grid: tuple[int, int] = (3, 3)) -> Tensor:
    """Kernels of the *Fixed* baseline: one area-pooling cell of a ``grid`` per node.

    Returns:
        ``[N, H, W]`` with ``N = grid[0] * grid[1]``, nodes in row-major order; each sums to one.
    """
    rows = area_weights(height, grid[0])  # [gh, H]
    cols = area_weights(width, grid[1])  # [gw, W]
    kernels = torch.einsum("ih,jw->ijhw", rows, cols)
    return rearrange(kernels, "i j h w -> (i j) h w")
