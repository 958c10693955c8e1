"""Training DyReg-GNN on MultiSyncMNIST: one readable loop, two scales, exact resume.

Usage (CLI, see ``python -m dyreg_edu.train --help``)::

    python -m dyreg_edu.train --variant dyreg --scale mini --out runs/mini/dyreg
    python -m dyreg_edu.train --variant dyreg --scale mini --out runs/mini/dyreg --resume

or from Python: ``train(config("dyreg", "mini"), "runs/mini/dyreg")``.

**Scales** (:data:`SCALES`):

- ``paper``: the paper's data and model (Appendix E.1): 600,000 training videos an epoch,
  the 10,000 validation videos, 5 digits, 10 frames at 128 x 128, the ResNet-18 of
  Table 6 trained from scratch. Needs a GPU.
- ``mini``: designed so that a 2-core CPU trains one variant in minutes and the paper's
  contrast can still show: 64 x 64 videos with 3 digits and 8 frames, a small ResNet
  (widths 16/32/64, one block a stage) whose first two stages (the part before the graph)
  are learned **once**, per frame, to find digits (:func:`pretrain_digits`, using the
  generator's boxes and digit classes) and then frozen, so that each variant spends its
  minutes on what differs between them: the graph, ``layer3`` and the classifier.

**Recipes** (:data:`RECIPES`): ``paper`` is the paper's SGD as written, lr 0.001, momentum 0.9
(with the authors' weight decay 5e-4 and a constant rate); ``paper_scaled`` is the same SGD with
the learning rate scaled linearly from the paper's batch of 10 videos to ours
(:func:`linear_scaled_lr`: 0.0128 at the paper scale's 128; at that batch the H100 benchmark
``results/benchmarks/train_throughput_cuda.json`` trains DyReg at about 2,500 videos a second,
where the run at 64 logged 900-1,500); ``fast`` is AdamW with a short
warm-up and a cosine decay. Every recipe clips the gradient's norm at 5 (``grad_clip``,
ours: the authors' code parses a ``--gd`` but never applies it; ``--grad-clip 0`` trains without,
as they did; every committed run clipped). Each scale has its default (:data:`DEFAULT_RECIPES`): ``fast`` at
mini scale (the chapters show why) and ``paper_scaled`` at paper scale, after two GPU attempts:

- ``fast`` (``results/multisync/attempts/dyreg_fast_recipe.json``) let the regions collapse:
  under Adam's normalised steps the sizes grew to 53 map widths and all nine nodes sat on the
  map's centre, every node a global average;
- ``paper`` at batch 64 (``results/multisync/attempts/dyreg_paper_recipe.json``) learned the
  digits and stalled just under the motion-blind ceiling (34.6% after 1.5M videos, ceiling
  37%) with the graph's branch still closed: its zero-initialised scales grow by SGD steps of
  lr x gradient, and at 64 videos a step ten epochs make 6.4 times fewer steps than the
  paper's batch of 10 (the batch of the authors' runs; the MultiSyncMNIST one is not stated).
  At the mini scale, the same lr per video opens those scales alike at batch 16 and 64, and the
  literal 0.001 at 64 far less (``results/multisync/mini/experiments/linear_scaling/``).

**Where a variant starts** (``head_init``): ``"resnet18"`` (the mini default) copies the trained
plain model's ``layer3`` and classifier (:func:`load_resnet_head`), so a graph variant starts
where the plain model ended; the path of a trained checkpoint copies its ``layer3``, its graph
block (the kernel source only when it has one that fits) and its classifier
(:func:`load_trained_head`), and ``freeze_head=True`` then trains only the regions. Chapter 11
starts DyReg from a trained oracle that way, to ask whether its regions learn to track under a
graph that already reads a tracking node's step (neither option is in the paper).

**Regions taught by the boxes** (``box_loss``, not in the paper): adds
:func:`region_box_loss`, the regions against the digits' ground-truth boxes, to the label's
loss. Chapter 11 uses it to separate two questions the label alone answers together: can the
region generator track the digits at all (it is shown where they are), and, once regions track,
does DyReg then beat Fixed. ``oracle_jitter`` (also not in the paper) shifts the oracle's boxes at
random, in training and validation, to ask how precisely regions must track.
``box_loss_steps`` (not in the paper) teaches them for the first steps only, then leaves them to
the label: how few of the boxes the generator needs.
``regions_init`` (not in the paper) copies only the region generator of such a trained DyReg into
a run whose graph starts afresh, and ``freeze_regions`` keeps it as learned: a graph that learns
on regions tracking the digits from its first step.

**Exact resume.** The batch at step ``s`` is a pure function of ``(seed, s)``
(:class:`~data_gen.multisync.MultiSyncLoader` orders each epoch by a counter-based hash),
and a checkpoint holds the model, optimiser, scheduler and every random generator's state,
so a run stopped by ``--max-minutes`` and continued with ``--resume`` logs the same losses
as one that ran straight through.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import dataclasses
import datetime as dt
import inspect
import itertools
import json
import math
import shlex
import sys
import time
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange, reduce, repeat
from torch import Tensor, nn

from data_gen.multisync import NUM_CLASSES, MultiSyncMNIST

from .dyreg import DyRegBlock
from .variants import BLOCK_VARIANTS, GENERATED_VARIANTS, ORACLE_VARIANTS
from .metrics import box_centers, confusion_matrix, distance_sums, harmonic_mean, region_centers, region_statistics
from .models import MINI_BACKBONE, PAPER_BACKBONE, SyncMNISTModel

MODEL_VARIANTS = ("resnet18",) + BLOCK_VARIANTS
#: The part of the model that :func:`pretrain_digits` learns and ``freeze_backbone`` freezes.
BACKBONE_PARTS = ("stem", "layer1", "layer2")
REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in every checkpoint and result file)."""

    variant: str = "dyreg"
    scale: str = "mini"
    recipe: str = "fast"
    # data (data_gen.multisync.MultiSyncMNIST)
    size: int = 64
    num_digits: int = 3
    num_frames: int = 8
    train_videos: int = 600_000
    val_videos: int = 2_000
    data_seed: int = 0
    digit_size: int | None = None  # stored pixels; None: scales with size (7 at 64, 14 at 128)
    max_step: float | None = None  # largest step a frame, stored pixels; None: scales with size (2.5 at 64)
    # model (dyreg_edu.models.SyncMNISTModel)
    widths: tuple = MINI_BACKBONE["widths"]
    blocks: tuple = MINI_BACKBONE["blocks"]
    stem: str = MINI_BACKBONE["stem"]
    num_nodes: int = 9
    dropout: float = 0.0
    dropout_on: str = "map"
    classifier_init: str = "torch"
    temporal_shift: bool = False  # TSM's shift before layer3 (the motion-aware plain control)
    block: dict = field(default_factory=dict)  # DyRegBlock switches, e.g. {"fixed_size": 2.0}
    backbone: str = "digits"  # "digits": pretrained by pretrain_digits; "scratch"
    freeze_backbone: bool = True
    freeze_head: bool = False  # with a head_init checkpoint: only the regions (the kernel source) learn
    head_init: str = "none"  # "resnet18": graph variants start from the trained plain model's layer3 + classifier;
    # a path to a trained checkpoint (.pt): start from its layer3, graph block (its kernel source when it fits) and classifier
    regions_init: str = "none"  # the path of a trained checkpoint (.pt) of a generated-regions variant: copy its region
    # generator only, after head_init (not in the paper)
    freeze_regions: bool = False  # with regions_init: the copied region generator does not learn
    oracle_jitter: float = 0.0  # the oracle's boxes shifted at random by this spread, video pixels (not in the paper)
    box_loss: float = 0.0  # weight of the regions' loss against the digits' boxes (not in the paper): region_box_loss
    box_loss_steps: int = 0  # with box_loss: taught by the boxes for the first this many steps only; 0: every step
    digit_steps: int = 1500  # steps of pretrain_digits (backbone="digits"); the mini design's first stage
    # optimisation
    epochs: float = 1.0
    batch_size: int = 32
    optimizer: str = "adamw"
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    warmup_steps: int = 100
    grad_clip: float = 5.0
    # bookkeeping
    eval_every: int = 250
    bn_batches: int = 0  # before each validation, recompute BatchNorm statistics over this many training batches
    log_every: int = 1  # per-step records are written in groups of this many (one GPU sync per group)
    checkpoint_minutes: float = 3.0
    seed: int = 0
    device: str = "cpu"
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    channels_last: bool = True  # on CUDA
    compile: bool = False

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.train_videos // self.batch_size)

    @property
    def total_steps(self) -> int:
        """The length of the learning-rate schedule (``epochs`` epochs)."""
        return max(1, math.ceil(self.epochs * self.steps_per_epoch))

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown training settings {sorted(unknown)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


#: The two scales; a variant's config is ``config(variant, scale)``.
SCALES = {
    "mini": dict(size=64, num_digits=3, num_frames=8, train_videos=600_000, val_videos=2_000,
                 **MINI_BACKBONE, backbone="digits", freeze_backbone=True, head_init="resnet18", epochs=0.12,
                 batch_size=32, dropout=0.0, classifier_init="torch", eval_every=250),
    "paper": dict(size=128, num_digits=5, num_frames=10, train_videos=600_000, val_videos=10_000,
                  **PAPER_BACKBONE, backbone="scratch", freeze_backbone=False, epochs=10.0, batch_size=128,
                  dropout=0.5, dropout_on="map", classifier_init="authors", eval_every=1000, bn_batches=16, log_every=50),
}
#: Where one variant's settings differ at a scale: the mini plain model trains first, twice as long
#: (to its motion-blind plateau), and the graph variants start from it.
VARIANT_SETTINGS = {"mini": {"resnet18": dict(epochs=0.16, head_init="none")}}
#: The paper's learning rate (Section 4.2) and the batch it belongs to: the authors' runs use
#: 10 videos a step (dyreg_spec.md, 5.1); the MultiSyncMNIST batch is not stated.
PAPER_LR, PAPER_BATCH = 1e-3, 10
#: The optimisers: the paper's (Section 4.2) as written, the same scaled to our batch, and a
#: faster one. (The default of each scale is in :data:`DEFAULT_RECIPES`.)
PAPER_SGD = dict(optimizer="sgd", lr=PAPER_LR, momentum=0.9, weight_decay=5e-4, schedule="constant", warmup_steps=0)
RECIPES = {
    "paper": PAPER_SGD,
    "paper_scaled": PAPER_SGD,  # with lr = linear_scaled_lr(batch_size), set in config()
    "fast": dict(optimizer="adamw", lr=2e-3, weight_decay=1e-4, schedule="cosine", warmup_steps=100),
}


#: The recipe each scale uses unless told otherwise (see the module's docstring for the evidence).
DEFAULT_RECIPES = {"mini": "fast", "paper": "paper_scaled"}


def linear_scaled_lr(batch_size: int) -> float:
    """The paper's learning rate for ``batch_size`` videos a step by the linear scaling rule
    (Goyal et al., 2017): the same lr per video, so an epoch moves the weights as far in
    ``PAPER_BATCH / batch_size`` times fewer steps. 0.0128 for a batch of 128."""
    return PAPER_LR * batch_size / PAPER_BATCH


def config(variant: str = "dyreg", scale: str = "mini", recipe: str | None = None, **overrides) -> TrainConfig:
    """The configuration of ``variant`` at ``scale`` with ``recipe`` (default: the scale's,
    :data:`DEFAULT_RECIPES`); ``overrides`` replace any field."""
    if variant not in MODEL_VARIANTS:
        raise ValueError(f"variant must be one of {MODEL_VARIANTS}, got {variant!r}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {tuple(SCALES)}, got {scale!r}")
    recipe = DEFAULT_RECIPES.get(scale) if recipe is None else recipe
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {tuple(RECIPES)}, got {recipe!r}")
    settings = {**SCALES[scale], **RECIPES[recipe], **VARIANT_SETTINGS.get(scale, {}).get(variant, {})}
    cfg = TrainConfig(variant=variant, scale=scale, recipe=recipe, **settings)
    cfg = dataclasses.replace(cfg, **overrides)
    if recipe == "paper_scaled" and "lr" not in overrides:
        cfg = dataclasses.replace(cfg, lr=linear_scaled_lr(cfg.batch_size))
    if variant in ORACLE_VARIANTS and "num_nodes" not in overrides:
        cfg = dataclasses.replace(cfg, num_nodes=cfg.num_digits)  # one node per digit box
    check_config(cfg)
    return cfg


def check_config(cfg: TrainConfig) -> None:
    """Raise a one-line ``ValueError`` naming the first bad setting."""
    checks = [
        ("variant", cfg.variant in MODEL_VARIANTS, f"one of {MODEL_VARIANTS}"),
        ("batch_size", isinstance(cfg.batch_size, int) and cfg.batch_size >= 1, "a positive int"),
        ("epochs", cfg.epochs > 0, "positive"),
        ("digit_steps", isinstance(cfg.digit_steps, int) and cfg.digit_steps >= 1, "a positive int of pretraining steps"),
        ("lr", cfg.lr > 0, "positive"),
        ("grad_clip", cfg.grad_clip >= 0, "0 (no clipping) or a positive gradient norm"),
        ("optimizer", cfg.optimizer in ("sgd", "adamw"), "'sgd' or 'adamw'"),
        ("schedule", cfg.schedule in ("constant", "cosine"), "'constant' or 'cosine'"),
        ("backbone", cfg.backbone in ("digits", "scratch"), "'digits' or 'scratch'"),
        ("head_init", cfg.head_init in ("none", "resnet18") or str(cfg.head_init).endswith(".pt"),
         "'none', 'resnet18' or the path of a trained checkpoint (.pt)"),
        ("temporal_shift", isinstance(cfg.temporal_shift, bool), "True or False"),
        ("box_loss", cfg.box_loss == 0 or (cfg.box_loss > 0 and cfg.variant in GENERATED_VARIANTS
                                            and cfg.num_nodes >= cfg.num_digits),
         f"0, or a positive weight for a variant that makes its regions {GENERATED_VARIANTS} with num_nodes >= "
         f"num_digits ({cfg.num_nodes} nodes, {cfg.num_digits} digits)"),
        ("box_loss_steps", isinstance(cfg.box_loss_steps, int) and cfg.box_loss_steps >= 0
                           and (cfg.box_loss_steps == 0 or cfg.box_loss > 0),
         "0 (every step), or a positive int of steps with box_loss > 0"),
        ("oracle_jitter", cfg.oracle_jitter == 0 or (cfg.oracle_jitter > 0 and cfg.variant in ORACLE_VARIANTS),
         "0, or a positive spread in video pixels for the oracle"),
        ("freeze_head", cfg.freeze_head is False or (str(cfg.head_init).endswith(".pt") and cfg.variant in GENERATED_VARIANTS),
         f"False unless head_init is a checkpoint (.pt) and the variant makes its regions {GENERATED_VARIANTS}"),
        ("regions_init", cfg.regions_init == "none" or (str(cfg.regions_init).endswith(".pt") and cfg.variant in GENERATED_VARIANTS),
         f"'none' or the path of a trained checkpoint (.pt), for a variant that makes its regions {GENERATED_VARIANTS}"),
        ("freeze_regions", cfg.freeze_regions is False or (cfg.regions_init != "none" and not cfg.freeze_head),
         "False unless regions_init names the checkpoint whose region generator is copied, and False with "
         "freeze_head (nothing would learn)"),
        ("num_nodes", cfg.variant not in ORACLE_VARIANTS or cfg.num_nodes == cfg.num_digits,
         f"num_digits ({cfg.num_digits}) for the oracle, one node per digit box"),
        ("digit_size", cfg.digit_size is None or (isinstance(cfg.digit_size, int) and 1 <= cfg.digit_size <= cfg.size // 2),
         f"None or an int of 1 to {cfg.size // 2} pixels (half the video)"),
        ("max_step", cfg.max_step is None or (cfg.max_step > 0 and float(2 * cfg.max_step).is_integer()),
         "None or a positive multiple of 0.5 pixels"),
        ("bn_batches", isinstance(cfg.bn_batches, int) and cfg.bn_batches >= 0, "an int >= 0"),
        ("log_every", isinstance(cfg.log_every, int) and cfg.log_every >= 1, "a positive int"),
        ("device", cfg.device in ("cpu", "cuda") or cfg.device.startswith("cuda:"), "'cpu' or 'cuda'"),
        ("train_videos", cfg.train_videos >= cfg.batch_size, f"at least the batch size ({cfg.batch_size})"),
        ("val_videos", cfg.val_videos >= 1, "a positive int"),
        ("eval_every", cfg.eval_every >= 1, "a positive int"),
    ]
    for name, ok, expected in checks:
        if not ok:
            raise ValueError(f"{name} must be {expected}, got {getattr(cfg, name)!r}")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {cfg.device!r} asked for, but torch sees no CUDA GPU")


# --------------------------------------------------------------------------- parts


def build_model(cfg: TrainConfig) -> SyncMNISTModel:
    """The model of ``cfg`` (random weights; the pretrained backbone is loaded by :func:`train`)."""
    return SyncMNISTModel(cfg.variant, NUM_CLASSES, cfg.num_nodes, input_size=cfg.size, widths=tuple(cfg.widths),
                          blocks=tuple(cfg.blocks), stem=cfg.stem, dropout=cfg.dropout, dropout_on=cfg.dropout_on,
                          classifier_init=cfg.classifier_init, temporal_shift=cfg.temporal_shift,
                          oracle_jitter=cfg.oracle_jitter, **cfg.block)


def build_data(cfg: TrainConfig, split: str, device=None) -> MultiSyncMNIST:
    """The training split (``train_videos`` an epoch) or the fixed validation slice (the first ``val_videos``)."""
    num = cfg.train_videos if split == "train" else cfg.val_videos
    return MultiSyncMNIST(split, num_videos=num, num_digits=cfg.num_digits, num_frames=cfg.num_frames,
                          size=cfg.size, seed=cfg.data_seed, device=device or cfg.device,
                          digit_size=cfg.digit_size, max_step=cfg.max_step)


def as_input(videos: Tensor) -> Tensor:
    """uint8 videos ``[B, T, S, S]`` -> the model's float input ``[B, T, 1, S, S]`` in [0, 1]."""
    return videos[:, :, None].float() / 255


def model_inputs(batch: dict, device, *, still: bool = False) -> tuple[Tensor, Tensor]:
    """A batch's video as the model's input ``[B, T, 1, S, S]`` and its ground-truth ``boxes``
    ``[B, T, D, 4]`` (only the oracle reads them), on ``device``. ``still=True`` freezes both at
    the first frame (:func:`evaluate`'s still videos)."""
    video, boxes = batch["video"].to(device), batch["boxes"].to(device)
    if still:
        video, boxes = video[:, :1].expand_as(video), boxes[:, :1].expand_as(boxes)
    return as_input(video), boxes


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def learning_rate_factor(cfg: TrainConfig, step: int) -> float:
    """The multiplier of ``cfg.lr`` at ``step``: linear warm-up, then constant or cosine to zero."""
    if step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.total_steps - cfg.warmup_steps))
    return 0.5 * (1 + math.cos(math.pi * progress))


