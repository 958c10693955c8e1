"""Training and evaluating TSM + DyReg-GNN on Something-Something V2 (paper Section 4.1, Appendix F).

Usage (see ``python -m dyreg_edu.train_ssv2 --help``)::

    # one GPU, the paper's model (DyReg at res3, res4, res5), ImageNet start
    python -m dyreg_edu.train_ssv2 --root ~/ssv2 --out runs/ssv2/dyreg --workers 8
    # several GPUs, as the authors ran it (DistributedDataParallel, SyncBatchNorm)
    torchrun --nproc_per_node 2 -m dyreg_edu.train_ssv2 --root ~/ssv2 --out runs/ssv2/dyreg
    # continue after an interruption (same losses as a straight run)
    python -m dyreg_edu.train_ssv2 --root ~/ssv2 --out runs/ssv2/dyreg --resume
    # evaluate the authors' checkpoint (or ours) with both protocols
    python -m dyreg_edu.train_ssv2 --root ~/ssv2 --evaluate dyreg_gnn_model_l2l3l4.pth.tar

**The recipe** (:data:`PAPER_RECIPE`; paper Section 4.1 and the authors' ``train_model.sh``):
TSM-ResNet-50, 16 frames, ImageNet initialisation, SGD with momentum 0.9, weight decay 5e-4,
learning rate 0.001 for a total batch of 10 on 2 GPUs (the paper; the released script passes
``--batch-size 2`` per process) scaled linearly with the batch, divided by 10 at epochs 20, 30,
40 of 60 (the script's ``--lr_steps``; the paper says "when validation plateaus"), dropout 0.5, no gradient clipping (the script's ``--gd 20`` is parsed but never
applied by their code; ``--grad-clip 20`` clips as TSM's own code does), the authors' parameter groups
(:func:`dyreg_edu.models.param_groups`: 5x / 10x on the new classifier, 2x on biases, no decay
on biases and norms), all BatchNorms trained (``--npb``), no horizontal flip.

**Ours, not theirs**: mixed precision on CUDA (``--amp auto``: bf16 where the GPU has it, fp16 with a
gradient scaler where it does not, e.g. a T4; ``--amp off`` for fp32), gradient accumulation
(``--accumulate``: the same global batch on fewer GPUs), exact resume (every random draw is
keyed by seed, epoch and index, and the checkpoint holds the RNG states), validation that
drops no video (theirs drops the last partial batch).

**Distillation kick-start** (Appendix F.1, not released by the authors; our reading): for the
first ``distill_fraction`` (10%) of the iterations, an extra loss pulls the regions of each
DyReg stage towards those of a trained single-stage model (the teacher of that stage):
the squared L2 distance between the normalised region parameters ``(cx/W, cy/H, sx/W, sy/H)``
of node ``n`` of student and teacher, averaged over batch, time, nodes and parameters, and
over stages, times ``distill_weight`` (1; the paper gives no weight).

**Evaluation** (:func:`evaluate`): ``1-clip`` = 16 segment centres, shorter side 256, centre
crop 224 (paper Table 8); ``3x2`` = 3 crops of 256 x 256 x 2 clips (segment centres and
starts) with the logits averaged over the 6 views (the paper's main table, the authors'
``--full_res --test_crops=3 --twice_sample``). Top-1 and (above 5 classes) top-5 in percent, and with
Something-Else boxes the object-centric distance (Appendix F.3) of every DyReg stage.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from data_gen.ssv2 import SomethingSomethingV2, collate_boxes

from .metrics import harmonic_mean, object_centric_sums, region_centers
from .models import TSM_STAGES, TSMResNet, collect_aux, param_groups, tsm_resnet
from .runs import (AMP_MODES, Dist, Precision, Settings, all_sum, autocast, check_resume, check_settings, git_commit,
                   init_distributed, load_checkpoint, prepare_run_dir, process_device, progress_bar, provenance_fields,
                   resolve_amp, rounded, save_checkpoint, set_rng_state, truncate_log)

#: The authors' settings (paper Section 4.1, ``train_model.sh``, ``opts.py``).
PAPER_RECIPE = dict(depth=50, num_frames=16, crop=224, pretrained=True, graph_stages=("res3", "res4", "res5"),
                    regions="dyreg", epochs=60, lr_steps=(20, 30, 40), batch_size=10, base_lr=0.001, base_batch=10,
                    momentum=0.9, weight_decay=5e-4, dropout=0.5, grad_clip=0.0)
#: No gradient clipping, as the authors' code: ``train_model.sh`` passes ``--gd 20``, which their
#: ``main_standard.py`` parses but never applies (``dyreg_spec.md`` 5.1; TSM's own code clips at 20,
#: ``--grad-clip 20``).
#: Where each stage's DyReg block sits (the names :func:`~dyreg_edu.models.collect_aux` reports).
STAGE_MODULES = {stage: f"backbone.{layer}.{index}.conv2.graph" for stage, ((layer, index), _) in TSM_STAGES.items()}


@dataclass
class SSv2Config(Settings):
    """Everything that defines a run (saved in every checkpoint and result file)."""

    root: str = ""
    # data (data_gen.ssv2.SomethingSomethingV2)
    num_frames: int = 16
    crop: int = 224
    test_crop: int = 256  # the 3 x 2 protocol's crops (full resolution)
    classes: list | None = None  # a class subset (templates or indices), e.g. Mini-SSv2's 87
    fraction: float | None = None  # a seeded random part of the training split
    val_fraction: float | None = None  # of the validation split (for quick evaluations)
    data_seed: int = 0
    annotations: str | None = None  # Something-Else boxes (a merged JSON) for the object-centric distance
    # model (dyreg_edu.models.tsm_resnet)
    depth: int = 50
    graph_stages: tuple = ("res3", "res4", "res5")
    regions: str = "dyreg"
    pretrained: bool = True
    dropout: float = 0.5
    # optimisation
    epochs: float = 60
    lr_steps: tuple = (20, 30, 40)
    batch_size: int = 10  # the global batch: all processes, all accumulation steps
    accumulate: int = 1
    base_lr: float = 0.001  # for a batch of base_batch; scaled linearly
    base_batch: int = 10
    momentum: float = 0.9
    weight_decay: float = 5e-4
    grad_clip: float = 0.0  # the gradient norm's limit; 0: none, as the authors' code (see PAPER_RECIPE)
    fc_lr5: bool = True
    # distillation kick-start (Appendix F.1; our reading)
    distill_from: dict = field(default_factory=dict)  # {stage: teacher checkpoint}
    distill_fraction: float = 0.1
    distill_weight: float = 1.0
    # bookkeeping
    eval_every_epochs: float = 1.0
    checkpoint_minutes: float = 10.0
    workers: int = 4
    seed: int = 0
    device: str = "cuda"
    amp: str = "auto"  # auto: bf16 on a GPU with it, fp16 + gradient scaler without (T4), fp32 on CPU; bf16|fp16|off
    sync_bn: bool = True  # on CUDA with several processes

    @classmethod
    def migrate(cls, d: dict) -> dict:
        """Before ``amp`` named a precision, ``True`` was bf16 on CUDA (``auto`` there) and fp32 on the CPU."""
        if isinstance(d.get("amp"), bool):
            d = {**d, "amp": "auto" if d["amp"] else "off"}
        return d

    @property
    def lr(self) -> float:
        """The base learning rate scaled with the batch: ``base_lr * batch_size / base_batch``."""
        return self.base_lr * self.batch_size / self.base_batch


def check_config(cfg: SSv2Config, world: int = 1) -> None:
    """Raise a one-line ``ValueError`` naming the first bad setting."""
    if not (isinstance(cfg.accumulate, int) and cfg.accumulate >= 1):
        raise ValueError(f"accumulate must be a positive number of micro-batches, got {cfg.accumulate!r}")
    per_step = world * cfg.accumulate
    check_settings(cfg, [
        ("root", bool(cfg.root), "the folder of the download"),
        ("graph_stages", set(cfg.graph_stages) <= set(TSM_STAGES), f"a subset of {tuple(TSM_STAGES)}"),
        ("regions", cfg.regions in ("dyreg", "fixed"), "'dyreg' or 'fixed'"),
        ("batch_size", cfg.batch_size >= per_step and cfg.batch_size % per_step == 0,
         f"a multiple of processes x accumulate = {per_step}"),
        ("epochs", cfg.epochs > 0, "positive"),
        ("distill_from", set(cfg.distill_from) <= set(cfg.graph_stages), "stages of this model's graphs"),
        ("distill_fraction", 0 <= cfg.distill_fraction <= 1, "in [0, 1]"),
        ("grad_clip", cfg.grad_clip >= 0, "0 (no clipping) or a positive gradient norm"),
        ("amp", cfg.amp in AMP_MODES, f"one of {AMP_MODES}"),
    ])
    resolve_amp(cfg.amp, cfg.device)  # fp16 on the CPU, or bf16 on a GPU without it: one clear error


# --------------------------------------------------------------------------- parts


def build_data(cfg: SSv2Config, split: str, mode: str | None = None) -> SomethingSomethingV2:
    """The training split, or the validation split in ``mode`` ``"val"`` (1 clip) or ``"test"`` (3x2)."""
    fraction = cfg.fraction if split == "train" else cfg.val_fraction
    return SomethingSomethingV2(cfg.root, split, num_frames=cfg.num_frames, mode=mode,
                                crop=cfg.test_crop if mode == "test" else cfg.crop, fraction=fraction, classes=cfg.classes,
                                seed=cfg.data_seed, annotations=cfg.annotations if split != "train" else None,
                                output="dict")


def build_model(cfg: SSv2Config, num_classes: int, *, input_size: int | None = None) -> TSMResNet:
    """TSM-ResNet with the graphs of ``cfg``; ``input_size`` (e.g. 256) builds it for larger frames with
    the parameters of ``cfg.crop`` (full-resolution evaluation)."""
    size = input_size or cfg.crop
    return tsm_resnet(cfg.depth, num_classes=num_classes, num_frames=cfg.num_frames, graph_stages=cfg.graph_stages,
                      regions=cfg.regions, pretrained=cfg.pretrained and input_size is None, dropout=cfg.dropout,
                      input_size=size, train_size=cfg.crop if size != cfg.crop else None)


def at_size(model: TSMResNet, size: int) -> TSMResNet:
    """``model`` for ``size x size`` frames with the same parameters (the authors' ``--full_res``)."""
    if size == model.input_size or not model.graph_stages:
        return model
    other = tsm_resnet(50, num_classes=model.classifier.out_features, num_frames=model.num_frames,
                       graph_stages=model.graph_stages, regions=model.regions, dropout=model.dropout.p,
                       dropout_on=model.dropout_on, input_size=size, train_size=model.train_size)
    other.load_state_dict(model.state_dict())  # graphs exist only in ResNet-50
    return other.to(next(model.parameters()).device).eval()


def learning_rate_factor(cfg: SSv2Config, epoch: float) -> float:
    """The step schedule: ``0.1 ** (number of lr_steps passed)``."""
    return 0.1 ** sum(epoch >= s for s in cfg.lr_steps)


# --------------------------------------------------------------------------- processes (dyreg_edu.runs: Dist, ...)


class StepBatches(torch.utils.data.Sampler):
    """The micro-batches of this process from ``start`` to ``stop`` (training steps).

    The global batch of step ``s`` is a slice of the epoch's order (a seeded permutation of
    ``(seed, epoch)``); process ``r`` of ``W`` takes its ``r``-th of ``W`` consecutive shares, cut into
    ``accumulate`` micro-batches, so that ``W`` processes see the micro-batches that one process with
    ``W`` times the accumulation sees (the same BatchNorm batches: the same losses). Items are
    ``(index, epoch)`` keys, so the crops and frames of a sample depend on nothing else.
    """

    def __init__(self, num_videos: int, cfg: SSv2Config, proc: Dist, start: int, stop: int):
        self.num_videos, self.cfg, self.proc, self.start, self.stop = num_videos, cfg, proc, start, stop
        self.steps_per_epoch = num_videos // cfg.batch_size

    def order(self, epoch: int) -> Tensor:
        return torch.randperm(self.num_videos, generator=torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch))

    def __iter__(self):
        order, order_epoch, B = None, None, self.cfg.batch_size
        for step in range(self.start, self.stop):
            epoch, j = divmod(step, self.steps_per_epoch)
            if epoch != order_epoch:
                order, order_epoch = self.order(epoch), epoch
            mine = order[j * B:(j + 1) * B].chunk(self.proc.world)[self.proc.rank]
            for part in mine.chunk(self.cfg.accumulate):
                yield [(i, epoch) for i in part.tolist()]

    def __len__(self) -> int:
        return (self.stop - self.start) * self.cfg.accumulate


