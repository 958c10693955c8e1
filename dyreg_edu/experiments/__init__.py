"""Research switches, apart from the method: **nothing in this package is in the paper**.

The method (:mod:`~dyreg_edu.kernels`, :mod:`~dyreg_edu.regions`, :mod:`~dyreg_edu.graph`,
:mod:`~dyreg_edu.dyreg`, :mod:`~dyreg_edu.models`) never imports it. A run names the experiments it
uses, with their settings, in ``TrainConfig.experiments``::

    config("dyreg", "mini", experiments={"box_loss": {"weight": 1.0, "steps": 500}})
    python -m dyreg_edu.train --variant dyreg --experiment box_loss:weight=1,steps=500 ...

and the trainer reaches them through :class:`Hooks` (one generic line at each extension point:
building the model, setting it up, the training mode, the boxes, the loss). Registered by name in
:data:`EXPERIMENTS`, in the order their hooks run:

============== =============================================================================
name           what it does (module)
============== =============================================================================
``init``       other initial residual scale and gamma (:mod:`.init`)
``motion``     each node's motion as an input; scaled positions (:mod:`.motion`)
``warm_start`` start from another trained model's head or regions; freeze them (:mod:`.warm_start`)
``oracle_jitter`` the oracle's boxes shifted at random (:mod:`.boxes`)
``box_loss``   regions taught by the digits' boxes (:mod:`.boxes`)
============== =============================================================================

Two experiments of chapter 11 are programs of their own: the graph alone on ideal nodes
(:mod:`.relation`, ``python -m dyreg_edu.experiments.relation``) and the probe of the oracle's nodes
(:mod:`.oracle_nodes_probe`).
"""

from __future__ import annotations

import dataclasses

from .base import Experiment, Hooks
from .boxes import BoxLoss, OracleJitter
from .init import Init
from .motion import Motion
from .warm_start import WarmStart

#: Every experiment by name, in the order their hooks run (``init`` before ``warm_start``, which may
#: copy what ``init`` set).
EXPERIMENTS: dict[str, type[Experiment]] = {e.name: e for e in (Init, Motion, WarmStart, OracleJitter, BoxLoss)}

__all__ = ["EXPERIMENTS", "Experiment", "Hooks", "hooks", "build", "migrate_config", "parse_option"]


def build(name: str, settings: dict) -> Experiment:
    """The experiment ``name`` with ``settings``, or a one-line ``ValueError`` naming what is unknown."""
    if name not in EXPERIMENTS:
        raise ValueError(f"experiment must be one of {tuple(EXPERIMENTS)}, got {name!r}")
    kind = EXPERIMENTS[name]
    known = [f.name for f in dataclasses.fields(kind)]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise ValueError(f"experiment {name!r} has the settings {known}, not {unknown}")
    return kind(**settings)


def hooks(cfg) -> Hooks:
    """The experiments of ``cfg`` (``cfg.experiments``), built, checked against ``cfg`` and in order."""
    chosen = cfg.experiments or {}
    for name in chosen:
        if name not in EXPERIMENTS:
            raise ValueError(f"experiment must be one of {tuple(EXPERIMENTS)}, got {name!r}")
    experiments = [build(name, chosen[name]) for name in EXPERIMENTS if name in chosen]
    result = Hooks(experiments)
    result.check(cfg)
    return result


def parse_option(text: str) -> tuple[str, dict]:
    """``"box_loss:weight=1,steps=500"`` -> ``("box_loss", {"weight": 1, "steps": 500})`` (the CLI's
    ``--experiment``); each value a Python literal, or else the word itself."""
    import ast

    name, _, rest = text.partition(":")
    settings = {}
    for pair in filter(None, rest.split(",")):
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--experiment wants NAME[:KEY=VALUE,...], got {text!r}")
        try:
            settings[key.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            settings[key.strip()] = value
    build(name, settings)  # a one-line error now for a bad name or setting
    return name, settings


# --------------------------------------------------------------------------- older configs

#: Settings that older configs kept among the trainer's own fields (flat) or the block's keywords,
#: and where they live now: ``old key -> (experiment, setting)``.
FLAT_KEYS = {"oracle_jitter": ("oracle_jitter", "spread"), "box_loss": ("box_loss", "weight"),
             "box_loss_steps": ("box_loss", "steps"), "freeze_head": ("warm_start", "freeze_head"),
             "regions_init": ("warm_start", "regions"), "freeze_regions": ("warm_start", "freeze_regions")}
BLOCK_KEYS = {"node_motion": ("motion", "node_motion"), "motion_from": ("motion", "motion_from"),
              "position_scale": ("motion", "position_scale"), "residual_scale_init": ("init", "residual_scale"),
              "gamma_init": ("init", "gamma")}
#: The values that meant "off" in those older configs.
OFF = {"oracle_jitter": 0.0, "box_loss": 0.0, "box_loss_steps": 0, "freeze_head": False, "regions_init": "none",
       "freeze_regions": False}


def migrate_config(d: dict) -> dict:
    """A saved training config of before ``experiments`` existed, in today's form: its research settings
    moved into ``experiments`` (``head_init`` as a checkpoint's path too), the rest as it was."""
    d = dict(d)
    found: dict[str, dict] = {}
    for key, (name, setting) in FLAT_KEYS.items():
        if key in d:
            value = d.pop(key)
            if value != OFF[key]:
                found.setdefault(name, {})[setting] = value
    if str(d.get("head_init", "none")).endswith(".pt"):
        found.setdefault("warm_start", {})["head"] = d["head_init"]
        d["head_init"] = "none"
    block = dict(d.get("block") or {})
    for key, (name, setting) in BLOCK_KEYS.items():
        if key in block:
            found.setdefault(name, {})[setting] = block.pop(key)
    if "motion" in found:
        found["motion"].setdefault("node_motion", False)
    if found:
        d["block"] = block
        d["experiments"] = {**found, **d.get("experiments", {})}
    return d