def freeze(model: SyncMNISTModel) -> None:
    """Freeze the backbone parts (no gradients, BatchNorm statistics kept)."""
    for name in BACKBONE_PARTS:
        part = getattr(model, name)
        part.eval()
        part.requires_grad_(False)


def freeze_all_but_regions(model: SyncMNISTModel) -> None:
    """``freeze_head``: only the region generator learns; ``layer3`` (BatchNorm statistics
    kept), the rest of the graph block and the classifier stay as loaded."""
    for name in ("layer3", "graph", "classifier"):
        getattr(model, name).requires_grad_(False)
    model.layer3.eval()
    model.graph.region_generator.requires_grad_(True)


def set_train_mode(model: SyncMNISTModel, cfg: TrainConfig) -> None:
    model.train()
    if cfg.freeze_backbone:
        for name in BACKBONE_PARTS:
            getattr(model, name).eval()
    if cfg.freeze_head:
        model.layer3.eval()


def autocast(cfg: TrainConfig):
    if cfg.device.startswith("cuda") and cfg.amp:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def recompute_batchnorm(model: SyncMNISTModel, data: MultiSyncMNIST, cfg: TrainConfig, batches: int) -> None:
    """Precise BatchNorm: the running statistics of every BatchNorm that trains, recomputed as
    the exact average over ``batches`` fixed training batches (the split's first videos).

    Why: the running averages (momentum 0.1) describe the weights of the last few dozen steps.
    When the weights move fast (AdamW at lr 2e-3 on the paper-scale model), they lag so far
    behind that eval-mode accuracy falls to chance while the batch statistics are fine (we
    measured 3% vs 33% on one checkpoint). The weights and the random state are untouched;
    frozen BatchNorms keep their statistics. The model is left in eval mode.
    """
    norms = [m for m in model.modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and (m.weight is None or m.weight.requires_grad)]
    model.eval()
    if not norms or batches <= 0:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
        m.train()
    device = next(model.parameters()).device
    for k in range(batches):
        video, boxes = model_inputs(data.batch(range(k * cfg.batch_size, (k + 1) * cfg.batch_size)), device)
        with autocast(cfg):
            model(video, boxes=boxes)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


