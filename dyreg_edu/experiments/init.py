r"""Other initial values for the two scales that start the graph shut (**not in the paper**): ``init``.

The paper's block is the identity when it is created: the residual LayerNorm's scale :math:`s` is 0,
and so is the region generator's :math:`\gamma` (Eq. 11), so every region starts at its anchor. Every
gradient inside the block is then exactly 0 at the first step, proportional to :math:`s` at the next,
and to :math:`s\gamma` after that (chapter 6). ``residual_scale`` lets the branch act from the first
step; ``gamma`` starts the regions a little off their anchors, so that :math:`W_o` learns from the
first step (chapter 11 tries both).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Experiment, require


def _number(value) -> bool:
    return value is None or (not isinstance(value, bool) and isinstance(value, (int, float)))


@dataclass(frozen=True)
class Init(Experiment):
    """``init``: the residual LayerNorm's scale (``residual_scale``) and the region generator's
    :math:`\\gamma` (``gamma``) start at these values instead of 0 (``None``: the paper's 0)."""

    name = "init"
    residual_scale: float | None = None
    gamma: float | None = None

    def check(self, cfg) -> None:
        require("init residual_scale", _number(self.residual_scale), "None or a number", self.residual_scale)
        require("init gamma", _number(self.gamma), "None or a number", self.gamma)
        require("init's variant", cfg.variant != "resnet18", "one with a graph block", cfg.variant)

    def setup(self, model, cfg) -> None:
        block = model.graph
        require("init gamma", self.gamma is None or block.properties.kernels == "regions",
                f"None for variant {block.variant!r} (gamma belongs to generated regions)", self.gamma)
        with torch.no_grad():
            if self.residual_scale is not None:
                block.residual_norm.scale.fill_(self.residual_scale)
            if self.gamma is not None:
                block.region_generator.gamma.fill_(self.gamma)
