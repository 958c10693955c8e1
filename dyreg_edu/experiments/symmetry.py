"""How the regions' early gradient is shared by the nodes (a measurement, not a switch; issue 16's point 3).

The paper starts every region at one anchor, the frame's centre (Section 4.2), so at first every node
pools the same features and gets nearly the same gradient: the signal that could send one node to one
digit and another elsewhere is what is left after the part all nodes share. For a model (a checkpoint, or
a configuration's starting model) and ``batches`` batches of training videos, :func:`region_gradients`
takes the gradient of the loss with respect to each node's region centre, and :func:`symmetry_report`
says:

- ``common_fraction``: the share of the gradient's energy in its mean over the nodes (1: every node is
  pushed alike; ``1 / N``: the nodes' pushes are unrelated);
- ``signal_to_noise``: the norm of the mean batch gradient over its spread from batch to batch, per node and
  averaged (about ``1 / sqrt(batches)`` for pure noise);
- ``towards_digit``: the mean cosine between each node's descent direction (per video and frame) and the
  direction to the digit nearest to it (0: no preference; 1: straight to it).

The authors' code also starts regions on a grid (``DyRegBlock(anchors="grid")``): measured both ways with

    python -m dyreg_edu.experiments.symmetry --rung where --anchors center grid [--checkpoint PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

import torch
import torch.nn.functional as F
from torch import Tensor

from ..inputs import model_kwargs
from ..metrics import box_centers


def region_gradients(model, data, batches: int, batch_size: int = 32) -> tuple[list[Tensor], list[Tensor]]:
    """Per batch: the gradient of the mean loss with respect to every region centre, ``[B, T, N, 2]`` in map
    pixels, and the direction from each centre to its nearest digit's centre, unit vectors ``[B, T, N, 2]``."""
    model.train()
    grads, towards = [], []
    for k in range(batches):
        batch = data.batch(range(k * batch_size, (k + 1) * batch_size))
        logits, aux = model(**model_kwargs(batch, "cpu"), return_aux=True)
        regions = aux["regions"]
        regions.retain_grad()
        model.zero_grad(set_to_none=True)
        F.cross_entropy(logits, batch["label"]).backward()
        grads.append(regions.grad[..., :2].detach())
        side = regions.new_tensor([model.graph.width, model.graph.height])
        digits = box_centers(batch["boxes"].float(), data.size) * side - 0.5      # [B, T, D, 2] map pixels
        gaps = digits[:, :, None] - regions[..., None, :2].detach()              # [B, T, N, D, 2]
        nearest = gaps.norm(dim=-1).argmin(-1)                                    # [B, T, N]
        to_digit = gaps.gather(3, nearest[..., None, None].expand(-1, -1, -1, 1, 2)).squeeze(3)
        towards.append(F.normalize(to_digit, dim=-1))
    return grads, towards


def symmetry_report(grads: list[Tensor], towards: list[Tensor]) -> dict:
    """``common_fraction``, ``signal_to_noise`` and ``towards_digit`` (module docstring) of the gradients."""
    per_batch = torch.stack([g.sum(dim=(0, 1)) for g in grads])                  # [K, N, 2]: each node's push
    mean_over_nodes = per_batch.mean(dim=1, keepdim=True)
    common = (mean_over_nodes.pow(2).sum((1, 2)) * per_batch.shape[1] / per_batch.pow(2).sum((1, 2)).clamp_min(1e-30))
    signal = per_batch.mean(0).norm(dim=-1)                                        # [N]
    noise = (per_batch - per_batch.mean(0)).pow(2).sum(-1).mean(0).sqrt().clamp_min(1e-30)
    cosines = [F.cosine_similarity(-g, t, dim=-1) for g, t in zip(grads, towards)]
    return {"common_fraction": common.mean().item(), "signal_to_noise": (signal / noise).mean().item(),
            "towards_digit": torch.cat([c.flatten() for c in cosines]).mean().item(),
            "batches": len(grads), "videos": sum(len(g) for g in grads)}


def open_the_branch(model, residual_scale: float, gamma: float) -> None:
    """Set the two gates that start at 0 to values a run reaches early on (every block gradient is 0 at 0)."""
    with torch.no_grad():
        model.graph.residual_norm.scale.fill_(residual_scale)
        model.graph.region_generator.gamma.fill_(gamma)


def main(argv=None) -> int:
    from ..ladder import rung_config
    from ..train import load_trained, starting_model

    p = argparse.ArgumentParser(prog="python -m dyreg_edu.experiments.symmetry", description=__doc__.split("\n\n")[0])
    p.add_argument("--rung", default="where", help="a rung of dyreg_edu.ladder (its DyReg's starting model)")
    p.add_argument("--anchors", nargs="+", default=["center", "grid"], help="the region start(s) to measure")
    p.add_argument("--checkpoint", help="a trained DyReg checkpoint instead of the starting model")
    p.add_argument("--residual-scale", type=float, default=0.01, help="the gate the starting model is opened to")
    p.add_argument("--gamma", type=float, default=0.01)
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--out", help="write the report as JSON")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    reports = {}
    for anchors in args.anchors:
        if args.checkpoint:
            model, _ = load_trained(args.checkpoint)
            cfg = None
        else:
            cfg = rung_config(args.rung, "dyreg", block={"anchors": anchors})
            model, _ = starting_model(cfg, progress=False)
            open_the_branch(model, args.residual_scale, args.gamma)
        from ..inputs import build_data

        data = build_data(cfg or dataclasses.replace(rung_config(args.rung, "dyreg"), device="cpu"), "train", "cpu")
        reports[anchors] = symmetry_report(*region_gradients(model, data, args.batches))
        print(json.dumps({"anchors": anchors, **{k: round(v, 4) if isinstance(v, float) else v
                                                 for k, v in reports[anchors].items()}}), flush=True)
    if args.out:
        from ..runs import provenance_fields, write_record

        command = "python -m dyreg_edu.experiments.symmetry " + " ".join(sys.argv[1:] if argv is None else argv)
        write_record(args.out, {"rung": args.rung, "checkpoint": args.checkpoint, "residual_scale": args.residual_scale,
                                "gamma": args.gamma, "reports": reports, **provenance_fields(command, 0.0, "cpu")})
    return 0


if __name__ == "__main__":
    sys.exit(main())