@torch.no_grad()
def evaluate(model: SyncMNISTModel, data: MultiSyncMNIST, *, batch_size: int = 100, cfg: TrainConfig | None = None,
             confusion: bool = False, still: bool = False) -> dict:
    """Accuracy (percent), loss, and for models with regions the object-centric distance
    (Appendix F.3) of the graph's regions to the digits, over all of ``data``.

    ``still=True`` shows the model *still* videos: every frame replaced by the first one,
    so the digits are there but nothing moves. A model that uses motion loses accuracy on
    them; a motion-blind one does not. The model is put in eval mode (and left there).
    """
    model.eval()
    device = next(model.parameters()).device
    correct, loss_sum, sums, shape = 0, 0.0, [0.0, 0.0, 0, 0], {"spread": 0.0, "size": 0.0, "frames": 0}
    predictions, labels = [], []
    ctx = autocast(cfg) if cfg is not None else contextlib.nullcontext()
    for start in range(0, len(data), batch_size):
        batch = data.batch(range(start, min(len(data), start + batch_size)))
        label = batch["label"].to(device)
        video, boxes = model_inputs(batch, device, still=still)
        with ctx:
            logits, aux = model(video, return_aux=True, boxes=boxes)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, label, reduction="sum").item()
        correct += (logits.argmax(-1) == label).sum().item()
        predictions.append(logits.argmax(-1).cpu())
        labels.append(label.cpu())
        if "regions" in aux and model.graph is not None:
            centers = region_centers(aux["regions"].float(), model.graph.height, model.graph.width)
            part = distance_sums(centers, box_centers(batch["boxes"].to(device), data.size))
            sums = [a + (b.item() if torch.is_tensor(b) else b) for a, b in zip(sums, part)]
            stats = region_statistics(aux["regions"], model.graph.height, model.graph.width)
            shape = {k: shape[k] + (v.item() if torch.is_tensor(v) else v) for k, v in stats.items()}
    out = {"val_accuracy": 100.0 * correct / len(data), "val_loss": loss_sum / len(data), "val_videos": len(data)}
    if sums[2]:
        precision, recall = sums[0] / sums[2], sums[1] / sums[3]
        out["object_centric"] = {"precision": precision, "recall": recall, "score": harmonic_mean(precision, recall)}
        out["regions"] = {"spread": shape["spread"] / shape["frames"], "size": shape["size"] / shape["frames"]}
    if confusion:
        out["confusion"] = confusion_matrix(torch.cat(predictions), torch.cat(labels), NUM_CLASSES)
    return out


