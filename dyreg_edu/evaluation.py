"""What a MultiSyncMNIST run measures: accuracy and loss, the same on *still* videos (nothing moves), and
for models with regions the object-centric distance of Appendix F.3 and the regions' spread and size; the
BatchNorm statistics recomputed before measuring; the trainer's validation record and how open the graph's
branch is; a run's result file.

``cfg`` is a :class:`dyreg_edu.train.TrainConfig` (its autocast and experiments).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from data_gen.multisync import MultiSyncMNIST

from . import experiments
from .inputs import model_kwargs
from .metrics import RegionScores, confusion_matrix
from .models import SyncMNISTModel
from .runs import autocast, precise_batchnorm, read_log, result_provenance, rounded


def recompute_batchnorm(model: SyncMNISTModel, data: MultiSyncMNIST, cfg, batches: int) -> None:
    """Precise BatchNorm (:func:`~dyreg_edu.runs.precise_batchnorm`) over the first ``batches`` training batches."""
    device = next(model.parameters()).device

    def forward(k: int) -> None:
        inputs = model_kwargs(data.batch(range(k * cfg.batch_size, (k + 1) * cfg.batch_size)), device)
        with autocast(cfg.device, cfg.amp):
            model(**inputs)

    precise_batchnorm(model, forward, batches)


@torch.no_grad()
def evaluate(model: SyncMNISTModel, data: MultiSyncMNIST, *, batch_size: int = 100, cfg=None,
             confusion: bool = False, still: bool = False) -> dict:
    """Accuracy (percent) and loss over all of ``data``, and for models with regions the object-centric distance
    (Appendix F.3) of the regions to the digits and the regions' spread and size. ``still=True`` shows *still*
    videos (every frame the first: the digits are there, nothing moves): a model that uses motion loses accuracy
    on them. ``cfg`` brings autocast and the experiments (the oracle's boxes). The model is left in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    hooks = experiments.hooks(cfg) if cfg is not None else experiments.Hooks([])
    graph = model.graph
    scores = RegionScores(graph.height, graph.width, data.size) if graph is not None else None
    correct, loss_sum, predictions, labels = 0, 0.0, [], []  # the last two for the confusion matrix
    for start in range(0, len(data), batch_size):
        batch = data.batch(range(start, min(len(data), start + batch_size)))
        label = batch["label"].to(device)
        inputs = model_kwargs(batch, device, still=still)
        inputs["boxes"] = hooks.boxes(inputs["boxes"], training=False)
        with autocast(cfg.device, cfg.amp) if cfg is not None else contextlib.nullcontext():
            logits, aux = model(**inputs, return_aux=True)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, label, reduction="sum").item()
        correct += (logits.argmax(-1) == label).sum().item()
        predictions.append(logits.argmax(-1).cpu())
        labels.append(label.cpu())
        if "regions" in aux and scores is not None:
            scores.add(aux["regions"], batch["boxes"])
    out = {"val_accuracy": 100.0 * correct / len(data), "val_loss": loss_sum / len(data), "val_videos": len(data)}
    out.update(scores.result() if scores is not None else {})
    if confusion:
        out["confusion"] = confusion_matrix(torch.cat(predictions), torch.cat(labels), data.num_classes)
    return out


def make_result(cfg, model, val_data, state: dict, command: str, log_path=None) -> dict:
    """A run's result file: its last validation (the log's, or a fresh one if the log has none at this step),
    its accuracy on still videos, its progress and provenance."""
    log = read_log(log_path) if log_path else []
    last_val = next((r for r in reversed(log) if "val_accuracy" in r), None)
    start = next((r for r in log if r["step"] == 0 and "object_centric" in r), None)  # full_curve's first record
    if last_val is None or last_val["step"] != state["step"]:
        last_val = {"step": state["step"], **rounded(evaluate(model, val_data, cfg=cfg))}
    result = {
        "variant": cfg.variant, "scale": cfg.scale, "recipe": cfg.recipe,
        "val_accuracy": last_val["val_accuracy"], "val_loss": last_val["val_loss"], "val_videos": cfg.val_videos,
        "train_videos": state["step"] * cfg.batch_size, "epochs": round(state["step"] / cfg.steps_per_epoch, 4),
        "steps": state["step"], "total_steps": cfg.total_steps, "finished": state["step"] >= cfg.total_steps,
        **({"object_centric": last_val["object_centric"]} if "object_centric" in last_val else {}),
        **({"object_centric_distance_at_start": start["object_centric"]["score"]} if start else {}),
        "still_val_accuracy": round(evaluate(model, val_data, cfg=cfg, still=True)["val_accuracy"], 4),
    }
    return {**result, **result_provenance(cfg, state, command, cfg.device)}


def validation(model: SyncMNISTModel, train_data, val_data, cfg, recompute: bool = True) -> dict:
    """A validation record: :func:`evaluate` after recomputing BatchNorm, with ``full_curve`` on still videos too."""
    if recompute:
        recompute_batchnorm(model, train_data, cfg, cfg.bn_batches)
    record = rounded(evaluate(model, val_data, cfg=cfg))
    if cfg.full_curve:
        record["still_val_accuracy"] = round(evaluate(model, val_data, cfg=cfg, still=True)["val_accuracy"], 4)
    return record


def gammas(model: SyncMNISTModel) -> dict:
    """How open the graph's branch is, for the log: the mean absolute residual scale and regions' gamma."""
    graph = model.graph
    scales = {"residual": graph.residual_norm.scale} if graph is not None else {}
    if graph is not None and graph.properties.kernels == "regions":
        scales["regions"] = graph.region_generator.gamma
    return {f"gamma/{name}": scale.detach().abs().mean() for name, scale in scales.items()}
