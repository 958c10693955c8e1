"""Training DyReg-GNN on MultiSyncMNIST: the settings, one readable loop, evaluation and the CLI.

    python -m dyreg_edu.train --variant dyreg --scale mini --out runs/mini/dyreg [--resume]

or ``train(config("dyreg", "mini"), "runs/mini/dyreg")``. **Scales**: ``paper``, the paper's data and model
(Appendix E.1; a GPU); ``mini``, 64 x 64 videos of 3 digits and a small ResNet whose layers before the graph
are learned once and frozen (:mod:`dyreg_edu.mini`), minutes on a 2-core CPU. **Recipes**: ``paper``, the
paper's SGD as written; ``paper_scaled``, the same lr per video at our batch (:func:`linear_scaled_lr`; the
literal one stalled at the paper scale, ``results/multisync/attempts/``); ``fast``, AdamW (the mini default).
All clip the gradient's norm at 5 (ours; ``--grad-clip 0`` as the authors' code). **Exact resume**: a step's
batch is a pure function of ``(seed, step)`` and a checkpoint holds the model, optimiser and random state.
**Precision** (``--amp``): ``auto`` trains in bf16 on a GPU that has it, in fp16 with a gradient scaler (whose
state the checkpoint keeps) on one that does not (a T4), in fp32 on the CPU (:func:`dyreg_edu.runs.resolve_amp`).
Under ``torchrun`` each process trains on its share of a step's batch. Research switches (none in the paper)
are reached through ``hooks`` (:mod:`dyreg_edu.experiments`); a run's plumbing is :mod:`dyreg_edu.runs`.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from data_gen.multisync import LABELS, MultiSyncMNIST, task_options

from . import experiments, mini
from .feature_cache import FeatureCache
from .inputs import as_input, build_data, data_checks, model_inputs, model_kwargs  # noqa: F401  (for the chapters)
from .files import check_keys
from .evaluation import evaluate, gammas, make_result, recompute_batchnorm, validation  # noqa: F401  (evaluate: chapters)
from .models import MINI_BACKBONE, PAPER_BACKBONE, SyncMNISTModel
from .dyreg import DyRegBlock
from .runs import (AMP_MODES, Precision, Settings, StepLog, check_settings, compile_model, git_commit,
                   init_distributed, keyword_values, load_checkpoint, load_weights, out_of_time, positive_int, process_device,
                   progress_bar, python_call, resolve_amp, restore, rounded, save_checkpoint)
from .variants import BLOCK_VARIANTS, ORACLE_VARIANTS

MODEL_VARIANTS = ("resnet18",) + BLOCK_VARIANTS


@dataclass
class TrainConfig(Settings):
    """Everything that defines a training run (saved in every checkpoint and result file)."""

    variant: str = "dyreg"
    scale: str = "mini"
    recipe: str = "fast"
    # data (data_gen.multisync.MultiSyncMNIST): a task's preset (TASKS; a rung of the ladder), then overrides
    task: str = "mini"
    size: int = 64
    num_digits: int = 3
    num_frames: int = 8
    train_videos: int = 600_000
    val_videos: int = 2_000
    data_seed: int = 0
    digit_size: int | None = None  # stored pixels; None: scales with size (7 at 64, 14 at 128)
    max_step: float | None = None  # largest step a frame, stored pixels; None: scales with size (2.5 at 64)
    layout: str = "free"  # "halves": one digit a half (the where rung)
    label: str = "pair"  # the paper's 56 classes; "upper" (10), "sync" (2)
    p_no_sync: float | None = None  # the share of videos without synchronous digits (None: 1 / 56)
    # model (dyreg_edu.models.SyncMNISTModel)
    widths: tuple = MINI_BACKBONE["widths"]
    blocks: tuple = MINI_BACKBONE["blocks"]
    stem: str = MINI_BACKBONE["stem"]
    num_nodes: int = 9
    dropout: float = 0.0
    dropout_on: str = "map"
    classifier_init: str = "torch"
    temporal_shift: bool = False  # TSM's shift before layer3 (the motion-aware plain control)
    padding: str = "zeros"  # the backbone's: "circular" hides where a digit is from the plain model
    block: dict = field(default_factory=dict)  # DyRegBlock keywords, e.g. {"fixed_size": 2.0}
    # the mini design (dyreg_edu.mini)
    backbone: str = "digits"  # "digits": pretrained by mini.pretrain_digits; "scratch"
    freeze_backbone: bool = True
    digit_steps: int = mini.DEFAULT_DIGIT_STEPS  # pretraining steps of the digit backbone
    head_init: str = "none"  # "resnet18": graph variants start from the trained plain model's layer3 + classifier
    # research switches, none in the paper (dyreg_edu.experiments): {name: {setting: value}}
    experiments: dict = field(default_factory=dict)
    # optimisation
    epochs: float = 1.0
    batch_size: int = 32  # the global batch: all processes, all accumulation steps
    accumulate: int = 1
    optimizer: str = "adamw"
    lr: float = 2e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    warmup_steps: int = 100
    grad_clip: float = 5.0
    # bookkeeping
    eval_every: int = 250
    full_curve: bool = False  # also validate before the first step and on still videos each time
    feature_cache: bool = False  # the frozen backbone's map computed once per video (dyreg_edu.feature_cache)
    bn_batches: int = 0  # before each validation, recompute BatchNorm statistics over this many training batches
    log_every: int = 1  # per-step records are written in groups of this many (one GPU sync per group)
    checkpoint_minutes: float = 3.0
    seed: int = 0
    device: str = "cpu"
    amp: str = "auto"  # auto: bf16 on a GPU with it, fp16 + gradient scaler without (T4), fp32 on CPU; bf16|fp16|off
    channels_last: bool = True  # on CUDA
    compile: bool = False

    @property
    def steps_per_epoch(self) -> int:
        return max(1, self.train_videos // self.batch_size)

    @property
    def total_steps(self) -> int:
        """The length of the learning-rate schedule (``epochs`` epochs)."""
        return max(1, math.ceil(self.epochs * self.steps_per_epoch))

    @classmethod
    def migrate(cls, d: dict) -> dict:
        """Configs saved before ``experiments`` existed keep their research settings in it; before tasks, the
        task was the scale's; before ``amp`` named a precision, ``True`` was bf16 on CUDA (``auto`` there)."""
        d = {"task": d.get("scale", "mini"), **experiments.migrate_config(d)}
        if isinstance(d.get("amp"), bool):
            d["amp"] = "auto" if d["amp"] else "off"
        return d