# --------------------------------------------------------------------------- the digit backbone (mini scale)


def digit_targets(boxes: Tensor, digits: Tensor, map_size: int, video_size: int) -> Tensor:
    """Per-cell digit classes for :func:`pretrain_digits`: ``[B, T, H, W]`` int64, the class
    of the digit whose box centre falls in the cell, 10 (background) elsewhere.

    ``boxes [B, T, D, 4]`` in video pixels, ``digits [B, D]``.
    """
    B, T, D, _ = boxes.shape
    cell = (box_centers(boxes, video_size) * map_size).long().clamp_(0, map_size - 1)  # [B, T, D, 2] (x, y)
    target = torch.full((B, T, map_size, map_size), 10, dtype=torch.int64, device=boxes.device)
    b, t, d = torch.meshgrid(torch.arange(B), torch.arange(T), torch.arange(D), indexing="ij")
    target[b, t, cell[..., 1], cell[..., 0]] = digits[:, None, :].expand(B, T, D).to(boxes.device)
    return target


def digit_offsets(boxes: Tensor, map_size: int, video_size: int) -> tuple[Tensor, Tensor]:
    """Where in its cell each digit's centre lies: ``[B, T, 2, H, W]`` (x, y) in ``[-1, 1]``
    (-1 and 1 are the cell's edges, 0 its centre) at the cells of :func:`digit_targets`, and
    the mask ``[B, T, H, W]`` of those cells. Motion within a cell shows in these numbers."""
    B, T, D, _ = boxes.shape
    scaled = box_centers(boxes, video_size) * map_size  # [B, T, D, 2] in cells
    cell = scaled.long().clamp_(0, map_size - 1)
    offset = 2 * (scaled - cell - 0.5)
    target = torch.zeros(B, T, 2, map_size, map_size, device=boxes.device)
    mask = torch.zeros(B, T, map_size, map_size, dtype=torch.bool, device=boxes.device)
    b, t, d = torch.meshgrid(torch.arange(B), torch.arange(T), torch.arange(D), indexing="ij")
    for axis in range(2):
        target[b, t, axis, cell[..., 1], cell[..., 0]] = offset[..., axis]
    mask[b, t, cell[..., 1], cell[..., 0]] = True
    return target, mask


