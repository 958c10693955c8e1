"""Loading the authors' parameters (``bit-ml/DyReg-GNN``): one block, or their whole TSM-ResNet-50.

- :func:`block_from_official` (``DyRegBlock.from_official``): one block from their names.
- :func:`tsm_from_official`: their released Something-Something checkpoint as our
  :func:`~dyreg_edu.models.tsm_resnet`; :func:`tsm_to_official` goes back (stand-ins, tests).

The authors' names hide their meaning (``fishnet`` is f, ``offset_alpha`` is gamma,
``rstg`` is the graph, ``offset_*`` are all region parameters). :data:`NAME_MAP` lists
each of their module prefixes next to ours; :func:`convert_state_dict` renames, reshapes
and reorders, and :func:`block_from_official` builds the block.

Two reorderings: the authors' W_o rows and gamma are ``(h, w, y, x)`` and ours are the
paper's ``(dx, dy, dw, dh)``; their g_i is a conv whose kernel covers the map, ours the
equal ``Linear`` (the conv weight flattened).
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

#: Authors' offset order (size_h, size_w, centre_y, centre_x) -> ours (dx, dy, dw, dh).
OFFSET_ORDER = [3, 2, 1, 0]


def _same(t: Tensor) -> Tensor:
    return t


def _flatten(t: Tensor) -> Tensor:  # [1, C, 1, 1] or [1, 1, 1, C] affine -> [C]
    return t.reshape(-1)


def _reorder_offsets(t: Tensor) -> Tensor:
    return t[OFFSET_ORDER]


def _conv_as_linear(t: Tensor) -> Tensor:  # [N*D, 16, h, w] -> [N*D, 16*h*w]; 1-d kernels squeeze
    return t.flatten(1) if t.dim() > 1 else t


#: (authors' prefix, our prefix, transform), longest prefix first where they nest.
NAME_MAP: list[tuple[str, str, Callable[[Tensor], Tensor]]] = [
    ("dynamic_graph.offset_alpha", "region_generator.gamma", _reorder_offsets),
    ("dynamic_graph.offset_pred.", "region_generator.w_o.", _reorder_offsets),
    ("dynamic_graph.offset_lstm.", "region_generator.gru.", _same),
    ("dynamic_graph.norm_dict.offset_ln_feats_coords.", "region_generator.latent_norm.", _same),
    ("dynamic_graph.norm_dict.offset_ln_lstm.", "region_generator.output_norm.", _same),
    ("dynamic_graph.norm_dict.dynamic_graph_projection.", "project_norm.", _flatten),
    ("dynamic_graph.project_i3d_linear.", "project_in.", _same),
    ("dynamic_graph.project_back_i3d_linear.", "project_out.", _same),
    ("dynamic_graph.kernel_projection1.", "position_embedding.", _same),
    ("dynamic_graph.global_conv.0.", "region_generator.g.fc.", _conv_as_linear),
    ("dynamic_graph.fishnet.conv1.", "region_generator.f.project.", _same),
    ("dynamic_graph.fishnet.tail_conv.0.", "region_generator.f.down1.", _same),
    ("dynamic_graph.fishnet.tail_conv.1.", "region_generator.f.down2.", _same),
    ("dynamic_graph.fishnet.body_trans_conv.0.", "region_generator.f.up.", _same),
    ("dynamic_graph.fishnet.head_conv.0.", "region_generator.f.head.", _same),
    ("dynamic_graph.fishnet.norm_dict.norm1.", "region_generator.f.project_norm.", _flatten),
    ("dynamic_graph.fishnet.norm_dict.tail_norm_0.", "region_generator.f.down1_norm.", _flatten),
    ("dynamic_graph.fishnet.norm_dict.tail_norm_1.", "region_generator.f.down2_norm.", _flatten),
    ("dynamic_graph.fishnet.norm_dict.body_trans_norm_0.", "region_generator.f.up_norm.", _flatten),
    ("dynamic_graph.fishnet.norm_dict.head_norm_0.", "region_generator.f.head_norm.", _flatten),
    ("dynamic_graph.glore.mask_conv.", "region_generator.g.node_weights.", _same),
    ("dynamic_graph.glore.sin_pos_emb_proj.", "region_generator.g.position_proj.", _same),
    ("dynamic_graph.glore.update.", "region_generator.g.to_latent.", lambda t: t.squeeze(-1)),
    ("dynamic_graph.rstg.att_bias", "graph.aggregate_bias", _flatten),
    ("dynamic_graph.rstg.send_mlp.0.", "graph.message_mlp.", _same),
    ("dynamic_graph.rstg.att_q.", "graph.query.", _same),
    ("dynamic_graph.rstg.att_k.", "graph.key.", _same),
    ("dynamic_graph.rstg.internal_lstm.", "graph.temporal_gru.", _same),
    ("dynamic_graph.rstg.external_lstm.", "graph.final_gru.", _same),
    ("dynamic_graph.rstg.norm_dict.before_graph_norm.", "graph.input_norm.", _same),
    ("dynamic_graph.rstg.norm_dict.send_message_norm.", "graph.message_norm.", _same),
    ("dynamic_graph.rstg.norm_dict.update_norm.", "graph.update_norm.", _same),
    ("norm_dict.residual_norm.", "residual_norm.", _flatten),
]

#: Authors' entries that carry no learned state of ours: fixed buffers we recompute
#: (anchors, pixel positions, the Lite sinusoid) and a LayerNorm they never use.
IGNORED = (
    "dynamic_graph.ph_buf",
    "dynamic_graph.pw_buf",
    "dynamic_graph.arange_h_buf",
    "dynamic_graph.arange_w_buf",
    "dynamic_graph.glore.pos_emb_buf",
    "dynamic_graph.glore.norm_dict.offset_location_emb.",
)

REQUIRED_CONFIG = ("in_channels", "node_dim", "height", "width", "region_dim", "offset_generator")


def _strip_block_prefix(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Drop what comes before the wrapper (``base_model.layer3.4.conv2.1.`` in a full model)."""
    anchor = next((k for k in state_dict if "dynamic_graph." in k), None)
    if anchor is None:
        raise KeyError("no 'dynamic_graph.*' entry: this is not a state dict of the authors' DyReg block")
    prefix = anchor[: anchor.index("dynamic_graph.")]
    foreign = [k for k in state_dict if not k.startswith(prefix)]
    if foreign:
        raise KeyError(f"entries of more than one block (prefix {prefix!r}): {foreign[:3]} ...; pass one block")
    return {k[len(prefix):]: v for k, v in state_dict.items()}