#: The paper's learning rate (Section 4.2) and the batch it belongs to: the authors' runs use
#: 10 videos a step (dyreg_spec.md, 5.1); the MultiSyncMNIST batch is not stated.
PAPER_LR, PAPER_BATCH = 1e-3, 10
PAPER_SGD = dict(optimizer="sgd", lr=PAPER_LR, momentum=0.9, weight_decay=5e-4, schedule="constant", warmup_steps=0)
#: The presets, one table: ``config(variant, scale, recipe)`` takes the scale's row, then the
#: recipe's (default: the scale's), then the variant's exceptions at that scale.
PRESETS = {
    "scales": {  # the model, the design and the run; the data is the task of the scale's name unless told
        "mini": dict(train_videos=600_000, val_videos=2_000, **MINI_BACKBONE, backbone="digits", freeze_backbone=True,
                     head_init="resnet18", epochs=0.12, batch_size=32, dropout=0.0, classifier_init="torch",
                     eval_every=250),
        "paper": dict(train_videos=600_000, val_videos=10_000, **PAPER_BACKBONE, backbone="scratch",
                      freeze_backbone=False, epochs=10.0, batch_size=128, dropout=0.5, dropout_on="map",
                      classifier_init="authors", eval_every=1000, bn_batches=16, log_every=50),
    },
    "recipes": {
        "paper": PAPER_SGD,
        "paper_scaled": PAPER_SGD,  # with lr = linear_scaled_lr(batch_size), set in config()
        "fast": dict(optimizer="adamw", lr=2e-3, weight_decay=1e-4, schedule="cosine", warmup_steps=100),
    },
    "default_recipe": {"mini": "fast", "paper": "paper_scaled"},
    # the mini plain model trains first, twice as long (to its motion-blind plateau); graph variants start from it
    "variants": {"mini": {"resnet18": dict(epochs=0.16, head_init="none")}},
}
SCALES, RECIPES, DEFAULT_RECIPES = PRESETS["scales"], PRESETS["recipes"], PRESETS["default_recipe"]