def pretrain_digits(cfg: TrainConfig, *, steps: int = 1500, batch_size: int = 16, lr: float = 3e-3,
                    progress: bool = True) -> tuple[dict, dict]:
    """Learn the backbone parts (stem, layer1, layer2) once, per frame, to find digits.

    A 1x1 conv on ``layer2``'s map predicts, at every cell, the class of the digit centred
    there or "background" (:func:`digit_targets`; background cells weigh 0.1) and, at the
    digits' cells, where in the cell the centre lies (:func:`digit_offsets`, an L1 loss), so
    that the features say precisely where each digit is. Training videos come from the
    generator (the last ones of the epoch, never reached by a variant's short run). Returns
    ``(state_dict of the parts, report)``; the report has, on validation videos, the
    per-cell accuracy on digit cells and the mean error of the offsets in pixels.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int of pretraining steps, got {steps!r}")
    torch.manual_seed(cfg.seed)
    model = build_model(dataclasses.replace(cfg, variant="resnet18"))
    channels = cfg.widths[1]
    head = nn.Conv2d(channels, 13, 1)  # 11 classes (10 digits, background) + the (x, y) offset
    parts = nn.ModuleDict({name: getattr(model, name) for name in BACKBONE_PARTS})
    params = list(parts.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    data = build_data(cfg, "train", "cpu")
    weight = torch.ones(11)
    weight[10] = 0.1
    map_size = cfg.size // {"resnet": 8, "small": 4}[cfg.stem]
    first = len(data) - steps * batch_size  # the last videos of the epoch: never in a variant's short run
    bar = _progress(range(steps), progress, "digits")
    start = time.time()
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        batch = data.batch(range(first + step * batch_size, first + (step + 1) * batch_size))
        target = digit_targets(batch["boxes"], batch["digits"], map_size, cfg.size)
        offsets, on_digits = digit_offsets(batch["boxes"], map_size, cfg.size)
        out = head(rearrange_frames(model.features(as_input(batch["video"]))))
        loss = F.cross_entropy(out[:, :11], rearrange_frames(target), weight=weight)
        where = rearrange_frames(on_digits)[:, None].expand(-1, 2, -1, -1)
        loss = loss + F.l1_loss(out[:, 11:][where], rearrange_frames(offsets)[where])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if progress:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    val = build_data(cfg, "val", "cpu")
    with torch.no_grad():
        batch = val.batch(range(min(500, len(val))))
        target = rearrange_frames(digit_targets(batch["boxes"], batch["digits"], map_size, cfg.size))
        offsets, _ = digit_offsets(batch["boxes"], map_size, cfg.size)
        out = head(rearrange_frames(model.features(as_input(batch["video"]))))
    pred, on_digits = out[:, :11].argmax(1), target != 10
    where = on_digits[:, None].expand(-1, 2, -1, -1)
    pixel_error = (out[:, 11:][where] - rearrange_frames(offsets)[where]).abs().mean().item() * cfg.size / map_size / 2
    report = {"digit_cell_accuracy": 100.0 * (pred[on_digits] == target[on_digits]).float().mean().item(),
              "background_accuracy": 100.0 * (pred[~on_digits] == 10).float().mean().item(),
              "offset_error_pixels": round(pixel_error, 3),
              "steps": steps, "batch_size": batch_size, "train_videos": steps * batch_size,
              "wall_seconds": round(time.time() - start, 1)}
    return {k: v for k, v in model.state_dict().items() if k.split(".")[0] in BACKBONE_PARTS}, report


def rearrange_frames(x: Tensor) -> Tensor:
    """``[B, T, ...] -> [(B T), ...]``: frames as a batch."""
    return rearrange(x, "b t ... -> (b t) ...")


#: The digit backbone's pretraining steps of the committed mini runs.
DEFAULT_DIGIT_STEPS = 1500


def design_tag(cfg: TrainConfig) -> str:
    """``""`` for the committed mini design; otherwise what differs from it:
    ``"_digits<steps>"`` (a longer-pretrained backbone), ``"_px<digit_size>"``, ``"_step<max_step>"``."""
    return _data_tag(cfg) + ("" if cfg.digit_steps == DEFAULT_DIGIT_STEPS else f"_digits{cfg.digit_steps}")


def design_summary(cfg: TrainConfig) -> str:
    """How ``cfg``'s design differs from the committed mini design, for a table's title
    (``""`` when it does not; else e.g. ``", 14-pixel digits, steps up to 5 pixels"``)."""
    parts = ([] if cfg.digit_size is None else [f"{cfg.digit_size}-pixel digits"]) + \
            ([] if cfg.max_step is None else [f"steps up to {cfg.max_step:g} pixels"]) + \
            ([] if cfg.digit_steps == DEFAULT_DIGIT_STEPS else [f"digit backbone pretrained {cfg.digit_steps} steps"])
    return "".join(", " + part for part in parts)


def _data_tag(cfg: TrainConfig) -> str:
    """What in ``cfg``'s data differs from its scale's: ``"_px<digit_size>"``, ``"_step<max_step>"``, and
    (rarely) ``"_d<num_digits>"``, ``"_t<num_frames>"``, ``"_seed<data_seed>"``, so that no two data share
    a cached backbone or plain model."""
    scale = SCALES[cfg.scale]
    parts = [("_px", cfg.digit_size, None), ("_step", cfg.max_step, None), ("_d", cfg.num_digits, scale["num_digits"]),
             ("_t", cfg.num_frames, scale["num_frames"]), ("_seed", cfg.data_seed, TrainConfig.data_seed)]
    return "".join(f"{prefix}{value:g}" for prefix, value, default in parts if value != default)


def digit_backbone_path(cfg: TrainConfig) -> Path:
    suffix = "" if cfg.digit_steps == DEFAULT_DIGIT_STEPS else str(cfg.digit_steps)
    return REPO_ROOT / "checkpoints" / f"multisync_{cfg.scale}{_data_tag(cfg)}_digits{suffix}.pt"


def load_digit_backbone(cfg: TrainConfig, model: SyncMNISTModel, *, progress: bool = True) -> dict:
    """Load the pretrained backbone parts into ``model`` (training and saving them first
    if ``checkpoints/multisync_<scale>_digits.pt`` does not exist). Returns its report."""
    path = digit_backbone_path(cfg)
    if not path.exists():
        state, report = pretrain_digits(cfg, steps=cfg.digit_steps, progress=progress)
        report.update(provenance_fields(f"dyreg_edu.train.pretrain_digits(config({cfg.variant!r}, {cfg.scale!r}))",
                                        report["wall_seconds"], cfg.device))
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": state, "report": report, "config": _backbone_config(cfg)}, path)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    if saved["config"] != _backbone_config(cfg):
        raise ValueError(f"{path} was trained for {saved['config']}, not {_backbone_config(cfg)}: delete it to retrain")
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in saved["model"].items()}, strict=False)
    if unexpected or any(k.split(".")[0] in BACKBONE_PARTS for k in missing):
        raise ValueError(f"{path} does not fit this model's backbone")
    return saved["report"]


def resnet_head_path(cfg: TrainConfig) -> Path:
    return REPO_ROOT / "checkpoints" / f"multisync_{cfg.scale}{design_tag(cfg)}_resnet18.pt"


def load_resnet_head(cfg: TrainConfig, model: SyncMNISTModel) -> dict:
    """Start a graph variant from the trained plain model: copy its ``layer3`` and classifier,
    and its backbone parts too (after checking that they were trained as this model's: the
    same digit backbone, here as the checkpoint's fp16 copy, so that every variant starts from
    exactly the plain model's weights). The graph block is the identity at initialisation, so
    the variant starts where the plain model ended and its training goes to what the graph
    adds. Returns the plain model's result fields."""
    path = resnet_head_path(cfg)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: head_init='resnet18' needs the trained plain model first, of this "
                                f"design (python -m dyreg_edu.ablations --scale {cfg.scale} trains it before the graph "
                                f"variants; for other data, train --variant resnet18 with the same settings and "
                                f"dyreg_edu.train.export_checkpoint(run_dir, '{path.name}'))")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    plain = TrainConfig.from_dict(saved["config"])
    if _backbone_config(plain) != _backbone_config(cfg) or plain.backbone != cfg.backbone:
        raise ValueError(f"{path} was trained on another backbone or data ({_backbone_config(plain)})")
    state = model.state_dict()
    for key, value in saved["model"].items():
        if key.split(".")[0] in BACKBONE_PARTS + ("layer3", "classifier"):
            state[key] = value.to(state[key].dtype)
    model.load_state_dict(state)
    return {k: saved["result"][k] for k in ("val_accuracy", "train_videos", "commit", "date")}


def _backbone_config(cfg: TrainConfig) -> dict:
    config = {"size": cfg.size, "widths": list(cfg.widths), "blocks": list(cfg.blocks), "stem": cfg.stem,
              "num_digits": cfg.num_digits, "num_frames": cfg.num_frames, "data_seed": cfg.data_seed}
    if cfg.digit_steps != DEFAULT_DIGIT_STEPS:
        config["digit_steps"] = cfg.digit_steps
    config.update({k: getattr(cfg, k) for k in ("digit_size", "max_step") if getattr(cfg, k) is not None})
    return config


# --------------------------------------------------------------------------- checkpoints and results


def provenance_fields(command: str, wall_seconds: float, device: str) -> dict:
    from .notebook import cpu_name, git_commit

    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else cpu_name()
    return {"command": command, "commit": git_commit(), "device": name,
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "wall_seconds": round(wall_seconds, 1)}


def _rng_state(device: str) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(path: Path, model, optimizer, cfg: TrainConfig, state: dict) -> None:
    """Everything needed to resume; written to a temporary file first, so a kill never leaves half a file."""
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": cfg.to_dict(),
                "state": state, "rng": _rng_state(cfg.device)}, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict:
    if not Path(path).exists():
        raise FileNotFoundError(f"no checkpoint at {path} to resume from")
    return torch.load(path, map_location="cpu", weights_only=True)


def export_checkpoint(run_dir, path, *, half: bool = True) -> Path:
    """A compact copy of a run for the book: the model (fp16 by default), config and result."""
    run_dir = Path(run_dir)
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    model = {k: v.half() if half and v.is_floating_point() else v for k, v in ckpt["model"].items()}
    result = json.loads((run_dir / "result.json").read_text())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "config": ckpt["config"], "result": result}, path)
    return path


def load_trained(path, device: str = "cpu") -> tuple[SyncMNISTModel, MultiSyncMNIST]:
    """A trained checkpoint back as ``(model in eval mode, validation MultiSyncMNIST)``.

    ``model(as_input(val.batch(idx)["video"]))`` gives its logits (the oracle also takes the
    batch's ``boxes=``; :func:`model_inputs` gives both).
    """
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    cfg = dataclasses.replace(TrainConfig.from_dict(ckpt["config"]), device=device)
    model = build_model(cfg)
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt["model"].items()})
    return model.to(device).eval(), build_data(cfg, "val", device)


