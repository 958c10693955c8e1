"""The digits' ground-truth boxes in training (**not in the paper**, whose regions learn from the label
alone): regions taught by the boxes (:class:`BoxLoss`), and the oracle's boxes shifted at random
(:class:`OracleJitter`). Chapter 11 uses them to separate two questions the label alone answers
together: can the region generator track the digits at all, and once regions track, does DyReg then
beat Fixed; and how precisely must regions track.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from torch import Tensor

from ..variants import GENERATED_VARIANTS, ORACLE_VARIANTS
from .base import Experiment, require


def match_regions(regions: Tensor, targets: Tensor) -> Tensor:
    """Each digit's node for the whole video: of all assignments of ``D`` digits to distinct
    nodes, the one with the least summed centre distance over the frames. Returns the matched
    nodes' regions in the digits' order.

    Shapes: ``regions [B, T, N, 4]``, ``targets [B, T, D, 4]`` (map pixels, ``N >= D``) -> ``[B, T, D, 4]``.
    """
    num_nodes, num_digits = regions.shape[2], targets.shape[2]
    assignments = torch.tensor(list(itertools.permutations(range(num_nodes), num_digits)), device=regions.device)
    with torch.no_grad():
        gaps = rearrange(regions[..., :2], "b t n c -> b t n 1 c") - rearrange(targets[..., :2], "b t d c -> b t 1 d c")
        cost = reduce(gaps.norm(dim=-1), "b t n d -> b n d", "sum")
        totals = reduce(cost[:, assignments, torch.arange(num_digits)], "b a d -> b a", "sum")  # [B, assignments]
        nodes = assignments[totals.argmin(dim=1)]                                              # [B, D]: digit d's node
    return regions.gather(2, repeat(nodes, "b d -> b t d c", t=regions.shape[1], c=regions.shape[3]))


def region_box_loss(regions: Tensor, targets: Tensor) -> Tensor:
    """The smooth L1 of the ``(cx, cy, sx, sy)`` of each digit's node (:func:`match_regions`) against
    the digit's region. Nodes left without a digit (``N > D``) are free.

    Shapes: ``regions [B, T, N, 4]``, ``targets [B, T, D, 4]`` (map pixels, ``N >= D``) -> a scalar.
    """
    return F.smooth_l1_loss(match_regions(regions, targets), targets)


@dataclass(frozen=True)
class BoxLoss(Experiment):
    """``box_loss``: adds ``weight`` times :func:`region_box_loss`, the regions against the digits'
    boxes, to the label's loss; for the first ``steps`` steps only (then the label alone), or at every
    step (``steps=0``): how few of the boxes the generator needs."""

    name = "box_loss"
    weight: float = 1.0
    steps: int = 0

    def check(self, cfg) -> None:
        require("box_loss weight", isinstance(self.weight, (int, float)) and self.weight > 0, "a positive number",
                self.weight)
        require("box_loss steps", isinstance(self.steps, int) and self.steps >= 0,
                "0 (every step) or a positive int of steps", self.steps)
        require("box_loss's variant", cfg.variant in GENERATED_VARIANTS and cfg.num_nodes >= cfg.num_digits,
                f"one that makes its regions {GENERATED_VARIANTS} with num_nodes >= num_digits "
                f"({cfg.num_nodes} nodes, {cfg.num_digits} digits)", cfg.variant)

    def loss(self, step: int, model, aux: dict, boxes: Tensor) -> Tensor | None:
        if self.steps and step >= self.steps:
            return None
        return self.weight * region_box_loss(aux["regions"].float(), model.box_regions(boxes))


@dataclass(frozen=True)
class OracleJitter(Experiment):
    """``oracle_jitter``: every box of the oracle (Appendix E.6) shifted by a random amount, normal with
    this ``spread`` in video pixels, per axis, frame and digit, in training and evaluation alike, so that
    its regions track the digits only this precisely."""

    name = "oracle_jitter"
    spread: float = 1.0

    def check(self, cfg) -> None:
        require("oracle_jitter spread", isinstance(self.spread, (int, float)) and self.spread > 0,
                "a positive spread in video pixels", self.spread)
        require("oracle_jitter's variant", cfg.variant in ORACLE_VARIANTS, f"one of {ORACLE_VARIANTS}", cfg.variant)

    def boxes(self, boxes: Tensor, training: bool) -> Tensor:
        boxes = boxes.float()
        shift = self.spread * torch.randn(*boxes.shape[:-1], 2, device=boxes.device)  # [B, T, D, (x, y)]
        return boxes + repeat(shift, "b t d c -> b t d (corner c)", corner=2)
