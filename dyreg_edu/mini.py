"""The mini design: MultiSyncMNIST on a 2-core CPU in minutes (``--scale mini``).

A variant at the paper scale learns everything from scratch. At the mini scale (64 x 64 videos,
3 digits, 8 frames, a small ResNet of widths 16/32/64) each variant spends its minutes on what
differs between the variants instead:

1. **Digits** (:func:`pretrain_digits`): the part before the graph (stem, ``layer1``, ``layer2``,
   :data:`BACKBONE_PARTS`) is learned **once**, frame by frame, to find digits: at every cell of
   ``layer2``'s map, the class of the digit centred there (or background) and where in the cell its
   centre lies, from the generator's boxes and classes. It is cached in
   ``checkpoints/multisync_mini<design>_digits.pt`` (:func:`digit_backbone_path`) and frozen.
2. **The plain model** (``variant="resnet18"``) trains ``layer3`` and the classifier on top, to its
   motion-blind plateau, and is exported to ``checkpoints/multisync_mini<design>_resnet18.pt``.
3. **Every graph variant** starts from it (``head_init="resnet18"``, :func:`load_resnet_head`): its
   block is the identity at initialisation, so it starts where the plain model ended.

A *design* is a mini configuration with other data or pretraining (``digit_size=14, max_step=5``,
``digit_steps=6000``); :func:`design_tag` names it (``"_px14_step5"``) in the cached files and in the
results' folders, so that no two designs share a cached backbone or plain model.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from data_gen.multisync import TASKS

from .inputs import as_input, build_data
from .metrics import box_centers
from .models import SyncMNISTModel
from .runs import REPO_ROOT, load_checkpoint, progress_bar, provenance_fields

#: The part of the model that :func:`pretrain_digits` learns and ``freeze_backbone`` freezes.
BACKBONE_PARTS = ("stem", "layer1", "layer2")
#: The digit backbone's pretraining steps of the committed mini runs.
DEFAULT_DIGIT_STEPS = 1500


def checks(cfg) -> list[tuple[str, bool, str]]:
    """The checks of ``cfg``'s mini-design settings, as ``(name, ok, what was expected)``."""
    return [
        ("backbone", cfg.backbone in ("digits", "scratch"), "'digits' or 'scratch'"),
        ("digit_steps", isinstance(cfg.digit_steps, int) and not isinstance(cfg.digit_steps, bool) and cfg.digit_steps >= 1,
         "a positive int of pretraining steps"),
        ("head_init", cfg.head_init in ("none", "resnet18"),
         "'none' or 'resnet18' (another checkpoint: the experiment warm_start)"),
        ("feature_cache", not getattr(cfg, "feature_cache", False) or cfg.freeze_backbone,
         "False unless the backbone is frozen (freeze_backbone=True): the cache holds its output"),
    ]


# --------------------------------------------------------------------------- 1. digits


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


def rearrange_frames(x: Tensor) -> Tensor:
    """``[B, T, ...] -> [(B T), ...]``: frames as a batch."""
    return rearrange(x, "b t ... -> (b t) ...")


def plain_backbone(cfg) -> SyncMNISTModel:
    """The plain model of ``cfg``'s backbone (random weights; its stem, ``layer1``, ``layer2`` are what
    :func:`pretrain_digits` learns)."""
    return SyncMNISTModel("resnet18", input_size=cfg.size, widths=tuple(cfg.widths), blocks=tuple(cfg.blocks),
                          stem=cfg.stem, padding=cfg.padding)


def digit_loss(head: nn.Module, model: SyncMNISTModel, batch: dict, cfg, map_size: int, weight: Tensor) -> Tensor:
    """The pretraining loss of one batch: the cells' classes (cross-entropy) and, at the digits'
    cells, where in the cell the centre lies (L1)."""
    target = digit_targets(batch["boxes"], batch["digits"], map_size, cfg.size)
    offsets, on_digits = digit_offsets(batch["boxes"], map_size, cfg.size)
    out = head(rearrange_frames(model.features(as_input(batch["video"]))))
    loss = F.cross_entropy(out[:, :11], rearrange_frames(target), weight=weight)
    where = rearrange_frames(on_digits)[:, None].expand(-1, 2, -1, -1)
    return loss + F.l1_loss(out[:, 11:][where], rearrange_frames(offsets)[where])


