"""Our DyReg block's gradients beside the authors' module's: the fixed loss, the gradients under the
authors' names, and the random sketch that stands in for the authors' gradients where their code is not.

``tools/gradient_parity.py`` runs the authors' module (their code, kept outside this repository) and
ours on the same parameters in float64 and compares every parameter's gradient and the input's; it
also stores a sketch of the authors' gradients for the bundled golden file
(``dyreg_edu/fixtures/synthetic_block_small_grads.pt``) so that ``tests/test_gradients_official.py``
checks our backward against theirs without their code.

The loss is ``(output * w).sum()`` with ``w`` standard normal from :data:`LOSS_SEED`. A sketch of a
gradient ``g`` is ``flatten(g) @ G``, ``G`` a standard normal ``[numel, SKETCH_COLUMNS]`` matrix drawn
from a generator seeded by :data:`SKETCH_SEED` and the tensor's name: two gradients whose sketches
agree to 1e-10 relative differ by about that much (a random projection keeps norms, up to a factor
near one with 16 columns).
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .dyreg import DyRegBlock
from .official_block import official_names

#: Seed of the loss weights ``w`` in ``(output * w).sum()``.
LOSS_SEED = 0
#: Seed of the sketch matrices (combined with each tensor's name).
SKETCH_SEED = 1
SKETCH_COLUMNS = 16
#: The key of the input's gradient beside the parameters' (no parameter of either module has it).
INPUT = "input"
#: A gradient smaller than this fraction of the largest is compared relative to that fraction of the
#: largest instead of to itself (:func:`relative_differences`).
FLOOR = 1e-6


def loss_weights(shape, seed: int = LOSS_SEED) -> Tensor:
    """The fixed weights ``w`` of the scalar loss ``(output * w).sum()``, float64, standard normal."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float64)


def our_gradients(state_dict: Mapping[str, Tensor], config: Mapping[str, Any], x: Tensor,
                  seed: int = LOSS_SEED, block: DyRegBlock | None = None) -> tuple[float, Tensor, dict[str, Tensor]]:
    """``(loss, output, gradients)`` of our block built from the authors' ``state_dict`` and ``config``
    (or the given ``block``), in float64 and eval mode, for the loss of :func:`loss_weights` on ``x``
    ``[B, T, C_in, H, W]``. ``gradients`` holds every parameter's gradient under the authors' name and
    shape (:func:`~dyreg_edu.official_block.official_names`) and the input's under :data:`INPUT`."""
    if block is None:
        block = DyRegBlock.from_official(state_dict, config)
    block = block.double().eval()
    x = x.detach().to(torch.float64).requires_grad_(True)
    output, _ = block(x)
    loss = (output * loss_weights(output.shape, seed)).sum()
    params = dict(block.named_parameters())
    grads = torch.autograd.grad(loss, [x, *params.values()], allow_unused=True)
    missing = [name for name, g in zip(params, grads[1:]) if g is None]
    if missing:
        raise RuntimeError(f"parameters without a gradient: {missing}")
    named = official_names(dict(zip(params, grads[1:])))
    return loss.item(), output.detach(), {**named, INPUT: grads[0].detach()}


def sketch_matrix(name: str, numel: int, seed: int = SKETCH_SEED, columns: int = SKETCH_COLUMNS) -> Tensor:
    """The fixed ``[numel, columns]`` standard normal matrix of the tensor called ``name``."""
    generator = torch.Generator().manual_seed(seed * 2**32 + zlib.crc32(name.encode()))
    return torch.randn(numel, columns, generator=generator, dtype=torch.float64)


def sketch(gradients: Mapping[str, Tensor], seed: int = SKETCH_SEED, columns: int = SKETCH_COLUMNS) -> dict[str, Tensor]:
    """``{name: flatten(g) @ G_name}``, each ``[columns]`` float64."""
    return {name: g.detach().to(torch.float64).reshape(-1) @ sketch_matrix(name, g.numel(), seed, columns)
            for name, g in gradients.items()}


def relative_differences(ours: Mapping[str, Tensor], theirs: Mapping[str, Tensor],
                         floor: float = FLOOR) -> dict[str, float]:
    """``{name: ||ours - theirs|| / max(||theirs||, floor * largest ||theirs||)}`` over the same names
    (a mismatch of names raises). The floor keeps a gradient that is zero in exact arithmetic (the key
    bias's: adding it shifts every score of a query equally, which the softmax ignores) from dividing
    rounding noise by rounding noise."""
    if set(ours) != set(theirs):
        raise KeyError(f"names differ: only ours {sorted(set(ours) - set(theirs))}, "
                       f"only theirs {sorted(set(theirs) - set(ours))}")
    largest = max(t.norm().item() for t in theirs.values())
    return {name: ((ours[name] - theirs[name]).norm() / max(theirs[name].norm().item(), floor * largest)).item()
            for name in theirs}
