"""One of the authors' DyReg blocks (``bit-ml/DyReg-GNN``) under our names, and back.

The block-level half of :mod:`dyreg_edu.official` (which re-exports every name here): their
configuration as :class:`~dyreg_edu.dyreg.DyRegBlock` keywords (:func:`block_kwargs`), the renaming
of one block's state dict (:data:`NAME_MAP`, :func:`convert_state_dict`, :func:`block_to_official`)
and :func:`block_from_official`, which ``DyRegBlock.from_official`` calls. It imports neither
:mod:`dyreg_edu.dyreg` nor :mod:`dyreg_edu.models`: the block class comes in as ``cls``.

The authors' names hide their meaning (``fishnet`` is f, ``offset_alpha`` is gamma,
``rstg`` is the graph, ``offset_*`` are all region parameters). Two reorderings: the authors'
W_o rows and gamma are ``(h, w, y, x)`` and ours are the paper's ``(dx, dy, dw, dh)``; their g_i
is a conv whose kernel covers the map, ours the equal ``Linear`` (the conv weight flattened).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from .files import describe, load_torch_file, not_expected

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


#: What a file given to :func:`block_from_official` should hold (for its errors).
EXPECTED_BLOCK = ("the authors' state dict of one DyReg block ('dynamic_graph.*' tensors) or a golden fixture "
                  "(a dict with 'state_dict' and 'config')")


def _not_one_block(state: Any) -> str | None:
    """``None`` if ``state`` is the state dict of one of the authors' blocks, else what it is instead."""
    if not isinstance(state, Mapping) or not state or not all(torch.is_tensor(v) for v in state.values()):
        whole_model = isinstance(state, Mapping) and "state_dict" in state
        hint = " (a whole model's checkpoint? see dyreg_edu.official.tsm_from_official)" if whole_model else ""
        return describe(state) + hint
    prefixes = {k[: k.index("dynamic_graph.")] for k in state if "dynamic_graph." in k}
    if not prefixes:
        return f"no 'dynamic_graph.*' entry in {describe(state)}"
    if len(prefixes) > 1:
        return f"a state dict of {len(prefixes)} DyReg blocks (a whole model: see dyreg_edu.official.tsm_from_official)"
    return None


def load_block_file(path: str | os.PathLike) -> tuple[dict[str, Tensor], dict[str, Any] | None]:
    """``(state dict, config)`` from a file holding one block's state dict under the authors' names
    (``config`` ``None``) or a golden fixture (its ``'state_dict'`` and ``'config'``). Anything
    else raises one ``ValueError`` naming the file (:mod:`dyreg_edu.files`)."""
    loaded = load_torch_file(path, expected=EXPECTED_BLOCK)
    fixture = "state_dict" in loaded and "config" in loaded
    state, config = (loaded["state_dict"], loaded["config"]) if fixture else (loaded, None)
    found = _not_one_block(state)
    if found is not None:
        raise not_expected(path, EXPECTED_BLOCK, found if not fixture else f"a fixture whose 'state_dict' is {found}")
    return dict(state), config


def block_from_official(cls, state_dict: Mapping[str, Tensor] | str | os.PathLike,
                        config: Mapping[str, Any] | None = None):
    """Build ``cls(**block_kwargs(config))`` and load the converted ``state_dict`` strictly.

    ``state_dict`` may be a path to a torch file (:func:`load_block_file`); ``config`` may then be
    left out when the file is a golden fixture (a given ``config`` wins over the file's).
    """
    path = None
    if isinstance(state_dict, (str, os.PathLike)):
        path = state_dict
        state_dict, saved = load_block_file(path)
        config = saved if config is None else config
    if config is None:
        where = "no config given" if path is None else f"{path} holds no config"
        raise ValueError(f"{where}: pass config=, the authors' settings (keys {REQUIRED_CONFIG}; see block_kwargs)")
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


def official_names(tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Tensors named as our block's parameters (its state dict, or their gradients) under the
    authors' names and shapes: the inverse of :func:`convert_state_dict`, entry by entry. A gradient
    re-indexes exactly as its parameter does, so ``official_names({n: p.grad ...})`` is the
    authors' module's gradients for the same parameters."""
    out: dict[str, Tensor] = {}
    for name, value in tensors.items():
        for theirs, ours, transform in NAME_MAP:
            if name.startswith(ours):
                out[theirs + name[len(ours):]] = _inverse(theirs, transform)(value.detach().clone())
                break
        else:
            raise KeyError(f"our entry {name!r} has no name in the authors' module")
    return out


def block_to_official(block) -> dict[str, Tensor]:
    """Our :class:`~dyreg_edu.dyreg.DyRegBlock`'s parameters under the authors' names and shapes,
    with the buffers their module also saves (anchors, pixel positions): the inverse of
    :func:`convert_state_dict` (for tests and for a stand-in of their checkpoint)."""
    out = official_names(block.state_dict())
    generated = block.properties.kernels == "regions"
    anchors = (None if not generated else block.full_anchors if block.full_res else block.region_generator.anchors)
    if anchors is not None:
        out["dynamic_graph.ph_buf"] = anchors[:, 1].reshape(1, -1, 1).clone()
        out["dynamic_graph.pw_buf"] = anchors[:, 0].reshape(1, -1, 1).clone()
    out["dynamic_graph.arange_h_buf"] = torch.arange(block.height).reshape(1, 1, -1)
    out["dynamic_graph.arange_w_buf"] = torch.arange(block.width).reshape(1, 1, -1)
    return out