# --------------------------------------------------------------------------- the loop


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
    """Region supervision by the ground-truth boxes (``box_loss``; not in the paper, whose regions
    learn from the label alone): the smooth L1 of the ``(cx, cy, sx, sy)`` of each digit's node
    (:func:`match_regions`) against the digit's region. Nodes left without a digit (``N > D``) are free.

    Shapes: ``regions [B, T, N, 4]``, ``targets [B, T, D, 4]`` (map pixels, ``N >= D``) -> a scalar.
    """
    return F.smooth_l1_loss(match_regions(regions, targets), targets)


#: The state-dict prefixes of a graph block's kernel source (its region generator, fixed grid or maps).
KERNEL_SOURCE_KEYS = tuple(f"graph.{name}." for name in DyRegBlock.KERNEL_SOURCES.values())


def kernel_source_fits(state: dict, theirs: dict) -> bool:
    """Whether the kernel source of the state dict ``theirs`` has exactly the keys and shapes of ``state``'s."""
    own = {k for k in state if k.startswith(KERNEL_SOURCE_KEYS)}
    offered = {k for k in theirs if k.startswith(KERNEL_SOURCE_KEYS)}
    return bool(own) and own == offered and all(theirs[k].shape == state[k].shape for k in own)


def _load_same_data_checkpoint(path: Path, cfg: TrainConfig, what: str) -> tuple[dict, TrainConfig]:
    """A saved checkpoint and its config, checked to have this run's backbone and data."""
    if not path.exists():
        raise FileNotFoundError(f"{what} {str(path)!r}: no such checkpoint")
    saved = torch.load(path, map_location="cpu", weights_only=True)
    trained = TrainConfig.from_dict(saved["config"])
    if _backbone_config(trained) != _backbone_config(cfg) or trained.backbone != cfg.backbone:
        raise ValueError(f"{path} was trained on another backbone or data ({_backbone_config(trained)})")
    return saved, trained


def load_trained_regions(cfg: TrainConfig, model: SyncMNISTModel) -> dict:
    """Copy the region generator of another trained model (``cfg.regions_init``), nothing else;
    ``cfg.freeze_regions`` then keeps it as it was (:func:`train` does).

    Chapter 11 uses it to give a freshly started graph the regions that a DyReg taught by the boxes
    learned, tracking the digits from the first step (not in the paper). Returns the trained
    model's result fields and its object-centric distance.
    """
    path = Path(cfg.regions_init)
    saved, trained = _load_same_data_checkpoint(path, cfg, "regions_init")
    state = model.state_dict()
    if not kernel_source_fits(state, saved["model"]):
        raise ValueError(f"{path} has no region generator that fits this model's (a {trained.variant} with "
                         f"{trained.num_nodes} nodes; the same variant kind, node count and block switches are needed)")
    for key in state:
        if key.startswith(KERNEL_SOURCE_KEYS):
            state[key] = saved["model"][key].to(state[key].dtype)
    model.load_state_dict(state)
    return {"path": str(path), "variant": trained.variant, "frozen": cfg.freeze_regions,
            **{k: saved["result"].get(k) for k in ("val_accuracy", "object_centric", "train_videos", "commit", "date")}}


def load_trained_head(cfg: TrainConfig, model: SyncMNISTModel) -> dict:
    """Start from another trained model (``cfg.head_init``, the path of a checkpoint of the same
    backbone and data): copy its ``layer3``, its graph block and its classifier. The kernel source
    (the region generator, the fixed grid) is copied too when the checkpoint has one of the same
    kind and shapes (a DyReg checkpoint into a DyReg model); otherwise (from the oracle, which has
    none, or another number of nodes) it keeps its initialisation. The report says which
    (``kernel_source``: ``"copied"`` or ``"initialised"``).

    Chapter 11 uses it to ask whether DyReg's regions learn to track the digits when the graph
    that reads them already knows what a tracking node's motion means (a trained oracle's).
    Returns the trained model's result fields.
    """
    path = Path(cfg.head_init)
    saved, trained = _load_same_data_checkpoint(path, cfg, "head_init")
    state = model.state_dict()
    copy_source = kernel_source_fits(state, saved["model"])

    def in_head(key: str) -> bool:
        return key.split(".")[0] in ("layer3", "graph", "classifier") and (copy_source or not key.startswith(KERNEL_SOURCE_KEYS))

    wanted, offered = [k for k in state if in_head(k)], [k for k in saved["model"] if in_head(k)]
    misfits = [k for k in wanted if k not in saved["model"] or saved["model"][k].shape != state[k].shape]
    misfits += [k for k in offered if k not in state]
    if misfits:
        raise ValueError(f"{path} does not fit this model's head: {len(misfits)} tensors missing, extra or of "
                         f"another shape, e.g. {misfits[0]!r} (the same block switches and node_dim are needed)")
    for key in wanted:
        state[key] = saved["model"][key].to(state[key].dtype)
    model.load_state_dict(state)
    return {"path": str(path), "variant": trained.variant, "kernel_source": "copied" if copy_source else "initialised",
            **{k: saved["result"][k] for k in ("val_accuracy", "train_videos", "commit", "date")}}


def starting_model(cfg: TrainConfig, *, progress: bool = True) -> tuple[SyncMNISTModel, dict]:
    """The model that a run of ``cfg`` takes its first step from, on the CPU: built with
    ``cfg.seed``, then the digit backbone, ``head_init`` and ``regions_init`` loaded (in that
    order) and the frozen parts frozen. Returns the model and the loaders' reports, keyed
    ``digit_backbone``, ``head_init`` and ``regions_init`` (those that were loaded)."""
    check_config(cfg)
    torch.manual_seed(cfg.seed)
    model, reports = build_model(cfg), {}
    if cfg.backbone == "digits":
        reports["digit_backbone"] = load_digit_backbone(cfg, model, progress=progress)
    if cfg.head_init == "resnet18":  # a graph variant, or the plain model trained on (a control)
        reports["head_init"] = load_resnet_head(cfg, model)
    elif cfg.head_init != "none":
        reports["head_init"] = load_trained_head(cfg, model)
    if cfg.regions_init != "none":
        reports["regions_init"] = load_trained_regions(cfg, model)
    if cfg.freeze_backbone:
        freeze(model)
    if cfg.freeze_head:
        freeze_all_but_regions(model)
    if cfg.freeze_regions:
        model.graph.region_generator.requires_grad_(False)
    return model, reports