def pretrain_digits(cfg, *, steps: int = DEFAULT_DIGIT_STEPS, batch_size: int = 16, lr: float = 3e-3,
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
    model = plain_backbone(cfg)
    head = nn.Conv2d(cfg.widths[1], 13, 1)  # 11 classes (10 digits, background) + the (x, y) offset
    parts = nn.ModuleDict({name: getattr(model, name) for name in BACKBONE_PARTS})
    optimizer = torch.optim.AdamW(list(parts.parameters()) + list(head.parameters()), lr=lr, weight_decay=1e-4)
    data = build_data(cfg, "train", "cpu")
    weight = torch.ones(11)
    weight[10] = 0.1
    map_size = cfg.size // {"resnet": 8, "small": 4}[cfg.stem]
    first = len(data) - steps * batch_size  # the last videos of the epoch: never in a variant's short run
    bar = progress_bar(range(steps), progress, "digits")
    start = time.time()
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        batch = data.batch(range(first + step * batch_size, first + (step + 1) * batch_size))
        loss = digit_loss(head, model, batch, cfg, map_size, weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.set_postfix(loss=f"{loss.item():.3f}")
    report = digit_report(head, model, build_data(cfg, "val", "cpu"), cfg, map_size)
    report.update({"steps": steps, "batch_size": batch_size, "train_videos": steps * batch_size,
                   "wall_seconds": round(time.time() - start, 1)})
    return {k: v for k, v in model.state_dict().items() if k.split(".")[0] in BACKBONE_PARTS}, report


@torch.no_grad()
def digit_report(head: nn.Module, model: SyncMNISTModel, val, cfg, map_size: int) -> dict:
    """On (up to) 500 validation videos: the accuracy on digit cells and on background cells, and
    the mean error of the predicted centre in video pixels."""
    model.eval()
    batch = val.batch(range(min(500, len(val))))
    target = rearrange_frames(digit_targets(batch["boxes"], batch["digits"], map_size, cfg.size))
    offsets, _ = digit_offsets(batch["boxes"], map_size, cfg.size)
    out = head(rearrange_frames(model.features(as_input(batch["video"]))))
    pred, on_digits = out[:, :11].argmax(1), target != 10
    where = on_digits[:, None].expand(-1, 2, -1, -1)
    pixel_error = (out[:, 11:][where] - rearrange_frames(offsets)[where]).abs().mean().item() * cfg.size / map_size / 2
    return {"digit_cell_accuracy": 100.0 * (pred[on_digits] == target[on_digits]).float().mean().item(),
            "background_accuracy": 100.0 * (pred[~on_digits] == 10).float().mean().item(),
            "offset_error_pixels": round(pixel_error, 3)}


def load_digit_backbone(cfg, model: SyncMNISTModel, *, progress: bool = True) -> dict:
    """Load the pretrained backbone parts into ``model`` (training and saving them first if
    :func:`digit_backbone_path` does not exist). Returns their report."""
    path = digit_backbone_path(cfg)
    if not path.exists():
        state, report = pretrain_digits(cfg, steps=cfg.digit_steps, progress=progress)
        report.update(provenance_fields(f"dyreg_edu.mini.pretrain_digits(config({cfg.variant!r}, {cfg.scale!r}))",
                                        report["wall_seconds"], cfg.device))
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"model": state, "report": report, "config": backbone_config(cfg)}, path)
    saved = load_checkpoint(path, keys=("model", "report", "config"),
                            expected="a digit backbone of the mini design (written by dyreg_edu.mini)")
    if saved["config"] != backbone_config(cfg):
        raise ValueError(f"{path} was trained for {saved['config']}, not {backbone_config(cfg)}: delete it to retrain")
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in saved["model"].items()}, strict=False)
    if unexpected or any(k.split(".")[0] in BACKBONE_PARTS for k in missing):
        raise ValueError(f"{path} does not fit this model's backbone")
    return saved["report"]


def freeze_backbone(model: SyncMNISTModel) -> None:
    """Freeze the backbone parts (no gradients, BatchNorm statistics kept)."""
    for name in BACKBONE_PARTS:
        part = getattr(model, name)
        part.eval()
        part.requires_grad_(False)


# --------------------------------------------------------------------------- 3. graph variants start from the plain model


def resnet_head_path(cfg) -> Path:
    """Where the trained plain model of ``cfg``'s design is: ``checkpoints/multisync_<scale><design>_resnet18.pt``."""
    return REPO_ROOT / "checkpoints" / f"multisync_{cfg.scale}{design_tag(cfg)}_resnet18.pt"


