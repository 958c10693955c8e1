"""Loading the authors' parameters (``bit-ml/DyReg-GNN``): one block, or their whole TSM-ResNet-50.

- :func:`block_from_official` (``DyRegBlock.from_official``): one block from their names.
- :func:`tsm_from_official`: their released Something-Something checkpoint as our
  :func:`~dyreg_edu.models.tsm_resnet`; :func:`tsm_to_official` goes back (stand-ins, tests).

The block-level names (:data:`NAME_MAP`, :data:`IGNORED`, :data:`OFFSET_ORDER`,
:func:`convert_state_dict`, :func:`block_kwargs`, :func:`block_from_official`,
:func:`block_to_official`) live in :mod:`dyreg_edu.official_block`, which :mod:`dyreg_edu.dyreg`
imports; they are re-exported here. This module holds the whole-model functions.

The authors' names hide their meaning (``fishnet`` is f, ``offset_alpha`` is gamma,
``rstg`` is the graph, ``offset_*`` are all region parameters). :data:`NAME_MAP` lists
each of their module prefixes next to ours; :func:`convert_state_dict` renames, reshapes
and reorders, and :func:`block_from_official` builds the block.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch
from torch import Tensor

from .dyreg import DyRegBlock
from .files import check_keys, describe, load_torch_file, not_expected
from .models import TSM_STAGES, tsm_resnet
from .official_block import (  # noqa: F401  (re-exported: the block-level names of this module)
    IGNORED,
    NAME_MAP,
    OFFSET_ORDER,
    REQUIRED_CONFIG,
    block_from_official,
    block_kwargs,
    block_to_official,
    convert_state_dict,
    official_names,
)

# --------------------------------------------------------------------------- whole TSM-ResNet-50 models

#: Entries of the authors' checkpoint that are not parameters (their loader skips them too).
CHECKPOINT_BUFFERS = ("_buf", "const_dh_ones", "const_dw_ones", "fix_offsets")
_GRAPH_KEY = re.compile(r"^base_model\.(layer\d)\.(\d+)\.conv2\.1\.")
_PRE_RELEASE = [  # pre-release names -> release names (their test_models.py renames the same way)
    (re.compile(r"\.conv2\.block\."), ".conv2.0.block."),
    (re.compile(r"\.conv2\.dynamic_graph\."), ".conv2.1.dynamic_graph."),
    (re.compile(r"\.conv2\.norm_dict\.residual_norm\."), ".conv2.1.norm_dict.residual_norm."),
]


#: What :func:`tsm_from_official` reads (for its errors).
EXPECTED_CHECKPOINT = ("the authors' TSM-ResNet-50 checkpoint dict ({'epoch', 'arch', 'state_dict', 'optimizer', "
                       "'best_prec1'}) or its state dict of tensors ('base_model.*', 'new_fc.*')")


def load_checkpoint_file(checkpoint, *, weights_only: bool = True) -> dict[str, Tensor]:
    """The state dict inside the authors' checkpoint: a path to their ``.pth.tar`` (a dict with
    ``'state_dict'``), such a dict, or a plain state dict. Anything else, or a file that is not
    one, raises one ``ValueError`` naming it (:mod:`dyreg_edu.files`)."""
    source = "the given checkpoint"
    if isinstance(checkpoint, (str, os.PathLike)):
        source = checkpoint
        checkpoint = load_torch_file(checkpoint, expected=EXPECTED_CHECKPOINT, weights_only=weights_only)
    checkpoint = check_keys(checkpoint, source=source, expected=EXPECTED_CHECKPOINT)
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise not_expected(source, EXPECTED_CHECKPOINT, f"no state dict of tensors in {describe(checkpoint)}")
    if not any(key.endswith("new_fc.weight") for key in state):
        raise not_expected(source, EXPECTED_CHECKPOINT, f"a state dict without 'new_fc.weight': {describe(state)}")
    return dict(state)


def normalise_official_keys(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop DistributedDataParallel's ``module.`` prefix and the saved buffers, and rename the
    pre-release layout (``conv2.block``, ``conv2.dynamic_graph``) to the release one (``conv2.0.block``,
    ``conv2.1.dynamic_graph``)."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith("module."):
            key = key[len("module."):]
        if key.endswith(CHECKPOINT_BUFFERS):
            continue
        for pattern, release in _PRE_RELEASE:
            key = pattern.sub(release, key)
        out[key] = value
    return out


def _stage_of(layer: str, index: int) -> str:
    for stage, ((their_layer, their_index), _) in TSM_STAGES.items():
        if (their_layer, their_index) == (layer, index):
            return stage
    places = {s: f"{lay}.{i}" for s, ((lay, i), _) in TSM_STAGES.items()}
    raise KeyError(f"a DyReg block at {layer}.{index}; the authors place them at {places}")


def official_to_ours(state_dict: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], tuple[str, ...], int]:
    """The authors' TSM-ResNet-50 (+ DyReg) entries as our :class:`~dyreg_edu.models.TSMResNet`'s.

    Returns ``(state dict, graph stages, number of classes)``; an unknown key raises a
    ``KeyError`` that names it.
    """
    state = normalise_official_keys(state_dict)
    blocks: dict[tuple[str, int], dict[str, Tensor]] = {}
    ours: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        graph = _GRAPH_KEY.match(key)
        if graph:
            blocks.setdefault((graph.group(1), int(graph.group(2))), {})[key] = value
        elif key.startswith("new_fc."):
            ours["classifier." + key[len("new_fc."):]] = value
        elif re.match(r"^base_model\.layer\d\.\d+\.conv2\.0\.block\.", key):
            ours["backbone." + key[len("base_model."):].replace(".conv2.0.block.", ".conv2.conv.")] = value
        elif key.startswith("base_model.") and ".conv2.0." not in key and ".conv2.1." not in key:
            ours["backbone." + key[len("base_model."):]] = value
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f"entries of the checkpoint with no counterpart in TSM-ResNet-50 + DyReg: {unknown[:5]}"
                       + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""))
    if "classifier.weight" not in ours:
        raise KeyError("no 'new_fc.weight' in the checkpoint: the classifier is missing")
    stages = []
    for (layer, index), entries in sorted(blocks.items()):
        stage = _stage_of(layer, index)
        stages.append(stage)
        for name, value in convert_state_dict(entries).items():
            ours[f"backbone.{layer}.{index}.conv2.graph.{name}"] = value
    order = ("res3", "res4", "res5")
    return ours, tuple(sorted(stages, key=order.index)), int(ours["classifier.weight"].shape[0])


def tsm_from_official(checkpoint, *, num_frames: int = 16, input_size: int = 224, train_size: int = 224,
                      weights_only: bool = True):
    """The authors' released Something-Something checkpoint as our :func:`~dyreg_edu.models.tsm_resnet`.

    Args:
        checkpoint: a path to their ``.pth.tar`` (``{'epoch', 'arch', 'state_dict', 'optimizer',
            'best_prec1'}``), that dict, or its ``state_dict``. Keys with or without DDP's
            ``module.``, in the release layout (``...conv2.0.block.*``, ``...conv2.1.*``) or the
            pre-release one (``...conv2.block.*``, ``...conv2.dynamic_graph.*``,
            ``...conv2.norm_dict.residual_norm.*``). The stages with DyReg and the class count are
            read from the keys.
        num_frames: ``T`` (16, hard-coded in the authors' code).
        input_size, train_size: frame sides; ``input_size=256`` evaluates at full resolution
            a model trained at ``train_size=224`` (same parameters).
        weights_only: ``torch.load``'s safe mode; ``False`` only for a file you trust.

    Returns the model in eval mode, loaded strictly.
    """
    state, stages, num_classes = official_to_ours(load_checkpoint_file(checkpoint, weights_only=weights_only))
    model = tsm_resnet(num_classes=num_classes, num_frames=num_frames, graph_stages=stages,
                       input_size=input_size, train_size=train_size)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise KeyError(f"after conversion, missing {missing[:5]} and unexpected {unexpected[:5]}")
    return model.eval()


def tsm_to_official(model, *, layout: str = "release", ddp: bool = True) -> dict[str, Tensor]:
    """Our :class:`~dyreg_edu.models.TSMResNet` under the authors' names (inverse of
    :func:`official_to_ours`): ``layout`` ``"release"`` or ``"pre-release"``, ``ddp`` adds
    ``module.``. With ``{'epoch', 'arch', 'state_dict': ..., 'optimizer', 'best_prec1'}`` around it,
    a stand-in of their checkpoint."""
    if layout not in ("release", "pre-release"):
        raise ValueError(f"layout must be 'release' or 'pre-release', got {layout!r}")
    out: dict[str, Tensor] = {}
    graph_prefixes = {}
    for name, module in model.named_modules():
        if isinstance(module, DyRegBlock):
            prefix = "base_model." + name[len("backbone."):-len("graph")]  # base_model.layer3.4.conv2.
            graph_prefixes[name + "."] = prefix
            wrapper = prefix + ("1." if layout == "release" else "")
            out.update({wrapper + k: v for k, v in block_to_official(module).items()})
    for key, value in model.state_dict().items():
        if any(key.startswith(p) for p in graph_prefixes):
            continue
        if key.startswith("classifier."):
            out["new_fc." + key[len("classifier."):]] = value
        elif ".conv2.conv." in key:
            block = ".conv2.0.block." if layout == "release" else ".conv2.block."
            out["base_model." + key[len("backbone."):].replace(".conv2.conv.", block)] = value
        else:
            out["base_model." + key[len("backbone."):]] = value
    return {("module." if ddp else "") + k: v for k, v in out.items()}