def linear_scaled_lr(batch_size: int) -> float:
    """The paper's learning rate for ``batch_size`` videos a step by the linear scaling rule
    (Goyal et al., 2017): the same lr per video. 0.0128 for a batch of 128."""
    return PAPER_LR * batch_size / PAPER_BATCH


def config(variant: str = "dyreg", scale: str = "mini", recipe: str | None = None, **overrides) -> TrainConfig:
    """The configuration of ``variant`` at ``scale`` with ``recipe`` (default: the scale's) on the data of
    ``task`` (an override; default: the scale's own, ``data_gen.multisync.TASKS``); ``overrides`` replace any field."""
    for name, value, choices in (("variant", variant, MODEL_VARIANTS), ("scale", scale, tuple(SCALES))):
        if value not in choices:
            raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    recipe = DEFAULT_RECIPES[scale] if recipe is None else recipe
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {tuple(RECIPES)}, got {recipe!r}")
    task = overrides.pop("task", scale)
    settings = {**SCALES[scale], "task": task, **task_options(task), **RECIPES[recipe],
                **PRESETS["variants"].get(scale, {}).get(variant, {})}
    cfg = dataclasses.replace(TrainConfig(variant=variant, scale=scale, recipe=recipe, **settings), **overrides)
    if recipe == "paper_scaled" and "lr" not in overrides:
        cfg = dataclasses.replace(cfg, lr=linear_scaled_lr(cfg.batch_size))
    if variant in ORACLE_VARIANTS and "num_nodes" not in overrides:
        cfg = dataclasses.replace(cfg, num_nodes=cfg.num_digits)  # one node per digit box
    check_config(cfg)
    return cfg


def check_config(cfg: TrainConfig, world: int = 1) -> None:
    """Raise a one-line ``ValueError`` naming the first bad setting (the experiments' too)."""
    per_step = world * cfg.accumulate if positive_int(cfg.accumulate) else 1
    check_settings(cfg, [
        ("variant", cfg.variant in MODEL_VARIANTS, f"one of {MODEL_VARIANTS}"),
        ("num_nodes", cfg.variant not in ORACLE_VARIANTS or cfg.num_nodes == cfg.num_digits,
         f"num_digits ({cfg.num_digits}) for the oracle, one node per digit box"),
        ("temporal_shift", isinstance(cfg.temporal_shift, bool), "True or False"),
        ("accumulate", positive_int(cfg.accumulate), "a positive int of micro-batches a step"),
        ("batch_size", positive_int(cfg.batch_size) and cfg.batch_size % per_step == 0,
         f"a positive multiple of processes x accumulate = {per_step}"),
        ("epochs", cfg.epochs > 0, "positive"), ("lr", cfg.lr > 0, "positive"),
        ("grad_clip", cfg.grad_clip >= 0, "0 (no clipping) or a positive gradient norm"),
        ("optimizer", cfg.optimizer in ("sgd", "adamw"), "'sgd' or 'adamw'"),
        ("schedule", cfg.schedule in ("constant", "cosine"), "'constant' or 'cosine'"),
        ("bn_batches", isinstance(cfg.bn_batches, int) and cfg.bn_batches >= 0, "an int >= 0"),
        ("log_every", positive_int(cfg.log_every), "a positive int"),
        ("eval_every", positive_int(cfg.eval_every), "a positive int"),
        ("amp", cfg.amp in AMP_MODES, f"one of {AMP_MODES}"),
        *data_checks(cfg), *mini.checks(cfg),
    ])
    resolve_amp(cfg.amp, cfg.device)  # fp16 on the CPU, or bf16 on a GPU without it: one clear error
    experiments.hooks(cfg)


# --------------------------------------------------------------------------- the model


def build_model(cfg: TrainConfig) -> SyncMNISTModel:
    """The model of ``cfg`` (random weights; :func:`starting_model` loads what a run starts from)."""
    return SyncMNISTModel(cfg.variant, LABELS[cfg.label], cfg.num_nodes, input_size=cfg.size, widths=tuple(cfg.widths),
                          blocks=tuple(cfg.blocks), stem=cfg.stem, dropout=cfg.dropout, dropout_on=cfg.dropout_on,
                          classifier_init=cfg.classifier_init, temporal_shift=cfg.temporal_shift,
                          padding=cfg.padding, **cfg.block, **experiments.hooks(cfg).model_options())