def convert_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Rename, reshape and reorder the authors' entries of one block to ours."""
    converted: dict[str, Tensor] = {}
    unknown = []
    for name, value in _strip_block_prefix(state_dict).items():
        if name.startswith(IGNORED):
            continue
        for theirs, ours, transform in NAME_MAP:
            if name.startswith(theirs):
                converted[ours + name[len(theirs):]] = transform(value)
                break
        else:
            unknown.append(name)
    if unknown:
        raise KeyError(f"authors' entries with no counterpart here: {unknown}")
    return converted


def block_kwargs(config: Mapping[str, Any]) -> dict[str, Any]:
    """Our :class:`DyRegBlock` arguments for the authors' configuration (a fixture's ``config``).

    Keys: those of :data:`REQUIRED_CONFIG`, optionally ``num_nodes``, ``graph_iterations``,
    ``anchors``, ``rnn``; and for full-resolution evaluation ``full_res: True`` with
    ``train_height``/``train_width`` (the map it was trained on; ``height``/``width`` are the
    larger map it runs on).
    """
    missing = [k for k in REQUIRED_CONFIG if k not in config]
    if missing:
        raise KeyError(f"config lacks {missing}; expected keys {REQUIRED_CONFIG}")
    generators = {"big": "dyreg", "small": "lite"}
    if config["offset_generator"] not in generators:
        raise ValueError(f"offset_generator must be 'big' or 'small', got {config['offset_generator']!r}")
    if str(config.get("rnn", "GRU")).upper() != "GRU":
        raise ValueError(f"only the GRU region generator is supported (the paper's), got rnn={config['rnn']!r}")
    full_res = {}
    if config.get("full_res", False):
        missing = [k for k in ("train_height", "train_width") if k not in config]
        if missing:
            raise KeyError(f"a full_res config needs {missing} (the map the block was trained on)")
        full_res = dict(train_height=int(config["train_height"]), train_width=int(config["train_width"]))
    return dict(
        **full_res,
        in_channels=int(config["in_channels"]),
        height=int(config["height"]),
        width=int(config["width"]),
        node_dim=int(config["node_dim"]),
        num_nodes=int(config.get("num_nodes", 9)),
        region_dim=int(config["region_dim"]),
        graph_iterations=int(config.get("graph_iterations", 3)),
        anchors=str(config.get("anchors", "center")),
        variant=generators[config["offset_generator"]],
    )


def block_from_official(cls, state_dict: Mapping[str, Tensor], config: Mapping[str, Any]):
    """Build ``cls(**block_kwargs(config))`` and load the converted ``state_dict`` strictly."""
    block = cls(**block_kwargs(config))
    converted = convert_state_dict(state_dict)
    missing, unexpected = block.load_state_dict(converted, strict=False)
    if missing or unexpected:
        raise KeyError(f"after conversion, missing {missing} and unexpected {unexpected}")
    return block


