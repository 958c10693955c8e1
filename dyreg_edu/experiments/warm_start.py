"""Starting from parts of other trained models (**not in the paper**): ``warm_start``.

Chapter 11 starts DyReg from a trained oracle's head (``head``) to ask whether its regions learn to
track the digits under a graph that already reads a tracking node's step, with only the regions
learning (``freeze_head``); and gives a freshly started graph the region generator of a DyReg taught
by the boxes (``regions``, kept as learned with ``freeze_regions``): regions that track from the
first step.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..dyreg import DyRegBlock
from ..mini import check_same_backbone
from ..runs import load_checkpoint
from ..variants import GENERATED_VARIANTS
from .base import Experiment, require

#: The state-dict prefixes of a graph block's kernel source (its region generator, fixed grid or maps).
KERNEL_SOURCE_KEYS = tuple(f"graph.{name}." for name in DyRegBlock.KERNEL_SOURCES.values())
#: The parts of the model after the backbone: what ``head`` copies.
HEAD_PARTS = ("layer3", "graph", "classifier")


def kernel_source_fits(state: dict, theirs: dict) -> bool:
    """Whether the kernel source of the state dict ``theirs`` has exactly the keys and shapes of ``state``'s."""
    own = {k for k in state if k.startswith(KERNEL_SOURCE_KEYS)}
    offered = {k for k in theirs if k.startswith(KERNEL_SOURCE_KEYS)}
    return bool(own) and own == offered and all(theirs[k].shape == state[k].shape for k in own)


def load_same_data_checkpoint(path, cfg, what: str) -> dict:
    """A trained checkpoint, checked to have this run's backbone and data."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} {str(path)!r}: no such checkpoint")
    saved = load_checkpoint(path, keys=("model", "config", "result"))
    check_same_backbone(saved["config"], cfg, path)
    return saved


def trained_fields(path, saved: dict, *keys: str) -> dict:
    return {"path": str(path), "variant": saved["config"]["variant"], **{k: saved["result"].get(k) for k in keys}}


def load_trained_head(path, cfg, model) -> dict:
    """Copy another trained model's ``layer3``, graph block and classifier (``path``: a checkpoint of
    the same backbone and data). Its kernel source (region generator, fixed grid) is copied too when it
    has one of the same kind and shapes; otherwise (from the oracle, which has none, or another number
    of nodes) the model's keeps its initialisation. The report says which (``kernel_source``)."""
    saved = load_same_data_checkpoint(path, cfg, "head_init")
    state = model.state_dict()
    copy_source = kernel_source_fits(state, saved["model"])

    def in_head(key: str) -> bool:
        return key.split(".")[0] in HEAD_PARTS and (copy_source or not key.startswith(KERNEL_SOURCE_KEYS))

    wanted, offered = [k for k in state if in_head(k)], [k for k in saved["model"] if in_head(k)]
    misfits = [k for k in wanted if k not in saved["model"] or saved["model"][k].shape != state[k].shape]
    misfits += [k for k in offered if k not in state]
    if misfits:
        raise ValueError(f"{path} does not fit this model's head: {len(misfits)} tensors missing, extra or of "
                         f"another shape, e.g. {misfits[0]!r} (the same block switches and node_dim are needed)")
    for key in wanted:
        state[key] = saved["model"][key].to(state[key].dtype)
    model.load_state_dict(state)
    return {**trained_fields(path, saved, "val_accuracy", "train_videos", "commit", "date"),
            "kernel_source": "copied" if copy_source else "initialised"}


def load_trained_regions(path, cfg, model) -> dict:
    """Copy only the region generator of another trained model (``path``), nothing else."""
    saved = load_same_data_checkpoint(path, cfg, "regions_init")
    state = model.state_dict()
    if not kernel_source_fits(state, saved["model"]):
        raise ValueError(f"{path} has no region generator that fits this model's (a {saved['config']['variant']} "
                         f"with {saved['config']['num_nodes']} nodes; the same variant kind, node count and block "
                         f"switches are needed)")
    for key in state:
        if key.startswith(KERNEL_SOURCE_KEYS):
            state[key] = saved["model"][key].to(state[key].dtype)
    model.load_state_dict(state)
    return trained_fields(path, saved, "val_accuracy", "object_centric", "train_videos", "commit", "date")


@dataclass(frozen=True)
class WarmStart(Experiment):
    """``warm_start``: ``head`` (a trained checkpoint, ``.pt``) gives the run its ``layer3``, graph block
    and classifier (:func:`load_trained_head`), and ``freeze_head`` then trains only the regions;
    ``regions`` (a trained checkpoint) gives it only the region generator (:func:`load_trained_regions`,
    after ``head``), and ``freeze_regions`` keeps that as learned."""

    name = "warm_start"
    head: str | None = None
    freeze_head: bool = False
    regions: str | None = None
    freeze_regions: bool = False

    def check(self, cfg) -> None:
        for what, path in (("head", self.head), ("regions", self.regions)):
            require(f"warm_start {what}", path is None or str(path).endswith(".pt"),
                    "None or the path of a trained checkpoint (.pt)", path)
        generated = cfg.variant in GENERATED_VARIANTS
        require("warm_start freeze_head", not self.freeze_head or (self.head is not None and generated),
                f"False unless head is a checkpoint and the variant makes its regions {GENERATED_VARIANTS}",
                self.freeze_head)
        require("warm_start regions", self.regions is None or generated,
                f"None for a variant that does not make its regions {GENERATED_VARIANTS}", self.regions)
        require("warm_start freeze_regions", not self.freeze_regions or (self.regions is not None and not self.freeze_head),
                "False unless regions names a checkpoint, and False with freeze_head (nothing would learn)",
                self.freeze_regions)

    def setup(self, model, cfg) -> dict:
        report = {}
        if self.head is not None:
            report["head_init"] = load_trained_head(self.head, cfg, model)
        if self.regions is not None:
            report["regions_init"] = {**load_trained_regions(self.regions, cfg, model), "frozen": self.freeze_regions}
        if self.freeze_head:
            for name in HEAD_PARTS:
                getattr(model, name).requires_grad_(False)
            model.graph.region_generator.requires_grad_(True)
        if self.freeze_regions:
            model.graph.region_generator.requires_grad_(False)
        return report

    def train_mode(self, model) -> None:
        if self.freeze_head:
            model.layer3.eval()  # its BatchNorm statistics stay as loaded