# --------------------------------------------------------------------------- evaluation


def topk_correct(logits: Tensor, labels: Tensor, ks=(1, 5)) -> list[int]:
    """How many of ``labels [B]`` are among the top ``k`` of ``logits [B, K]``, for each ``k``."""
    top = logits.topk(min(max(ks), logits.shape[-1]), -1).indices
    hit = top == labels[:, None]
    return [int(hit[:, :k].any(-1).sum()) for k in ks]


def stage_regions(aux: dict) -> dict[str, tuple[Tensor, int, int]]:
    """``{stage: (regions [B, T, N, 4], map height, map width)}`` from :func:`collect_aux`'s record."""
    out = {}
    for stage, name in STAGE_MODULES.items():
        if name in aux and "regions" in aux[name]:
            kernels = aux[name]["kernels"]
            out[stage] = (aux[name]["regions"].float(), kernels.shape[-2], kernels.shape[-1])
    return out


@torch.no_grad()
def evaluate(model: TSMResNet, data: SomethingSomethingV2, *, batch_size: int = 8, cfg: SSv2Config | None = None,
             proc: Dist | None = None, workers: int = 0, progress: bool = False) -> dict:
    """Top-1 and (with more than 5 classes) top-5 accuracy (percent) of ``model`` on ``data``, every video once.

    ``data.mode == "test"``: the logits of the 6 views (3 crops x 2 clips) are averaged. The
    model is run at ``data.crop`` (:func:`at_size`). With Something-Else boxes in ``data``
    and DyReg stages in the model, adds ``object_centric`` ``{stage: {precision, recall,
    score}}`` (Appendix F.3, over all views) and their mean ``score``. Under ``torchrun`` each
    process takes every ``W``-th video and the counts are summed.
    """
    proc = proc or Dist()
    net = at_size(model.module if hasattr(model, "module") else model, data.crop).eval()
    device = next(net.parameters()).device
    ctx = autocast(cfg.device, cfg.amp) if cfg is not None else contextlib.nullcontext()
    mine = list(range(proc.rank, len(data), proc.world))
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(data, mine), batch_size=batch_size,
                                         num_workers=workers, collate_fn=collate_boxes)
    counts, sums, num_classes = [0.0, 0.0, 0.0, 0.0], {}, net.classifier.out_features
    bar = progress_bar(loader, progress, f"eval {data.mode}")
    for batch in bar:
        frames, labels = batch["frames"].to(device), batch["label"].to(device)
        views = frames.shape[1] if frames.dim() == 6 else 1
        video = rearrange(frames, "b v t c h w -> (b v) t c h w") if views > 1 else frames
        with ctx, collect_aux(net) as aux:
            logits = net(video).float()
        logits = rearrange(logits, "(b v) k -> b v k", v=views).mean(1)
        top1, top5 = topk_correct(logits, labels)
        counts = [counts[0] + top1, counts[1] + top5, counts[2] + len(labels),
                  counts[3] + F.cross_entropy(logits, labels, reduction="sum").item()]
        if "boxes" in batch:
            boxes = batch["boxes"].to(device)
            boxes = rearrange(boxes, "b v t d x -> (b v) t d x") if views > 1 else boxes
            for stage, (regions, h, w) in stage_regions(aux).items():
                part = object_centric_sums(region_centers(regions, h, w), boxes, data.crop)
                sums[stage] = [a + float(b) for a, b in zip(sums.get(stage, [0.0] * 4), part)]
    counts = all_sum(counts, proc)
    out = {"top1": 100 * counts[0] / counts[2], "loss": counts[3] / counts[2], "videos": int(counts[2]),
           "views": data.num_views, "crop": data.crop}
    if num_classes > 5:  # with 5 classes or fewer every label is among the top 5
        out["top5"] = 100 * counts[1] / counts[2]
    if sums or (data.annotations is not None and net.graph_stages):
        stages = {}
        for stage in net.graph_stages:
            s = all_sum(sums.get(stage, [0.0] * 4), proc)
            p, r = s[0] / max(s[2], 1), s[1] / max(s[3], 1)
            stages[stage] = {"precision": p, "recall": r, "score": harmonic_mean(p, r)}
        out["object_centric"] = {**stages, "score": sum(v["score"] for v in stages.values()) / len(stages)}
    return out


