r"""Each node's motion as an input of its own (**not in the paper**): ``motion``.

In the paper a node is its pooled features plus a Linear of its kernel (Eq. 7 and Sec. 3.2): where
its region moves shows only as the change of a whole kernel from one frame to the next, some 280
times weaker than the features at the mini scale (chapter 11). :class:`MotionBlock` is a
:class:`~dyreg_edu.dyreg.DyRegBlock` with three more keywords:

- ``node_motion``: also add to each node a Linear of its kernel's change since the previous frame;
- ``motion_from``: what that change is: ``"kernel"``, the whole kernel's (``H * W`` numbers), or
  ``"centre"``, the step of the kernel's centre of mass (:func:`kernel_centres`, in map widths and
  heights; 2 numbers, the motion as the graph alone of chapter 11 gets it);
- ``position_scale``: multiplies the kernels that the positional (and motion) embedding reads. A
  kernel sums to one over the map, so its entries, and a moving region's change, are small next to
  the pooled features. Scaling them keeps the same functions (the Linear could absorb the factor)
  and changes only the conditioning: with Adam, a ``position_scale`` times larger initial weight and
  learning rate for that Linear.

With the switches ``node_motion=True, motion_from="centre", position_scale=25`` (``experiments={"motion":
{...}}``) the oracle learns the relation at the mini scale (chapter 11).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..dyreg import DyRegBlock
from ..kernels import check_kernels
from .base import Experiment, require

#: What ``node_motion`` can read.
MOTION_FROM = ("kernel", "centre")


def kernel_centres(kernels: Tensor) -> Tensor:
    r"""Each kernel's centre of mass in map pixels.

    .. math:: (\bar x_i, \bar y_i) = \sum_{p, q} K_i(p, q)\, (q, p) \Big/ \sum_{p, q} K_i(p, q)

    Shapes: ``kernels [..., N, H, W]`` (non-negative; a kernel of all zeros has its centre at ``(0, 0)``)
    -> ``[..., N, 2]`` as ``(x, y)``, in the module's pixel coordinates.
    """
    check_kernels(kernels)
    height, width = kernels.shape[-2:]
    ys = torch.arange(height, dtype=kernels.dtype, device=kernels.device)
    xs = torch.arange(width, dtype=kernels.dtype, device=kernels.device)
    mass = kernels.sum((-2, -1)).clamp_min(torch.finfo(kernels.dtype).tiny)
    x = torch.einsum("...hw,w->...", kernels, xs) / mass
    y = torch.einsum("...hw,h->...", kernels, ys) / mass
    return torch.stack([x, y], dim=-1)


class MotionBlock(DyRegBlock):
    """A :class:`~dyreg_edu.dyreg.DyRegBlock` whose nodes may also carry their motion (module docstring).
    ``node_motion=False, position_scale=1.0`` computes exactly what ``DyRegBlock`` does."""

    def __init__(self, *args, node_motion: bool = False, motion_from: str = "kernel", position_scale: float = 1.0,
                 **kwargs):
        require("node_motion", isinstance(node_motion, bool), "True or False", node_motion)
        require("motion_from", motion_from in MOTION_FROM, f"one of {MOTION_FROM}", motion_from)
        require("position_scale", not isinstance(position_scale, bool) and isinstance(position_scale, (int, float))
                and position_scale > 0, "a positive number", position_scale)
        self.node_motion, self.motion_from, self.position_scale = node_motion, motion_from, float(position_scale)
        super().__init__(*args, **kwargs)  # calls _add_node_inputs

    def _add_node_inputs(self) -> None:
        """The motion embedding, drawn where the block has always drawn it: after the positional embedding,
        before the graph (so a run of chapter 11 starts from the weights its recorded command gave it)."""
        if self.node_motion:
            motion_dim = 2 if self.motion_from == "centre" else self.train_height * self.train_width
            self.motion_embedding = nn.Linear(motion_dim, self.node_dim)

    def position(self, kernels: Tensor) -> Tensor:
        """The positional embedding of the kernels times ``position_scale``: ``[B, T, N, H, W] -> [B, T, N, C]``."""
        return super().position(self.position_scale * kernels)

    def nodes(self, features: Tensor, kernels: Tensor) -> Tensor:
        """Eq. 7 and the position, plus each node's motion when ``node_motion``: ``[B, T, N, C]``."""
        nodes = super().nodes(features, kernels)
        return nodes + self.motion(kernels) if self.node_motion else nodes

    def motion(self, kernels: Tensor) -> Tensor:
        """A Linear of each kernel's change since the previous frame (the whole kernel's, or its
        centre's), zero at the first: ``[B, T, N, H, W] -> [B, T, N, C]``."""
        if self.motion_from == "centre":
            size = torch.tensor([kernels.shape[-1], kernels.shape[-2]], dtype=kernels.dtype, device=kernels.device)
            moving = kernel_centres(kernels) / size                     # [B, T, N, 2] in map widths, heights
        else:
            moving = self._training_map(kernels)                        # [B, T, N, H_train * W_train]
        previous = torch.cat([moving[:, :1], moving[:, :-1]], dim=1)    # frame t-1 (frame 0 for itself)
        return self.motion_embedding(self.position_scale * (moving - previous))


@dataclass(frozen=True)
class Motion(Experiment):
    """``motion``: the graph block is a :class:`MotionBlock` with these keywords."""

    name = "motion"
    node_motion: bool = True
    motion_from: str = "kernel"
    position_scale: float = 1.0

    def check(self, cfg) -> None:
        require("motion's variant", cfg.variant != "resnet18", "one with a graph block", cfg.variant)

    def model_options(self) -> dict:
        return {"block_class": MotionBlock, **self.settings()}