def starting_model(cfg: TrainConfig, *, progress: bool = True) -> tuple[SyncMNISTModel, dict]:
    """The model that a run of ``cfg`` takes its first step from, on the CPU: built with ``cfg.seed``, the
    mini design's digit backbone and plain model's head loaded, then the experiments' setup, the frozen
    parts frozen. Returns it and the result fields that the loaders report."""
    check_config(cfg)
    torch.manual_seed(cfg.seed)
    model, reports = build_model(cfg), {}
    if cfg.backbone == "digits":
        reports["digit_backbone"] = mini.load_digit_backbone(cfg, model, progress=progress)
    if cfg.head_init == "resnet18":  # a graph variant, or the plain model trained on (a control)
        reports["head_init"] = mini.load_resnet_head(cfg, model)
    reports.update(experiments.hooks(cfg).setup(model, cfg))
    if cfg.freeze_backbone:
        mini.freeze_backbone(model)
    return model, reports


def load_trained(path, device: str = "cpu") -> tuple[SyncMNISTModel, MultiSyncMNIST]:
    """A trained checkpoint back as ``(model in eval mode, validation MultiSyncMNIST)``:
    ``model(as_input(val.batch(idx)["video"]))`` gives its logits (the oracle also takes ``boxes=``)."""
    expected = "a trained MultiSyncMNIST checkpoint (written by dyreg_edu.train or runs.export_checkpoint)"
    ckpt = load_checkpoint(path, expected=expected)
    check_keys(ckpt["config"], ("variant", "scale"), source=path, expected=expected + " whose config names its variant")
    cfg = dataclasses.replace(TrainConfig.from_dict(ckpt["config"]), device=device)
    return load_weights(build_model(cfg), ckpt["model"], path).to(device).eval(), build_data(cfg, "val", device)


def set_train_mode(model: SyncMNISTModel, cfg: TrainConfig, hooks) -> None:
    model.train()
    if cfg.freeze_backbone:
        for name in mini.BACKBONE_PARTS:
            getattr(model, name).eval()
    hooks.train_mode(model)


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
    progress_ = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.total_steps - cfg.warmup_steps))
    return 0.5 * (1 + math.cos(math.pi * progress_))


# --------------------------------------------------------------------------- the loop


