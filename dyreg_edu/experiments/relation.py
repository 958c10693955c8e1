r"""Can the graph learn the relation? The spatio-temporal graph alone, on the generator's truth.

At the mini scale even the oracle (Appendix E.6: the digits' own boxes as regions) ends level
with a plain ResNet, and a linear probe finds no synchrony in its graph's output (Chapter 11).
This experiment takes everything else away. Each node is one digit; its input in frame ``t``
is its class (one-hot) and, as ``inputs`` says,

- ``"centres"``: its box centre (normalised to [0, 1]), so motion is present only as change
  from frame to frame, which is what the oracle's nodes carry (their region moves with the
  digit, their pooled appearance does not change), or
- ``"steps"``: its step since the previous frame (zero in the first), so the motion is in
  every frame's node itself.

One :class:`~dyreg_edu.graph.SpatioTemporalGraph` (the paper's K = 3 iterations, GRUs over
time, messages within a frame) and a linear read-out of each node in the last frame learn
each digit's sync flag (does it belong to the synchronous subset?), with AdamW. Nothing else
learns, so the runs take a minute or two on a CPU::

    python -m dyreg_edu.experiments.relation --inputs centres --out results/research/graph_alone/centres_sum.json

``target="label"`` asks for the video's label instead, as the models must: a linear head
on the nodes averaged over digits and frames (as the model's head averages its map) learns
the 56 classes through cross-entropy, so the relation is learned only through the label.

``scale`` multiplies the two motion inputs. A step is about 0.02 of the canvas a frame, so at
``scale=1`` the motion enters the embedded node some thirty times weaker than the one-hot class;
``scale=25`` makes the two of one size (the same functions, another conditioning) and, in the
runs of Chapter 11, shortens the label's plateau from a million videos to a few tens of thousands.

A result file holds the validation curve, the base rate (always answering the majority flag;
for the label, the motion-blind ceiling of :func:`~dyreg_edu.metrics.motion_blind_ceiling`)
and its provenance (command, commit, device, date, wall time).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import reduce, repeat
from torch import Tensor, nn

from data_gen.multisync import NUM_CLASSES

from ..graph import MESSAGE_FORMS, SpatioTemporalGraph
from ..inputs import build_data
from ..metrics import box_centers, motion_blind_ceiling
from ..runs import provenance_fields
from ..train import config

INPUTS = ("centres", "steps")
TARGETS = ("sync", "label")


@dataclass(frozen=True)
class RelationConfig:
    """One run of the experiment; the data are the mini scale's (``num_digits`` digits, its size and frames)."""

    inputs: str = "centres"
    messages: str = "sum"
    target: str = "sync"
    channels: int = 32
    steps: int = 3_000
    batch_size: int = 64
    lr: float = 2e-3
    scale: float = 1.0  # the motion input's multiplier
    num_digits: int = 3
    val_videos: int = 1_000
    eval_every: int = 250
    seed: int = 0
    until: float = 0.0  # stop once the validation accuracy reaches this (%); 0: train every step

    def __post_init__(self):
        if self.inputs not in INPUTS:
            raise ValueError(f"inputs must be one of {INPUTS}, got {self.inputs!r}")
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {self.target!r}")
        if self.messages not in MESSAGE_FORMS:
            raise ValueError(f"messages must be one of {MESSAGE_FORMS}, got {self.messages!r}")
        if isinstance(self.until, bool) or not isinstance(self.until, (int, float)) or not 0.0 <= self.until <= 100.0:
            raise ValueError(f"until must be an accuracy in [0, 100] (0: train every step), got {self.until!r}")
        for name in ("channels", "steps", "batch_size", "val_videos", "eval_every"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")


def node_inputs(batch: dict, inputs: str, video_size: int, scale: float = 1.0) -> Tensor:
    """Each digit's node input in every frame: ``[B, T, D, 12]`` = (motion x, motion y, one-hot class).

    ``inputs="centres"``: the box centres ``[B, T, D, 2]``; ``"steps"``: their change since the
    previous frame (zero in the first). ``scale`` multiplies the two motion channels.
    """
    if inputs not in INPUTS:
        raise ValueError(f"inputs must be one of {INPUTS}, got {inputs!r}")
    centres = box_centers(batch["boxes"].float(), video_size)
    if inputs == "steps":
        centres = torch.cat([torch.zeros_like(centres[:, :1]), centres.diff(dim=1)], dim=1)
    classes = repeat(F.one_hot(batch["digits"], 10).float(), "b d k -> b t d k", t=centres.shape[1])
    return torch.cat([scale * centres, classes], dim=-1)


class RelationProbe(nn.Module):
    """Node inputs ``[B, T, D, 12]`` -> a linear embedding, the graph, and a linear read-out.

    ``target="sync"``: one logit per digit ``[B, D]``, from each node in the last frame;
    ``target="label"``: the 56 class logits ``[B, 56]``, from the nodes averaged over digits and
    frames."""

    def __init__(self, channels: int = 32, messages: str = "sum", target: str = "sync"):
        super().__init__()
        if target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
        self.target = target
        self.embed = nn.Linear(12, channels)
        self.graph = SpatioTemporalGraph(channels, iterations=3, messages=messages)
        self.read_out = nn.Linear(channels, 1 if target == "sync" else NUM_CLASSES)

    def forward(self, inputs: Tensor) -> Tensor:
        nodes, _ = self.graph(self.embed(inputs))
        if self.target == "label":
            return self.read_out(reduce(nodes, "b t d c -> b c", "mean"))
        return self.read_out(nodes[:, -1])[..., 0]


def sync_loss_and_accuracy(logits: Tensor, sync: Tensor) -> tuple[Tensor, float]:
    """Binary cross-entropy of the per-digit logits ``[B, D]`` and the share of flags right (%)."""
    target = sync.float()
    loss = F.binary_cross_entropy_with_logits(logits, target)
    return loss, 100.0 * ((logits > 0).float() == target).float().mean().item()


def label_loss_and_accuracy(logits: Tensor, label: Tensor) -> tuple[Tensor, float]:
    """Cross-entropy of the class logits ``[B, 56]`` and the share of videos right (%)."""
    return F.cross_entropy(logits, label), 100.0 * (logits.argmax(-1) == label).float().mean().item()


def loss_and_accuracy(logits: Tensor, batch: dict, target: str) -> tuple[Tensor, float]:
    """The loss and accuracy of ``target`` (``"sync"``: the digits' flags; ``"label"``: the video's class)."""
    if target == "label":
        return label_loss_and_accuracy(logits, batch["label"])
    return sync_loss_and_accuracy(logits, batch["sync"])


def truth(data, count: int, chunk: int = 10_000) -> dict:
    """The generator's ``digits [V, D]``, ``sync [V, D]`` and ``label [V]`` of the first ``count`` videos
    (made in chunks, so that memory stays small)."""
    parts = [data.batch(list(range(start, min(count, start + chunk)))) for start in range(0, count, chunk)]
    return {key: torch.cat([part[key] for part in parts]) for key in ("digits", "sync", "label")}


def base_rate(data_cfg, val_batch: dict, target: str, videos: int = 600_000) -> float:
    """The best accuracy (%) without the relation: the majority flag (``"sync"``), or the
    motion-blind ceiling estimated from ``videos`` training videos of ``data_cfg`` (``"label"``;
    two frames each, since the labels and digits do not depend on the frames). Fewer videos
    estimate it low: five digits make about 2,000 multisets of classes, each needs many videos
    (with 1,000 validation videos: 32.7% from 60,000 training videos, 34.2% from 200,000, 37.1% from 600,000)."""
    if target == "sync":
        share = val_batch["sync"].float().mean().item()
        return round(100.0 * max(share, 1.0 - share), 2)
    light = dataclasses.replace(data_cfg, num_frames=2, train_videos=videos)
    train = truth(build_data(light, "train"), videos)
    return round(motion_blind_ceiling(train["digits"], train["label"], val_batch["digits"], val_batch["label"]), 2)


def ideal_nodes(digits: Tensor, sync: Tensor) -> Tensor:
    """The node features that answer the label, averaged over the digits as the head averages:
    ``[V, 20]`` = (one-hot class, one-hot class if the digit is synchronous, else 0)."""
    classes = F.one_hot(digits, 10).float()
    return reduce(torch.cat([classes, classes * sync[..., None].float()], dim=-1), "v d k -> v k", "mean")


def read_out_check(train_videos: int = 30_000, val_videos: int = 2_000, num_digits: int = 3,
                   steps: int = 1_500, seed: int = 0) -> dict:
    """Can the label head (linear, on nodes averaged over digits) read the label from ideal nodes?

    Fits that head (full-batch Adam) on :func:`ideal_nodes` of ``train_videos`` mini videos, once
    with the classes alone and once with the sync-gated classes too, and returns the validation
    accuracy (%) of each: ``{"classes": ..., "classes_and_sync": ...}``. The first is the
    motion-blind ceiling; the second says what a graph that computed the relation would give.
    """
    cfg = dataclasses.replace(config("dyreg", "mini", num_digits=num_digits), val_videos=val_videos, device="cpu")
    train, val = truth(build_data(cfg, "train"), train_videos), truth(build_data(cfg, "val"), val_videos)
    x_train, x_val = ideal_nodes(train["digits"], train["sync"]), ideal_nodes(val["digits"], val["sync"])
    accuracy = {}
    for name, width in (("classes", 10), ("classes_and_sync", 20)):
        torch.manual_seed(seed)
        head = nn.Linear(width, NUM_CLASSES)
        optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
        for _ in range(steps):
            loss = F.cross_entropy(head(x_train[:, :width]), train["label"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            accuracy[name] = round(label_loss_and_accuracy(head(x_val[:, :width]), val["label"])[1], 2)
    return accuracy


def run(cfg: RelationConfig, progress: bool = False, ceiling_videos: int = 600_000) -> dict:
    """Train the probe; the validation curve ``[{step, loss, val_loss, val_accuracy}]`` and the base rate
    (for the label, the motion-blind ceiling from ``ceiling_videos`` training videos)."""
    torch.manual_seed(cfg.seed)
    data_cfg = dataclasses.replace(config("dyreg", "mini", num_digits=cfg.num_digits),
                                   val_videos=cfg.val_videos, device="cpu")
    train_data, val_data = build_data(data_cfg, "train"), build_data(data_cfg, "val")
    inputs = lambda batch: node_inputs(batch, cfg.inputs, data_cfg.size, cfg.scale)  # noqa: E731
    probe = RelationProbe(cfg.channels, cfg.messages, cfg.target)
    optimizer = torch.optim.AdamW(probe.parameters(), lr=cfg.lr, weight_decay=1e-4)
    val_batch = val_data.batch(list(range(cfg.val_videos)))
    curve = []
    for step in range(cfg.steps):
        first = step * cfg.batch_size  # past the 600,000 videos of an epoch, they repeat
        batch = train_data.batch([i % len(train_data) for i in range(first, first + cfg.batch_size)])
        loss, _ = loss_and_accuracy(probe(inputs(batch)), batch, cfg.target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            with torch.no_grad():
                val_loss, val_accuracy = loss_and_accuracy(probe(inputs(val_batch)), val_batch, cfg.target)
            curve.append({"step": step + 1, "loss": round(loss.item(), 4), "val_loss": round(val_loss.item(), 4),
                          "val_accuracy": round(val_accuracy, 2)})
            if progress:
                print(json.dumps(curve[-1]), flush=True)
            if cfg.until and val_accuracy >= cfg.until:
                break
    return {"curve": curve, "val_accuracy": curve[-1]["val_accuracy"],
            "base_rate": base_rate(data_cfg, val_batch, cfg.target, ceiling_videos),
            "train_videos": curve[-1]["step"] * cfg.batch_size}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = RelationConfig()
    for f in dataclasses.fields(RelationConfig):
        p.add_argument("--" + f.name.replace("_", "-"), type=type(getattr(defaults, f.name)), default=getattr(defaults, f.name))
    p.add_argument("--out", type=Path, help="write the result (with its provenance) as JSON here")
    args = vars(p.parse_args(argv))
    out = args.pop("out")
    try:
        cfg = RelationConfig(**args)
    except ValueError as error:
        p.error(str(error))
    tic = time.time()
    result = run(cfg, progress=True)
    command = "python -m dyreg_edu.experiments.relation " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    result = {"config": dataclasses.asdict(cfg), **result, **provenance_fields(command, time.time() - tic, "cpu")}
    what = "of the sync flags" if cfg.target == "sync" else "of the videos' labels"
    print(f"{cfg.inputs}, {cfg.messages} messages: {result['val_accuracy']:.2f}% {what} right "
          f"(base rate {result['base_rate']:.2f}%)")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