# --------------------------------------------------------------------------- back to the authors' names


def _unflatten_like(theirs: str) -> Callable[[Tensor], Tensor]:
    if theirs.endswith("att_bias"):
        return lambda t: t.reshape(1, 1, 1, -1)
    return lambda t: t.reshape(1, -1, 1, 1)


def _linear_as_conv(t: Tensor) -> Tensor:  # [N*D, 16*h*h] -> [N*D, 16, h, h]
    if t.dim() == 1:
        return t
    side = int(round((t.shape[1] / 16) ** 0.5))
    return t.reshape(t.shape[0], 16, side, side)


def _inverse(theirs: str, transform: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    if transform is _flatten:
        return _unflatten_like(theirs)
    if transform is _conv_as_linear:
        return _linear_as_conv
    if theirs == "dynamic_graph.glore.update.":
        return lambda t: t.unsqueeze(-1) if t.dim() == 2 else t
    return transform  # _same and _reorder_offsets are their own inverses


def block_to_official(block) -> dict[str, Tensor]:
    """Our :class:`~dyreg_edu.dyreg.DyRegBlock`'s parameters under the authors' names and shapes,
    with the buffers their module also saves (anchors, pixel positions): the inverse of
    :func:`convert_state_dict` (for tests and for a stand-in of their checkpoint)."""
    out: dict[str, Tensor] = {}
    for name, value in block.state_dict().items():
        for theirs, ours, transform in NAME_MAP:
            if name.startswith(ours):
                out[theirs + name[len(ours):]] = _inverse(theirs, transform)(value.detach().clone())
                break
        else:
            raise KeyError(f"our entry {name!r} has no name in the authors' module")
    generated = block.properties.kernels == "regions"
    anchors = (None if not generated else block.full_anchors if block.full_res else block.region_generator.anchors)
    if anchors is not None:
        out["dynamic_graph.ph_buf"] = anchors[:, 1].reshape(1, -1, 1).clone()
        out["dynamic_graph.pw_buf"] = anchors[:, 0].reshape(1, -1, 1).clone()
    out["dynamic_graph.arange_h_buf"] = torch.arange(block.height).reshape(1, 1, -1)
    out["dynamic_graph.arange_w_buf"] = torch.arange(block.width).reshape(1, 1, -1)
    return out


# --------------------------------------------------------------------------- whole TSM-ResNet-50 models

#: Entries of the authors' checkpoint that are not parameters (their loader skips them too).
CHECKPOINT_BUFFERS = ("_buf", "const_dh_ones", "const_dw_ones", "fix_offsets")
_GRAPH_KEY = re.compile(r"^base_model\.(layer\d)\.(\d+)\.conv2\.1\.")
_PRE_RELEASE = [  # pre-release names -> release names (their test_models.py renames the same way)
    (re.compile(r"\.conv2\.block\."), ".conv2.0.block."),
    (re.compile(r"\.conv2\.dynamic_graph\."), ".conv2.1.dynamic_graph."),
    (re.compile(r"\.conv2\.norm_dict\.residual_norm\."), ".conv2.1.norm_dict.residual_norm."),
]


def load_checkpoint_file(checkpoint, *, weights_only: bool = True) -> dict[str, Tensor]:
    """The state dict inside the authors' checkpoint: a path to their ``.pth.tar`` (a dict with
    ``'state_dict'``), such a dict, or a plain state dict. Clear errors for unreadable files."""
    if isinstance(checkpoint, (str, os.PathLike)):
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
        is_zip = zipfile.is_zipfile(path)  # torch.save writes a zip archive (since torch 1.6)
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=weights_only)
        except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if is_zip and weights_only and "weights_only" in str(error):
                raise ValueError(f"{path} holds Python objects besides tensors; if you trust the file, pass "
                                 f"weights_only=False ({first})") from error
            raise ValueError(f"{path} is not a readable PyTorch checkpoint (truncated or another format?): "
                             f"{first}") from error
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"expected the authors' checkpoint dict, got {type(checkpoint).__name__}")
    state = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state, Mapping) or not state or not all(torch.is_tensor(v) for v in state.values()):
        raise ValueError(f"no state dict of tensors in this checkpoint (its keys: {list(checkpoint)[:6]}); "
                         "expected the authors' {'epoch', 'arch', 'state_dict', 'optimizer', 'best_prec1'}")
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
    from .models import TSM_STAGES

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
    from .models import tsm_resnet

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
    from .dyreg import DyRegBlock

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