def train(cfg: TrainConfig, out_dir, *, resume: bool = False, max_steps: int | None = None,
          max_minutes: float | None = None, progress: bool = True, command: str | None = None) -> dict:
    """Train ``cfg`` into ``out_dir`` (``log.jsonl``, ``checkpoint.pt``, ``result.json``).

    Stops after ``max_steps`` steps counted from the start of training (default: the whole
    schedule, ``cfg.total_steps``) or ``max_minutes`` of this call, whichever comes first,
    and always saves a checkpoint. ``resume=True`` continues from ``out_dir/checkpoint.pt``.
    Returns the result dict (also written to ``result.json``).
    """
    check_config(cfg)
    out = Path(out_dir)
    ckpt_path, log_path = out / "checkpoint.pt", out / "log.jsonl"
    if not resume and ckpt_path.exists():
        raise ValueError(f"{ckpt_path} exists: pass resume=True (--resume) to continue it, or another out_dir")
    if resume and not ckpt_path.exists():
        raise FileNotFoundError(f"no checkpoint at {ckpt_path} to resume from")
    out.mkdir(parents=True, exist_ok=True)
    device = torch.device(cfg.device)
    model, reports = starting_model(cfg, progress=progress)
    model.to(device)
    if device.type == "cuda" and cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(cfg, model)
    from .notebook import git_commit

    state = {"step": 0, "seconds": 0.0, "best_val_accuracy": None, "commit": git_commit()}  # the code that trains
    if resume:
        ckpt = load_checkpoint(ckpt_path)
        saved = TrainConfig.from_dict(ckpt["config"])
        if dataclasses.replace(saved, device=cfg.device) != cfg:
            raise ValueError(f"{ckpt_path} was made with another configuration; resume with the same settings")
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        state = ckpt["state"]
        _set_rng_state(ckpt["rng"])
        _truncate_log(log_path, state["step"])
    elif log_path.exists():
        log_path.unlink()
    forward = torch.compile(model) if cfg.compile else model

    train_data, val_data = build_data(cfg, "train"), build_data(cfg, "val")
    loader = train_data.iter_batches(cfg.batch_size, shuffle=True)
    stop = min(cfg.total_steps, max_steps if max_steps is not None else cfg.total_steps)
    deadline = time.time() + 60 * max_minutes if max_minutes is not None else math.inf
    last_save, order, order_epoch = time.time(), None, None
    bar = _progress(range(state["step"], stop), progress, cfg.variant, initial=state["step"], total=stop)
    pending: list[dict] = []  # this group's step records, their numbers still on the device
    with log_path.open("a") as log:
        while state["step"] < stop and time.time() < deadline:
            tic, step = time.time(), state["step"]
            epoch, j = divmod(step, cfg.steps_per_epoch)
            if epoch != order_epoch:
                loader.set_epoch(epoch)
                order, order_epoch = loader.order(), epoch
            batch = train_data.batch(order[j * cfg.batch_size:(j + 1) * cfg.batch_size])
            (video, boxes), label = model_inputs(batch, device), batch["label"].to(device)
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * learning_rate_factor(cfg, step)
            set_train_mode(model, cfg)
            with autocast(cfg):
                logits, aux = forward(video, return_aux=True, boxes=boxes)
            loss = F.cross_entropy(logits.float(), label)
            if cfg.box_loss and (cfg.box_loss_steps == 0 or step < cfg.box_loss_steps):
                loss = loss + cfg.box_loss * region_box_loss(aux["regions"].float(), model.oracle_regions(boxes))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            state["step"] = step + 1
            state["seconds"] += time.time() - tic
            pending.append(_step_record(model, state["step"], loss, logits, label, optimizer.param_groups[0]["lr"], tic))
            validate = state["step"] % cfg.eval_every == 0 or state["step"] == cfg.total_steps
            if validate or len(pending) >= cfg.log_every or state["step"] == stop:
                records = _flush(pending, cfg.batch_size)
                if validate:
                    tic = time.time()
                    recompute_batchnorm(model, train_data, cfg, cfg.bn_batches)
                    records[-1].update(_rounded(evaluate(model, val_data, cfg=cfg)))
                    state["seconds"] += time.time() - tic
                    state["best_val_accuracy"] = max(state["best_val_accuracy"] or 0.0, records[-1]["val_accuracy"])
                for record in records:
                    log.write(json.dumps(record) + "\n")
                log.flush()
                if progress:
                    record = records[-1]
                    bar.update(len(records))
                    bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['accuracy']:.0f}",
                                    vps=f"{record['videos_per_second']:.0f}", val=record.get("val_accuracy", ""))
            if not pending and time.time() - last_save > 60 * cfg.checkpoint_minutes:
                save_checkpoint(ckpt_path, model, optimizer, cfg, state)
                last_save = time.time()
        if pending:  # the deadline came inside a group
            for record in _flush(pending, cfg.batch_size):
                log.write(json.dumps(record) + "\n")
    if progress:
        bar.close()
    recompute_batchnorm(model, train_data, cfg, cfg.bn_batches)
    save_checkpoint(ckpt_path, model, optimizer, cfg, state)
    result = _result(cfg, model, val_data, state, log_path, command, reports.get("digit_backbone"))
    result.update({key: reports[key] for key in ("head_init", "regions_init") if key in reports})
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def read_log(path) -> list[dict]:
    """A run's JSON-line log (``log.jsonl``, or its copy under ``results/.../logs/``), one dict a line;
    ``[]`` when the run has no log yet, so that a chapter leaves its curve out, as a table shows "–".
    (``dyreg_edu.ablations.read_log`` is the same function.)"""
    path = Path(path)
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _result(cfg, model, val_data, state, log_path, command, backbone_report) -> dict:
    """The result file: the last validation of the log, or a fresh one if the log has none at this step."""
    records = read_log(log_path)
    last_val = next((r for r in reversed(records) if "val_accuracy" in r), None)
    if last_val is None or last_val["step"] != state["step"]:
        last_val = {"step": state["step"], **_rounded(evaluate(model, val_data, cfg=cfg))}
    result = {
        "variant": cfg.variant, "scale": cfg.scale, "recipe": cfg.recipe,
        "val_accuracy": last_val["val_accuracy"], "val_loss": last_val["val_loss"], "val_videos": cfg.val_videos,
        "train_videos": state["step"] * cfg.batch_size, "epochs": round(state["step"] / cfg.steps_per_epoch, 4),
        "steps": state["step"], "total_steps": cfg.total_steps, "finished": state["step"] >= cfg.total_steps,
        **({"object_centric": last_val["object_centric"]} if "object_centric" in last_val else {}),
        "still_val_accuracy": round(evaluate(model, val_data, cfg=cfg, still=True)["val_accuracy"], 4),
        **provenance_fields(command or python_command(cfg), state["seconds"], cfg.device),
        "config": cfg.to_dict(),
    }
    if state.get("commit") and state["commit"] != result["commit"]:
        result["result_commit"], result["commit"] = result["commit"], state["commit"]  # trained at, written at
    if backbone_report is not None:
        result["digit_backbone"] = backbone_report
    return result


def python_command(cfg: TrainConfig) -> str:
    """The Python call that makes this run: ``config`` with the fields that differ from the defaults."""
    default = config(cfg.variant, cfg.scale, cfg.recipe, device=cfg.device)
    changed = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
               if f.name not in ("variant", "scale", "recipe") and getattr(cfg, f.name) != getattr(default, f.name)}
    args = "".join(f", {k}={v!r}" for k, v in changed.items())
    return f"dyreg_edu.train.train(config({cfg.variant!r}, {cfg.scale!r}, {cfg.recipe!r}{args}), out_dir)"


def _step_record(model, step: int, loss: Tensor, logits: Tensor, label: Tensor, lr: float, tic: float) -> dict:
    """One step's log record, its numbers left on the device until :func:`_flush`."""
    record = {"step": step, "loss": loss.detach(), "correct": (logits.argmax(-1) == label).sum(), "lr": lr, "tic": tic}
    if model.graph is not None:
        record["gamma"] = _gamma_tensors(model)
    return record


def _flush(pending: list[dict], batch_size: int) -> list[dict]:
    """The pending records as plain JSON records, with one device sync for the whole group.

    ``videos_per_second`` is the group's rate (with ``log_every = 1``, each step's own).
    """
    records, seconds = [], time.time() - pending[0]["tic"]
    numbers = torch.stack([torch.stack([r["loss"].float(), r["correct"].float(), *r.get("gamma", {}).values()])
                           for r in pending]).tolist()  # one sync
    for r, values in zip(pending, numbers):
        record = {"step": r["step"], "loss": round(values[0], 6), "accuracy": round(100.0 * values[1] / batch_size, 2),
                  "lr": r["lr"], "videos_per_second": round(batch_size * len(pending) / seconds, 1)}
        if "gamma" in r:
            record["gamma"] = {k: round(v, 5) for k, v in zip(r["gamma"], values[2:])}
        records.append(record)
    pending.clear()
    return records


