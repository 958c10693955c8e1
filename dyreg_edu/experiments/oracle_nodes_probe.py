"""The graph alone on the oracle's real nodes (an experiment of chapter 11).

Between the graph alone (``dyreg_edu.experiments.relation``: clean one-hot classes and steps) and the oracle
model (its nodes from the backbone, its answer through remap, residual, layer3 and head) this asks
the graph alone's question of the oracle's own nodes: the mini scale's trained, frozen digit
backbone (14-pixel digits, steps up to 5 pixels) -> the oracle block's pooling of the digits'
boxes + its positional embedding + its ``node_motion`` embedding (both reading kernels times
``position_scale``) -> the graph -> a linear head on the nodes averaged over digits and frames,
trained (AdamW 2e-3, batch 64) on the 56-class label; 1,000 validation videos every 250 steps.
It prints one JSON line per evaluation (``seconds``: since the start)::

    python -m dyreg_edu.experiments.oracle_nodes_probe NAME POSITION_SCALE STEPS   # e.g. motion_s30 30 3000

Words in ``NAME`` (joined by ``_``) change what a node holds:

- ``nomotion``: no motion input at all (the paper's nodes);
- ``centroid``: the motion as the graph alone has it, the step of each kernel's centre of mass since
  the previous frame (``MotionBlock(motion_from="centre")``: 2 numbers, in map widths, times
  ``POSITION_SCALE``) instead of ``node_motion``'s Linear of the whole kernel change;
- ``motiononly``: ``POSITION_SCALE`` multiplies the motion input only; the positional embedding
  reads the kernels as the authors' block does (scale 1);
- ``nopos``: no positional embedding; ``nofeat``: no pooled features;
- ``onehot``: add to each node a Linear of its digit's one-hot class from the generator, the graph
  alone's clean class.

With ``--out FILE`` it also writes the curve and its provenance (command, commit, device, date,
wall time) as JSON.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import mini, train
from ..inputs import build_data, model_inputs
from ..kernels import pool_nodes
from ..runs import git_commit, provenance_fields

WORDS = ("nomotion", "centroid", "motiononly", "nopos", "nofeat", "onehot")


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name")
    parser.add_argument("scale", type=float)
    parser.add_argument("steps", type=int)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    unknown = [w for w in args.name.split("_") if w.isalpha() and w not in WORDS and w != "motion"]
    if unknown:
        parser.error(f"unknown words {unknown} in NAME; expected some of {WORDS} (and 'motion')")
    return args


def main(argv):
    args = parse(argv)
    words = set(args.name.split("_"))
    motion = "nomotion" not in words
    torch.manual_seed(0)
    cfg = train.config("oracle", "mini", "fast", digit_size=14, max_step=5.0,
                       experiments={"motion": {"node_motion": motion, "position_scale": args.scale,
                                               "motion_from": "centre" if "centroid" in words else "kernel"}})
    model = train.build_model(cfg)
    mini.load_digit_backbone(cfg, model, progress=False)
    mini.freeze_backbone(model)
    blk, head = model.graph, nn.Linear(32, 56)
    extra = nn.ModuleDict()
    if "onehot" in words:
        extra["classes"] = nn.Linear(10, 32)
    params = [p for n, p in blk.named_parameters() if not n.startswith("residual")]
    params += list(head.parameters()) + list(extra.parameters())
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=1e-4)
    tr, va = build_data(cfg, "train"), build_data(cfg, "val")

    def logits(batch):
        video, boxes = model_inputs(batch, "cpu")
        with torch.no_grad():
            x = model.features(video)
        feats = blk.project(x)
        kernels, _ = blk.kernels(feats, model.box_regions(boxes))
        nodes = torch.zeros(*kernels.shape[:3], 32)
        if "nofeat" not in words:
            nodes = nodes + pool_nodes(feats, kernels)
        if "motiononly" in words:  # the authors' positional embedding: kernels at scale 1
            nodes = nodes + blk.position_embedding(blk._training_map(kernels))
        elif "nopos" not in words:
            nodes = nodes + blk.position(kernels)
        if motion:
            nodes = nodes + blk.motion(kernels)
        if "onehot" in words:  # node d is digit d's (the oracle's regions are the boxes in order)
            nodes = nodes + extra["classes"](F.one_hot(batch["digits"], 10).float())[:, None]
        out, _ = blk.graph(nodes)
        return head(out.mean((1, 2)))

    val = va.batch(list(range(1000)))
    tic, curve, commit = time.time(), [], git_commit()  # the code that runs, whatever lands meanwhile
    for step in range(args.steps):
        b = tr.batch(list(range(step * 64, step * 64 + 64)))
        loss = F.cross_entropy(logits(b), b["label"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % 250 == 0:
            with torch.no_grad():
                acc = 100 * (logits(val).argmax(-1) == val["label"]).float().mean().item()
            point = {"step": step + 1, "loss": round(loss.item(), 4), "val_accuracy": round(acc, 2),
                     "seconds": round(time.time() - tic)}
            curve.append(point)
            print(json.dumps(point), flush=True)
            if args.out:
                write(args, words, curve, time.time() - tic, commit)


def write(args, words, curve, seconds, commit):
    config = {"position_scale": args.scale, "words": sorted(words & set(WORDS)), "steps": args.steps,
              "batch_size": 64, "lr": 2e-3, "weight_decay": 1e-4, "val_videos": 1000, "eval_every": 250,
              "digit_size": 14, "max_step": 5.0, "seed": 0}
    command = "python -m dyreg_edu.experiments.oracle_nodes_probe " + shlex.join(sys.argv[1:])
    result = {"config": config, "val_accuracy": curve[-1]["val_accuracy"], "train_videos": curve[-1]["step"] * 64,
              "curve": curve, **provenance_fields(command, seconds, "cpu"), "commit": commit}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