def train(cfg: TrainConfig, out_dir, *, resume: bool = False, max_steps: int | None = None,
          max_minutes: float | None = None, progress: bool = True, command: str | None = None) -> dict:
    """Train ``cfg`` into ``out_dir`` (``log.jsonl``, ``checkpoint.pt``, ``result.json``) and return the result.
    Stops after ``max_steps`` steps counted from the start of training (default: the whole schedule) or
    ``max_minutes`` of this call, and saves a checkpoint; ``resume=True`` continues from it. Under ``torchrun``
    every process calls this; process 0 writes the files and returns the result (the others ``{}``)."""
    proc = init_distributed(cfg.device)
    check_config(cfg, proc.world)
    device, hooks = process_device(cfg.device, proc), experiments.hooks(cfg)
    model, reports = starting_model(cfg, progress=progress and proc.main)
    model.to(device, memory_format=torch.channels_last if device.type == "cuda" and cfg.channels_last else torch.preserve_format)
    optimizer = make_optimizer(cfg, model)
    precision = Precision(resolve_amp(cfg.amp, cfg.device), device.type)  # fp16 brings a gradient scaler
    state = {"step": 0, "seconds": 0.0, "best_val_accuracy": None, "commit": git_commit()}  # the code that trains
    state = restore(out_dir, cfg, model, optimizer, state, resume=resume, proc=proc, precision=precision,
                    device=cfg.device, compile=cfg.compile)  # how it runs may change between calls, not what it computes
    net = compile_model(model) if cfg.compile else model
    if proc.world > 1:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)

    train_data, val_data = (FeatureCache(model, build_data(cfg, split, "cpu"), cfg, progress=progress and proc.main)
                            if cfg.feature_cache else build_data(cfg, split, device) for split in ("train", "val"))
    loader = train_data.iter_batches(cfg.batch_size, shuffle=True)
    stop = min(cfg.total_steps, max_steps if max_steps is not None else cfg.total_steps)
    deadline = time.time() + 60 * max_minutes if max_minutes is not None else math.inf
    bar = progress_bar(range(state["step"], stop), progress and proc.main, cfg.variant, initial=state["step"], total=stop)
    log = StepLog(Path(out_dir) / "log.jsonl", cfg.batch_size, proc, bar)  # records wait on the device, a group at a time
    if cfg.full_curve and state["step"] == 0 and proc.main:  # where the curve starts
        log.write([{"step": 0, **validation(model, train_data, val_data, cfg, recompute=False)}])
    last_save = time.time()
    while state["step"] < stop and not out_of_time(deadline, proc):
        tic, step = time.time(), state["step"]
        mine = loader.step_indices(step).chunk(proc.world)[proc.rank]  # this process's share of the step's batch
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * learning_rate_factor(cfg, step)
        set_train_mode(model, cfg, hooks)
        optimizer.zero_grad(set_to_none=True)
        sums = [torch.zeros((), device=device), torch.zeros((), device=device)]  # loss x videos, correct answers
        for k, indices in enumerate(mine.chunk(cfg.accumulate)):
            batch = train_data.batch(indices)
            inputs, label = model_kwargs(batch, device), batch["label"].to(device)  # video (or cached features), boxes
            inputs["boxes"] = hooks.boxes(inputs["boxes"], training=True)
            sync = k == cfg.accumulate - 1 or proc.world == 1  # DDP averages the gradients at the last micro-batch
            with (contextlib.nullcontext() if sync else net.no_sync()):
                with precision.autocast():
                    logits, aux = net(**inputs, return_aux=True)
                loss = F.cross_entropy(logits.float(), label) + hooks.loss(step, model, aux, inputs["boxes"])
                precision.backward(loss * (len(indices) * proc.world / cfg.batch_size))  # each video counts once in the mean
            sums = [sums[0] + loss.detach() * len(indices), sums[1] + (logits.argmax(-1) == label).sum()]
        if cfg.grad_clip:
            precision.unscale(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        precision.step(optimizer)
        state["step"] = step + 1
        state["seconds"] += time.time() - tic
        log.add(state["step"], sums, optimizer.param_groups[0]["lr"], tic, gammas(model))
        validate = state["step"] % cfg.eval_every == 0 or state["step"] == cfg.total_steps
        if validate or len(log) >= cfg.log_every or state["step"] == stop:
            records = log.flush()
            if validate and proc.main:
                tic = time.time()
                records[-1].update(validation(model, train_data, val_data, cfg))
                state["seconds"] += time.time() - tic
                state["best_val_accuracy"] = max(state["best_val_accuracy"] or 0.0, records[-1]["val_accuracy"])
            log.write(records)
        if proc.main and not log and time.time() - last_save > 60 * cfg.checkpoint_minutes:
            save_checkpoint(Path(out_dir) / "checkpoint.pt", model, optimizer, cfg, state, scaler=precision.state_dict())
            last_save = time.time()
    log.close()  # the deadline may come inside a group
    if not proc.main:
        torch.distributed.barrier()
        return {}
    recompute_batchnorm(model, train_data, cfg, cfg.bn_batches)
    save_checkpoint(Path(out_dir) / "checkpoint.pt", model, optimizer, cfg, state, scaler=precision.state_dict())
    result = make_result(cfg, model, val_data, state, command or python_command(cfg), Path(out_dir) / "log.jsonl")
    result.update(reports)
    (Path(out_dir) / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    if proc.world > 1:
        torch.distributed.barrier()
    return result


def python_command(cfg: TrainConfig) -> str:
    """The Python call that makes this run: ``config`` with the fields that differ from the defaults."""
    default = config(cfg.variant, cfg.scale, cfg.recipe, device=cfg.device)
    return python_call(cfg, default, f"dyreg_edu.train.train(config({cfg.variant!r}, {cfg.scale!r}, {cfg.recipe!r}{{}}), out_dir)")


# --------------------------------------------------------------------------- CLI

#: The CLI's flags that set the config field of their name: ``(flag, type, help)``.
FLAGS = [("--task", str, "a task of data_gen.multisync.TASKS, e.g. a rung of the ladder (default: the scale's)"),
         ("--padding", str, "the backbone's padding: zeros (default) or circular (the ladder's where rung)"),
         ("--batch-size", int, "the global batch (all processes and accumulation steps)"),
         ("--accumulate", int, "micro-batches a step on each process (the same batch in less memory)"),
         ("--epochs", float, "schedule length in epochs"), ("--train-videos", int, "videos in one training epoch"),
         ("--val-videos", int, "size of the fixed validation slice"), ("--lr", float, None),
         ("--grad-clip", float, "clip the gradient norm to this (default 5, ours; 0: none, as the authors' code)"),
         ("--num-nodes", int, None), ("--num-digits", int, None), ("--eval-every", int, None),
         ("--digit-steps", int, "pretraining steps of the mini digit backbone (default 1500)"),
         ("--digit-size", int, "digit size in video pixels (default: scales with the video, 7 at 64)"),
         ("--max-step", float, "largest step a frame in video pixels (default: 2.5 at 64)"),
         ("--head-init", str, "none or resnet18 (the mini default: graph variants start from the trained plain model)")]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dyreg_edu.train", description="Train a MultiSyncMNIST model.")
    p.add_argument("--variant", required=True, help=f"one of {', '.join(MODEL_VARIANTS)}")
    p.add_argument("--scale", default="mini", help="mini (CPU, minutes) or paper (GPU)")
    p.add_argument("--recipe", help="fast, paper or paper_scaled (default: mini fast, paper paper_scaled)")
    p.add_argument("--out", required=True, help="run directory: log.jsonl, checkpoint.pt, result.json")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--max-steps", type=int, help="stop after this many steps from the start of training")
    p.add_argument("--max-minutes", type=float, help="stop (and save) after this many minutes of this call")
    for flag, kind, text in FLAGS:
        p.add_argument(flag, type=kind, help=text)
    p.add_argument("--temporal-shift", action="store_true", help="TSM's shift before layer3 (the motion-aware plain control)")
    p.add_argument("--full-curve", action="store_true", help="also validate before the first step, and on still videos")
    p.add_argument("--block", action="append", default=[], metavar="KEY=VALUE",
                   help="a DyRegBlock keyword (repeatable), a Python literal or a word: anchors=grid, fixed_size=2")
    p.add_argument("--experiment", action="append", default=[], metavar="NAME[:KEY=VALUE,...]",
                   help="a research switch, not in the paper (repeatable; dyreg_edu.experiments), "
                   "e.g. box_loss:weight=1,steps=500")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--amp", default="auto", metavar="{auto,bf16,fp16,off}",
                   help="mixed precision on CUDA: auto (default) is bf16 on a GPU that has it and fp16 with a gradient "
                   "scaler on one that does not (a T4); off: fp32. The CPU trains in fp32 unless bf16 is asked for")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--no-progress", action="store_true")
    return p


def overrides_from_args(args) -> dict:
    """The config fields that the CLI's arguments set."""
    names = [flag[2:].replace("-", "_") for flag, _, _ in FLAGS]
    overrides = {name: getattr(args, name) for name in names if getattr(args, name) is not None}
    overrides.update(device=args.device, seed=args.seed, compile=args.compile, amp=args.amp)
    for name in ("temporal_shift", "full_curve"):
        if getattr(args, name):
            overrides[name] = True
    set_by_the_model = ("in_channels", "height", "width", "variant", "num_nodes", "node_dim", "region_dim", "switches")
    if args.block:
        overrides["block"] = keyword_values(args.block, DyRegBlock, "--block", exclude=set_by_the_model)
    if args.experiment:
        overrides["experiments"] = dict(experiments.parse_option(text) for text in args.experiment)
    return overrides


def main(argv=None) -> int:
    p = parser()
    args = p.parse_args(argv)
    command = "python -m dyreg_edu.train " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        for name, value, ok in (("max_steps", args.max_steps, "at least 0"), ("max_minutes", args.max_minutes, "positive")):
            if value is not None and not (value >= 0 if name == "max_steps" else value > 0):
                raise ValueError(f"{name} must be {ok}, got {value}")
        cfg = config(args.variant, args.scale, args.recipe, **overrides_from_args(args))
        result = train(cfg, args.out, resume=args.resume, max_steps=args.max_steps, max_minutes=args.max_minutes,
                       progress=not args.no_progress, command=command)
    except (ValueError, FileNotFoundError) as error:
        p.exit(2, f"{p.prog}: error: {error}\n")
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
    if result:
        print(json.dumps({k: result[k] for k in ("variant", "scale", "steps", "val_accuracy", "wall_seconds")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