def evaluate_both(model, cfg: SSv2Config, *, proc: Dist | None = None, progress: bool = False) -> dict:
    """Both protocols on the validation split: ``{"1-clip": ..., "3x2": ...}``."""
    return {name: evaluate(model, build_data(cfg, "validation", mode), batch_size=max(1, 8 // (6 if mode == "test" else 1)),
                           cfg=cfg, proc=proc, workers=cfg.workers, progress=progress)
            for name, mode in (("1-clip", "val"), ("3x2", "test"))}


# --------------------------------------------------------------------------- distillation


def load_model_file(path, *, num_frames: int = 16) -> TSMResNet:
    """A model from our checkpoint (``checkpoint.pt``: ``model`` + ``config``) or the authors'
    ``.pth.tar`` (:func:`~dyreg_edu.official.tsm_from_official`), in eval mode."""
    ckpt = load_checkpoint(path, keys=(), expected="a checkpoint of dyreg_edu.train_ssv2 ('model' and 'config') "
                                                   "or the authors' released .pth.tar ('state_dict')")
    if "config" in ckpt and "model" in ckpt:
        cfg = dataclasses.replace(SSv2Config.from_dict(ckpt["config"]), pretrained=False)
        model = build_model(cfg, ckpt["model"]["classifier.weight"].shape[0])
        model.load_state_dict(ckpt["model"])
        return model.eval()
    from .official import tsm_from_official

    return tsm_from_official(ckpt, num_frames=num_frames)


def normalised_regions(regions: Tensor, height: int, width: int) -> Tensor:
    """``[..., N, 4]`` (cx, cy, sx, sy) in map pixels -> divided by the map's width and height."""
    return regions / regions.new_tensor([width, height, width, height])


def distillation_loss(student_aux: dict, teacher_aux: dict[str, dict]) -> Tensor:
    """Our reading of the kick-start (Appendix F.1): mean over the distilled stages of the mean
    squared difference of the normalised region parameters, node by node."""
    student = stage_regions(student_aux)
    losses = []
    for stage, aux in teacher_aux.items():
        regions, h, w = student[stage]
        target, th, tw = stage_regions(aux)[stage]
        losses.append(F.mse_loss(normalised_regions(regions, h, w), normalised_regions(target, th, tw)))
    return torch.stack(losses).mean()


# --------------------------------------------------------------------------- the loop


def train(cfg: SSv2Config, out_dir, *, resume: bool = False, max_steps: int | None = None,
          max_minutes: float | None = None, progress: bool = True, command: str | None = None,
          final_eval: bool = True) -> dict:
    """Train ``cfg`` into ``out_dir`` (``log.jsonl``, ``checkpoint.pt``, ``result.json``); returns the result.

    Stops after ``max_steps`` optimiser steps counted from the start of training (default:
    ``epochs`` epochs) or ``max_minutes`` of this call, and saves a checkpoint. ``resume=True``
    continues from ``out_dir/checkpoint.pt`` with the same losses as a straight run. Under
    ``torchrun`` every process calls this; process 0 writes the files.
    """
    proc = init_distributed(cfg.device)
    check_config(cfg, proc.world)
    out = Path(out_dir)
    ckpt_path, log_path = prepare_run_dir(out, resume)
    if proc.main:
        out.mkdir(parents=True, exist_ok=True)
    device = process_device(cfg.device, proc)
    train_data = build_data(cfg, "train")
    val_data = build_data(cfg, "validation", "val")
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, len(train_data.classes)).to(device)
    optimizer = torch.optim.SGD(param_groups(model, cfg.lr, cfg.weight_decay, fc_lr5=cfg.fc_lr5), lr=cfg.lr,
                                momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    precision = Precision(resolve_amp(cfg.amp, cfg.device), device.type)  # fp16 brings a gradient scaler
    state = {"step": 0, "seconds": 0.0, "best_top1": None, "commit": git_commit()}
    if resume:
        ckpt = load_checkpoint(ckpt_path)
        check_resume(SSv2Config.from_dict(ckpt["config"]), cfg, ckpt_path, device=cfg.device, workers=cfg.workers)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        precision.load_state_dict(ckpt.get("scaler"))
        state = ckpt["state"]
        set_rng_state(ckpt["rng"])
        if proc.main:
            truncate_log(log_path, state["step"])
    elif proc.main and log_path.exists():
        log_path.unlink()
    teachers = {stage: load_model_file(path, num_frames=cfg.num_frames).to(device) for stage, path in cfg.distill_from.items()}
    net = model
    if proc.world > 1:
        if device.type == "cuda" and cfg.sync_bn:
            net = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)

    steps_per_epoch = len(train_data) // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size must be at most the {len(train_data)} training videos, got {cfg.batch_size}")
    total = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    stop = min(total, max_steps if max_steps is not None else total)
    distill_steps = math.ceil(cfg.distill_fraction * total) if teachers else 0
    eval_every = max(1, round(cfg.eval_every_epochs * steps_per_epoch))
    sampler = StepBatches(len(train_data), cfg, proc, state["step"], stop)
    loader = torch.utils.data.DataLoader(train_data, batch_sampler=sampler, num_workers=cfg.workers,
                                         collate_fn=collate_boxes, generator=torch.Generator(),
                                         pin_memory=device.type == "cuda", persistent_workers=False)
    deadline = time.time() + 60 * max_minutes if max_minutes is not None else math.inf
    last_save = time.time()
    bar = progress_bar(range(state["step"], stop), progress and proc.main, "ssv2", initial=state["step"], total=stop)
    batches = iter(loader)
    log = log_path.open("a") if proc.main else None
    try:
        while state["step"] < stop and time.time() < deadline:
            tic, step = time.time(), state["step"]
            factor = learning_rate_factor(cfg, step / steps_per_epoch)
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * factor
            net.train()
            optimizer.zero_grad(set_to_none=True)
            totals = [0.0, 0.0, 0.0, 0.0]  # loss sum, correct, videos, distillation
            for micro in range(cfg.accumulate):
                batch = next(batches)
                frames, labels = batch["frames"].to(device, non_blocking=True), batch["label"].to(device)
                sync = micro == cfg.accumulate - 1 or proc.world == 1
                with (contextlib.nullcontext() if sync else net.no_sync()), precision.autocast():
                    with collect_aux(model) as aux:
                        logits = net(frames).float()
                    loss = F.cross_entropy(logits, labels)
                    distill = torch.zeros((), device=device)
                    if step < distill_steps:
                        with torch.no_grad():
                            teacher_aux = {}
                            for stage, teacher in teachers.items():
                                with collect_aux(teacher) as t_aux:
                                    teacher(frames)
                                teacher_aux[stage] = t_aux
                        distill = distillation_loss(aux, teacher_aux)
                    # every process's share of the global batch counts once in the mean
                    precision.backward(((loss + cfg.distill_weight * distill) * len(labels) * proc.world) / cfg.batch_size)
                totals = [totals[0] + loss.item() * len(labels), totals[1] + topk_correct(logits, labels, (1,))[0],
                          totals[2] + len(labels), totals[3] + distill.item() * len(labels)]
            if cfg.grad_clip:
                precision.unscale(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            precision.step(optimizer)
            totals = all_sum(totals, proc)
            state["step"] = step + 1
            state["seconds"] += time.time() - tic
            record = {"step": state["step"], "loss": round(totals[0] / totals[2], 6),
                      "accuracy": round(100 * totals[1] / totals[2], 2), "lr": optimizer.param_groups[0]["lr"],
                      "videos_per_second": round(cfg.batch_size / (time.time() - tic), 2)}
            if step < distill_steps:
                record["distill"] = round(totals[3] / totals[2], 6)
            if state["step"] % eval_every == 0 or state["step"] == total:
                tic = time.time()
                val = evaluate(model, val_data, cfg=cfg, proc=proc, workers=cfg.workers)
                state["seconds"] += time.time() - tic
                record.update({f"val_{k}": round(val[k], 3) for k in ("top1", "top5") if k in val})
                state["best_top1"] = max(state["best_top1"] or 0.0, val["top1"])
            if proc.main:
                log.write(json.dumps(record) + "\n")
                log.flush()
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.3f}", vps=record["videos_per_second"])
                if time.time() - last_save > 60 * cfg.checkpoint_minutes:
                    save_checkpoint(ckpt_path, model, optimizer, cfg, state, scaler=precision.state_dict())
                    last_save = time.time()
    finally:
        if log is not None:
            log.close()
        bar.close()
    if proc.main:
        save_checkpoint(ckpt_path, model, optimizer, cfg, state, scaler=precision.state_dict())
    result = {"steps": state["step"], "total_steps": total, "finished": state["step"] >= total,
              "epochs": round(state["step"] / steps_per_epoch, 4), "train_videos": state["step"] * cfg.batch_size,
              "classes": len(train_data.classes), "processes": proc.world}
    if final_eval:
        result["evaluation"] = rounded(evaluate_both(model, cfg, proc=proc))
    result.update(provenance_fields(command or "dyreg_edu.train_ssv2.train(...)", state["seconds"], str(device)))
    if state.get("commit") and state["commit"] != result["commit"]:
        result["result_commit"], result["commit"] = result["commit"], state["commit"]
    result["config"] = cfg.to_dict()
    if proc.main:
        (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    if proc.world > 1:
        dist.barrier()
    return result


# --------------------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dyreg_edu.train_ssv2",
                                description="Train or evaluate TSM + DyReg-GNN on Something-Something V2 (the paper's recipe).")
    p.add_argument("--root", required=True, help="the unpacked official download")
    p.add_argument("--out", help="run directory: log.jsonl, checkpoint.pt, result.json")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--evaluate", metavar="CHECKPOINT", help="only evaluate (both protocols): ours or the authors' .pth.tar")
    p.add_argument("--graph-stages", default="res3,res4,res5", help="comma-separated subset of res3,res4,res5, or 'none' (TSM)")
    p.add_argument("--regions", default="dyreg", help="dyreg or fixed")
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--num-frames", type=int, default=16)
    p.add_argument("--crop", type=int, default=224)
    p.add_argument("--no-pretrained", action="store_true", help="random initialisation instead of ImageNet")
    p.add_argument("--classes", help="a file with one template a line (e.g. Mini-SSv2's 87), a class subset")
    p.add_argument("--fraction", type=float, help="train on this seeded random part of the training split")
    p.add_argument("--val-fraction", type=float, help="evaluate on this part of the validation split")
    p.add_argument("--annotations", help="Something-Else boxes (merged JSON) for the object-centric distance")
    p.add_argument("--epochs", type=float, default=60)
    p.add_argument("--lr-steps", default="20,30,40", help="epochs where the learning rate is divided by 10")
    p.add_argument("--batch-size", type=int, default=10, help="global batch (all GPUs and accumulation steps)")
    p.add_argument("--accumulate", type=int, default=1, help="micro-batches per step on each process")
    p.add_argument("--base-lr", type=float, default=0.001, help="learning rate for a batch of 10 (scaled linearly)")
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--grad-clip", type=float, default=0.0,
                   help="clip the gradient norm to this (default 0: none, as the authors' code; TSM's clips at 20)")
    p.add_argument("--distill", action="append", default=[], metavar="STAGE=CHECKPOINT",
                   help="teacher of one stage for the kick-start (repeat per stage)")
    p.add_argument("--distill-fraction", type=float, default=0.1)
    p.add_argument("--distill-weight", type=float, default=1.0)
    p.add_argument("--eval-every-epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, help="stop after this many steps from the start of training")
    p.add_argument("--max-minutes", type=float, help="stop (and save) after this many minutes of this call")
    p.add_argument("--workers", type=int, default=4, help="DataLoader processes (decoding) per GPU")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--amp", default="auto", metavar="{auto,bf16,fp16,off}",
                   help="mixed precision on CUDA: auto (default) is bf16 on a GPU that has it and fp16 with a gradient "
                   "scaler on one that does not (a T4); off: fp32. The CPU runs in fp32 unless bf16 is asked for")
    p.add_argument("--no-amp", action="store_true", help="the same as --amp off")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-final-eval", action="store_true", help="skip the two protocols at the end")
    p.add_argument("--no-progress", action="store_true")
    return p