def load_resnet_head(cfg, model: SyncMNISTModel) -> dict:
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
                                f"dyreg_edu.runs.export_checkpoint(run_dir, '{path.name}'))")
    saved = load_checkpoint(path, keys=("model", "config", "result"))
    check_same_backbone(saved["config"], cfg, path)
    state = model.state_dict()
    for key, value in saved["model"].items():
        if key.split(".")[0] in BACKBONE_PARTS + ("layer3", "classifier"):
            state[key] = value.to(state[key].dtype)
    model.load_state_dict(state)
    return {k: saved["result"][k] for k in ("val_accuracy", "train_videos", "commit", "date")}


def check_same_backbone(saved_config: dict, cfg, path) -> None:
    """A checkpoint's saved config (a dict) names the backbone and data of ``cfg``, or a ``ValueError``."""
    if backbone_config(saved_config) != backbone_config(cfg) or saved_config.get("backbone") != cfg.backbone:
        raise ValueError(f"{path} was trained on another backbone or data ({backbone_config(saved_config)})")


# --------------------------------------------------------------------------- designs


#: Settings that enter :func:`backbone_config` only when they differ from these (so that the files cached
#: before they existed keep their key).
OPTIONAL = {"digit_steps": DEFAULT_DIGIT_STEPS, "digit_size": None, "max_step": None, "layout": "free",
            "label": "pair", "p_no_sync": None, "padding": "zeros"}


def backbone_config(cfg) -> dict:
    """What the digit backbone depends on: its architecture, the data and the pretraining length.
    ``cfg`` is a config or its saved dict."""
    get = cfg.get if isinstance(cfg, dict) else lambda key, default=None: getattr(cfg, key, default)
    config = {"size": get("size"), "widths": list(get("widths")), "blocks": list(get("blocks")), "stem": get("stem"),
              "num_digits": get("num_digits"), "num_frames": get("num_frames"), "data_seed": get("data_seed", 0)}
    config.update({k: get(k, v) for k, v in OPTIONAL.items() if get(k, v) != v})
    return config


def design_tag(cfg) -> str:
    """``""`` for the committed mini design; otherwise what differs from it:
    ``"_digits<steps>"`` (a longer-pretrained backbone), ``"_px<digit_size>"``, ``"_step<max_step>"``."""
    return data_tag(cfg) + ("" if cfg.digit_steps == DEFAULT_DIGIT_STEPS else f"_digits{cfg.digit_steps}")


def design_summary(cfg) -> str:
    """How ``cfg``'s design differs from the committed mini design, for a table's title
    (``""`` when it does not; else e.g. ``", 14-pixel digits, steps up to 5 pixels"``)."""
    parts = ([] if cfg.digit_size is None else [f"{cfg.digit_size}-pixel digits"]) + \
            ([] if cfg.max_step is None else [f"steps up to {cfg.max_step:g} pixels"]) + \
            ([] if cfg.digit_steps == DEFAULT_DIGIT_STEPS else [f"digit backbone pretrained {cfg.digit_steps} steps"])
    return "".join(", " + part for part in parts)


def data_tag(cfg) -> str:
    """What in ``cfg``'s data differs from its scale's: another task (``"_where"``, then what differs from that
    task), ``"_px<digit_size>"``, ``"_step<max_step>"``, and (rarely) ``"_d<num_digits>"``, ``"_t<num_frames>"``,
    ``"_seed<data_seed>"``; ``"_circular"`` padding; so that no two data share a cached backbone or plain model."""
    task = getattr(cfg, "task", cfg.scale)
    preset = {"digit_size": None, "max_step": None, **TASKS[task]}
    parts = [("_px", cfg.digit_size, preset["digit_size"]), ("_step", cfg.max_step, preset["max_step"]),
             ("_d", cfg.num_digits, preset["num_digits"]), ("_t", cfg.num_frames, preset["num_frames"]),
             ("_seed", cfg.data_seed, 0)]
    tag = ("" if task == cfg.scale else f"_{task}") + "".join(
        f"{prefix}{value:g}" for prefix, value, default in parts if value != default)
    return tag + ("" if getattr(cfg, "padding", "zeros") == "zeros" else f"_{cfg.padding}")


def digit_backbone_path(cfg) -> Path:
    """Where the digit backbone of ``cfg``'s design is cached: ``checkpoints/multisync_<scale><data>_digits[<steps>].pt``."""
    suffix = "" if cfg.digit_steps == DEFAULT_DIGIT_STEPS else str(cfg.digit_steps)
    return REPO_ROOT / "checkpoints" / f"multisync_{cfg.scale}{data_tag(cfg)}_digits{suffix}.pt"