def _gamma_tensors(model: SyncMNISTModel) -> dict[str, Tensor]:
    g = {"residual": model.graph.residual_norm.scale.detach().abs().mean()}
    if model.graph.properties.kernels == "regions":
        g["regions"] = model.graph.region_generator.gamma.detach().abs().mean()
    return g


def _rounded(d: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else _rounded(v) if isinstance(v, dict) else v) for k, v in d.items()}


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines past the checkpoint's step (written after the last save of an interrupted run)."""
    if path.exists():
        lines = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in lines))


def _progress(iterable, enabled: bool, desc: str, **kwargs):
    if not enabled:
        return _NoBar(iterable)
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, dynamic_ncols=True, **kwargs)


class _NoBar:
    def __init__(self, iterable):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def update(self, n=1):
        pass

    def set_postfix(self, **kwargs):
        pass

    def close(self):
        pass


# --------------------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dyreg_edu.train", description="Train a MultiSyncMNIST model.")
    p.add_argument("--variant", required=True, help=f"one of {', '.join(MODEL_VARIANTS)}")
    p.add_argument("--scale", default="mini", help="mini (CPU, minutes) or paper (GPU)")
    p.add_argument("--recipe", help="fast (AdamW, cosine), paper (SGD 0.001, momentum 0.9) or paper_scaled "
                   "(the same, lr 0.001 x batch / 10); default: mini fast, paper paper_scaled")
    p.add_argument("--out", required=True, help="run directory: log.jsonl, checkpoint.pt, result.json")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--max-steps", type=int, help="stop after this many steps from the start of training")
    p.add_argument("--max-minutes", type=float, help="stop (and save) after this many minutes of this call")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--epochs", type=float, help="schedule length in epochs")
    p.add_argument("--train-videos", type=int, help="videos in one training epoch")
    p.add_argument("--val-videos", type=int, help="size of the fixed validation slice")
    p.add_argument("--lr", type=float)
    p.add_argument("--grad-clip", type=float, help="clip the gradient norm to this (default 5, ours; 0: none, as the authors' code)")
    p.add_argument("--num-nodes", type=int)
    p.add_argument("--num-digits", type=int)
    p.add_argument("--fixed-size", type=float, help="constant region half-size of the fixed-size variants (Table 11)")
    p.add_argument("--eval-every", type=int)
    p.add_argument("--digit-steps", type=int, help="pretraining steps of the mini digit backbone (default 1500)")
    p.add_argument("--digit-size", type=int, help="digit size in video pixels (default: scales with the video, 7 at 64)")
    p.add_argument("--max-step", type=float, help="largest step a frame in video pixels (default: 2.5 at 64)")
    p.add_argument("--temporal-shift", action="store_true", help="TSM's shift before layer3 (the motion-aware plain control)")
    p.add_argument("--head-init", help="none, resnet18 (the mini default: start from the trained plain model) or "
                   "the path of a trained checkpoint (.pt): start from its layer3, graph block (its kernel source "
                   "when it fits) and classifier")
    p.add_argument("--freeze-head", action="store_true", help="with --head-init PATH: only the regions learn")
    p.add_argument("--regions-init", help="the path of a trained checkpoint (.pt) whose region generator is copied, "
                   "after --head-init (not in the paper)")
    p.add_argument("--freeze-regions", action="store_true", help="with --regions-init: the copied regions do not learn")
    p.add_argument("--oracle-jitter", type=float, help="the oracle's boxes shifted at random by this spread, "
                   "in video pixels, per axis, frame and digit (not in the paper; default 0)")
    p.add_argument("--box-loss", type=float, help="weight of a loss of the regions against the digits' boxes "
                   "(not in the paper; default 0)")
    p.add_argument("--box-loss-steps", type=int, help="with --box-loss: taught by the boxes for the first this many "
                   "steps only, then the label alone (not in the paper; default 0: every step)")
    p.add_argument("--block", action="append", default=[], metavar="KEY=VALUE",
                   help="a DyRegBlock switch (repeatable), VALUE a Python literal or a word, "
                   "e.g. --block node_motion=True --block motion_from=centre --block position_scale=25")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--no-progress", action="store_true")
    return p


def block_switches(pairs: list[str]) -> dict:
    """``["node_motion=True", "motion_from=centre"]`` -> ``{"node_motion": True, "motion_from": "centre"}``:
    each ``KEY`` a keyword of :class:`~dyreg_edu.dyreg.DyRegBlock`, each ``VALUE`` a Python literal
    (or else the word itself)."""
    set_by_the_model = {"in_channels", "height", "width", "variant", "num_nodes", "node_dim", "region_dim", "switches"}
    known = set(inspect.signature(DyRegBlock).parameters) - set_by_the_model
    hints = typing.get_type_hints(DyRegBlock.__init__)
    switches = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in known:
            raise ValueError(f"--block wants KEY=VALUE with KEY one of {sorted(known)}, got {pair!r}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        expected = _accepted_types(hints[key])
        if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
            names = " or ".join("None" if t is type(None) else t.__name__ for t in expected)
            raise ValueError(f"--block {key} wants {names}, got {text!r}" + (" (True or False)" if bool in expected else ""))
        switches[key] = value
    return switches


def _accepted_types(hint) -> tuple[type, ...]:
    """The Python types a keyword's annotation accepts: ``float | None`` -> ``(float, int, NoneType)``."""
    kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    kinds = tuple(typing.get_origin(kind) or kind for kind in kinds)  # tuple[int, int] -> tuple
    return kinds + ((int,) if float in kinds else ())


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    names = ("batch_size", "epochs", "train_videos", "val_videos", "lr", "num_nodes", "num_digits", "eval_every",
             "digit_steps", "digit_size", "max_step", "head_init", "regions_init", "box_loss", "box_loss_steps",
             "oracle_jitter", "grad_clip")
    overrides = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    if args.temporal_shift:
        overrides["temporal_shift"] = True
    if args.freeze_head:
        overrides["freeze_head"] = True
    if args.freeze_regions:
        overrides["freeze_regions"] = True
    block = {"fixed_size": args.fixed_size} if args.fixed_size is not None else {}
    try:
        block.update(block_switches(args.block))
    except ValueError as error:
        p.exit(2, f"{p.prog}: error: {error}\n")
    if block:
        overrides["block"] = block
    command = "python -m dyreg_edu.train " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    try:
        if args.max_steps is not None and args.max_steps < 0:
            raise ValueError(f"max_steps must be at least 0, got {args.max_steps}")
        if args.max_minutes is not None and args.max_minutes <= 0:
            raise ValueError(f"max_minutes must be positive, got {args.max_minutes}")
        cfg = config(args.variant, args.scale, args.recipe, device=args.device, seed=args.seed, compile=args.compile, **overrides)
        result = train(cfg, args.out, resume=args.resume, max_steps=args.max_steps, max_minutes=args.max_minutes,
                       progress=not args.no_progress, command=command)
    except (ValueError, FileNotFoundError) as error:
        p.exit(2, f"{p.prog}: error: {error}\n")
    print(json.dumps({k: result[k] for k in ("variant", "scale", "steps", "val_accuracy", "wall_seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