def config_from_args(args) -> SSv2Config:
    stages = () if args.graph_stages in ("", "none") else tuple(s.strip() for s in args.graph_stages.split(","))
    classes = None
    if args.classes:
        classes = [line.strip() for line in Path(args.classes).read_text().splitlines() if line.strip()]
    distill = {}
    for item in args.distill:
        if "=" not in item:
            raise ValueError(f"--distill must be STAGE=CHECKPOINT, got {item!r}")
        stage, path = item.split("=", 1)
        distill[stage] = path
    return SSv2Config(root=args.root, num_frames=args.num_frames, crop=args.crop, classes=classes,
                      fraction=args.fraction, val_fraction=args.val_fraction, annotations=args.annotations,
                      depth=args.depth, graph_stages=stages, regions=args.regions, pretrained=not args.no_pretrained,
                      dropout=args.dropout, epochs=args.epochs, lr_steps=tuple(float(s) for s in args.lr_steps.split(",") if s),
                      batch_size=args.batch_size, accumulate=args.accumulate, base_lr=args.base_lr, grad_clip=args.grad_clip,
                      distill_from=distill, distill_fraction=args.distill_fraction, distill_weight=args.distill_weight,
                      eval_every_epochs=args.eval_every_epochs, workers=args.workers, seed=args.seed,
                      device=args.device, amp="off" if args.no_amp else args.amp)


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    command = "python -m dyreg_edu.train_ssv2 " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    try:
        cfg = config_from_args(args)
        if args.evaluate:
            proc = init_distributed(cfg.device)
            model = load_model_file(args.evaluate, num_frames=cfg.num_frames).to(process_device(cfg.device, proc))
            cfg = dataclasses.replace(cfg, graph_stages=model.graph_stages, regions=model.regions)
            result = {"checkpoint": args.evaluate, **rounded(evaluate_both(model, cfg, proc=proc, progress=not args.no_progress)),
                      **provenance_fields(command, 0.0, cfg.device)}
            if proc.main:
                print(json.dumps(result, indent=2))
            return 0
        if not args.out:
            raise ValueError("--out is required to train (or pass --evaluate CHECKPOINT)")
        if args.max_steps is not None and args.max_steps < 0:
            raise ValueError(f"max_steps must be at least 0, got {args.max_steps}")
        result = train(cfg, args.out, resume=args.resume, max_steps=args.max_steps, max_minutes=args.max_minutes,
                       progress=not args.no_progress, command=command, final_eval=not args.no_final_eval)
    except (ValueError, FileNotFoundError, KeyError) as error:
        p.exit(2, f"{p.prog}: error: {error}\n")
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if int(os.environ.get("RANK", 0)) == 0:
        print(json.dumps({k: result.get(k) for k in ("steps", "epochs", "evaluation", "wall_seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
