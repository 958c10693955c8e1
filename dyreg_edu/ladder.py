"""A ladder of tasks, from one where the paper's model has something to learn at the mini scale to the
paper's own (issue 16): each rung trained with the paper's model (DyReg with the authors' code's switches,
no boxes, no research switch) beside Fixed and the plain model.

    python -m dyreg_edu.ladder --rung where                     # train / resume every variant of a rung
    python -m dyreg_edu.ladder --rung sync2 --variant dyreg --seed 1 --max-minutes 60 --compile   # 1.5x on a CPU
    python -m dyreg_edu.ladder --write                          # results/multisync/ladder/ladder.json

A rung is a task of ``data_gen.multisync.TASKS`` and the trainer's settings around it (:data:`RUNGS`). Every
rung below the paper's uses the mini design (:mod:`dyreg_edu.mini`): the layers before the graph are
pretrained once on the rung's videos to find digits and frozen, the plain model trains first and every
graph variant starts from it, so that a 2-core CPU spends its time on what the graph adds; the paper's
rung trains from scratch, as the paper does. Runs log the whole curve (``full_curve``: a validation before
the first step, still videos at each validation). A finished run's result goes to
``results/multisync/ladder/<rung>/<variant>[_seed<s>].json`` with its thinned log, and its model to
``checkpoints/ladder/<rung>_<variant>[_seed<s>].pt`` (fp16; ``dyreg_edu.train.load_trained`` loads it).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

import torch

from data_gen.multisync import TASK_DESCRIPTIONS

from .ablations import keep_log
from .inputs import build_data
from .metrics import motion_blind_ceiling
from .mini import resnet_head_path
from .runs import REPO_ROOT, export_checkpoint, restore_state, save_state
from .train import TrainConfig, config, evaluate, load_trained, train

#: The rungs, easy to hard: ``(name, needs the synchronous-motion relation, the trainer's settings)``; a
#: ``graph_epochs`` setting is the graph variants' schedule (the plain model keeps its scale's).
RUNGS = [
    ("where", False, dict(scale="mini", task="where", padding="circular")),
    ("sync2", True, dict(scale="mini", task="sync2", graph_epochs=1.0)),
    ("pair2", True, dict(scale="mini", task="pair2", graph_epochs=2.0)),
    ("mini", True, dict(scale="mini", task="mini", graph_epochs=2.0)),
    ("paper", True, dict(scale="paper", task="paper")),
]
#: Why a rung's settings are what they are (beyond its task's description).
NOTES = {
    "where": "circular padding in the backbone: with zero padding the plain model reads which digit is upper "
             "from the frame's border (73% against a 55% ceiling in a trial), so the label would not need the nodes",
}
#: The variants each rung trains, in order (the plain model first: the mini design's graph variants start from it).
VARIANTS = ("resnet18", "dyreg", "fixed")
#: Other starts the authors' code offers, trained on request: ``name -> (variant, settings)``. The paper starts
#: every region at the frame's centre (Section 4.2); the code can also spread the anchors on a grid, which
#: gives each node a gradient of its own from the first step (``dyreg_edu.experiments.symmetry``).
OTHER_STARTS = {"dyreg_grid": ("dyreg", {"block": {"anchors": "grid"}})}
LADDER_DIR = REPO_ROOT / "results" / "multisync" / "ladder"
#: Where an unfinished run's state is committed between sessions (and GPU windows).
STATES_DIR = REPO_ROOT / "states" / "ladder"


def rung_settings(name: str) -> dict:
    for rung, _, settings in RUNGS:
        if rung == name:
            return dict(settings)
    raise ValueError(f"rung must be one of {[r for r, _, _ in RUNGS]}, got {name!r}")


def rung_config(rung: str, variant: str, seed: int = 0, **overrides) -> TrainConfig:
    """The configuration of ``variant`` on ``rung``: the paper's model (no research switch), the whole curve logged."""
    variant, start = OTHER_STARTS.get(variant, (variant, {}))
    settings = {**rung_settings(rung), **start, **overrides}
    scale, graph_epochs = settings.pop("scale"), settings.pop("graph_epochs", None)
    if graph_epochs is not None and variant != "resnet18":
        settings.setdefault("epochs", graph_epochs)
    return config(variant, scale, seed=seed, full_curve=True, **settings)


def ladder_json() -> dict:
    """``{"rungs": [{"name", "needs_relation", "description", "settings", "design"}, ...]}`` in order of difficulty."""
    rungs = []
    for name, relation, settings in RUNGS:
        design = "from scratch, as the paper" if settings["scale"] == "paper" else (
            "the mini design: digit layers pretrained once on the rung's videos and frozen; the graph variants "
            "start from the trained plain model")
        rungs.append({"name": name, "needs_relation": relation, "description": TASK_DESCRIPTIONS[settings["task"]],
                      "settings": settings, "design": design, **({"note": NOTES[name]} if name in NOTES else {})})
    return {"rungs": rungs}


def blind_ceiling(rung: str, videos: int = 20_000) -> float:
    """The best accuracy (percent) on ``rung`` of a model that knows which digit classes a video holds but not
    how they move, nor (with circular padding) where they are: :func:`~dyreg_edu.metrics.motion_blind_ceiling`
    on the rung's labels, estimated from ``videos`` training and as many validation videos."""
    cfg = dataclasses.replace(rung_config(rung, "resnet18"), num_frames=2)  # labels and classes need no frames

    def digits_and_labels(split: str):
        data = build_data(dataclasses.replace(cfg, train_videos=videos, val_videos=videos), split, "cpu")
        parts = [data.batch(range(start, min(videos, start + 5_000))) for start in range(0, videos, 5_000)]
        return torch.cat([p["digits"] for p in parts]), torch.cat([p["label"] for p in parts])

    return motion_blind_ceiling(*digits_and_labels("train"), *digits_and_labels("val"))


def milestones(log: list[dict], ceiling: float, val_videos: int, streak: int = 3) -> dict:
    """From a run's log: the step at which its validation accuracy cleared ``ceiling`` by two standard errors
    at ``streak`` evaluations in a row (``left_ceiling``; a run at chance clears two standard errors at about
    one evaluation in 44, so a single one among dozens proves nothing), and the first step from then on at
    which it reached 90% of its last value (``to_90_percent``); ``None`` when not (yet). A run that never
    cleared the ceiling has no ``to_90_percent`` either: 90% of a last value near the ceiling is reached by
    the untrained model. Steps times the run's batch are videos."""
    rows = [r for r in log if "val_accuracy" in r]
    if not rows:
        return {"left_ceiling": None, "to_90_percent": None, "final": None, "steps": 0}
    margin = 2 * 100 * (0.25 / val_videos) ** 0.5
    above = [r["val_accuracy"] > ceiling + margin for r in rows]
    left = next((r["step"] for i, r in enumerate(rows) if len(above[i:i + streak]) == streak
                 and all(above[i:i + streak])), None)
    final = rows[-1]["val_accuracy"]
    reached = next((r["step"] for r in rows if left is not None and r["step"] >= left
                    and r["val_accuracy"] >= 0.9 * final), None)
    return {"left_ceiling": left, "to_90_percent": reached,
            "final": final, "steps": rows[-1]["step"]}


def same_run(saved: TrainConfig, cfg: TrainConfig) -> bool:
    """Whether a saved config is the run ``cfg`` describes (older configs migrated), whatever device and
    compilation it ran with."""
    return dataclasses.replace(saved, device=cfg.device, compile=cfg.compile) == cfg


def result_name(variant: str, seed: int) -> str:
    return variant if seed == 0 else f"{variant}_seed{seed}"


def run_one(rung: str, variant: str, *, seed: int, runs_root: Path, deadline: float, progress: bool,
            device: str = "cpu", compile_model: bool = False) -> dict | None:
    """Train (or resume) one run until it finishes or the deadline; its result when finished. A run that has no
    checkpoint in ``runs_root`` resumes from its committed state (``states/ladder/<rung>/<name>/``, left by an
    earlier session or a GPU window), and an unfinished one is saved there for the next. ``device`` and
    ``compile_model`` say how this call runs, not what the run is: either may change between calls."""
    name = result_name(variant, seed)
    target = LADDER_DIR / rung / f"{name}.json"
    cfg = rung_config(rung, variant, seed)
    if target.exists() and same_run(TrainConfig.from_dict(json.loads(target.read_text())["config"]), cfg):
        return json.loads(target.read_text())
    minutes = (deadline - time.time()) / 60
    if minutes < 0.5:
        return None
    out, state = runs_root / rung / name, STATES_DIR / rung / name
    restore_state(state, out)
    cfg = dataclasses.replace(cfg, device=device, compile=compile_model)
    shown = out.relative_to(REPO_ROOT) if out.is_relative_to(REPO_ROOT) else out
    command = (f"python -m dyreg_edu.ladder --rung {rung} --variant {variant} --seed {seed} "
               f"(dyreg_edu.train into {shlex.quote(str(shown))})")
    result = train(cfg, out, resume=(out / "checkpoint.pt").exists(), max_minutes=minutes, progress=progress,
                   command=command)
    if not result["finished"]:
        save_state(out, state)
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2) + "\n")
    keep_log(out / "log.jsonl", LADDER_DIR / rung / "logs" / f"{name}.jsonl")
    export_checkpoint(out, REPO_ROOT / "checkpoints" / "ladder" / f"{rung}_{name}.pt")
    if seed == 0 and variant == "resnet18" and cfg.head_init == "none" and cfg.scale == "mini":  # where graph variants start
        export_checkpoint(out, resnet_head_path(cfg))
    return result


def outputs(rung: str, variant: str, seed: int) -> list[Path]:
    """The files a finished run adds: its result, its thinned log and (seed 0) its checkpoints."""
    name = result_name(variant, seed)
    files = [LADDER_DIR / rung / f"{name}.json", LADDER_DIR / rung / "logs" / f"{name}.jsonl.gz",
             REPO_ROOT / "checkpoints" / "ladder" / f"{rung}_{name}.pt"]
    if seed == 0 and variant == "resnet18" and rung_settings(rung)["scale"] == "mini":
        files.append(resnet_head_path(rung_config(rung, variant)))
    return files


def rescore(rung: str, videos: int | None = None) -> dict:
    """The committed checkpoints of ``rung`` (``checkpoints/ladder/<rung>_<variant>.pt``) scored again on the
    first ``videos`` validation videos (default: all of their run's): accuracy, on still videos, object-centric
    distance."""
    scores = {}
    for variant in VARIANTS + tuple(OTHER_STARTS):
        path = REPO_ROOT / "checkpoints" / "ladder" / f"{rung}_{variant}.pt"
        if not path.exists():
            continue
        model, val = load_trained(path)
        cfg = rung_config(rung, variant)
        if videos is not None:
            val = build_data(dataclasses.replace(cfg, val_videos=videos), "val", "cpu")
        moving, still = evaluate(model, val, cfg=cfg), evaluate(model, val, cfg=cfg, still=True)
        scores[variant] = {"val_accuracy": round(moving["val_accuracy"], 2), "still_val_accuracy": round(still["val_accuracy"], 2),
                           "val_videos": len(val), **({"object_centric": round(moving["object_centric"]["score"], 4)}
                                                      if "object_centric" in moving else {})}
    return scores


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dyreg_edu.ladder", description=__doc__.split("\n\n")[0])
    p.add_argument("--rung", action="append", help="a rung (repeatable; default: every rung below the paper's)")
    p.add_argument("--variant", action="append", help=f"of {VARIANTS + tuple(OTHER_STARTS)} (repeatable; default: "
                   f"the first three, in order)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-minutes", type=float, default=float("inf"), help="stop (and save) after this long")
    p.add_argument("--runs", type=Path, default=REPO_ROOT / "runs" / "ladder", help="where the run directories go")
    p.add_argument("--write", action="store_true", help="only write results/multisync/ladder/ladder.json")
    p.add_argument("--rescore", action="store_true", help="score the committed checkpoints of the rungs again")
    p.add_argument("--videos", type=int, help="--rescore: on the first this many validation videos")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the model (1.48x the steps a second for the mini DyReg on this CPU, "
                   "results/benchmarks/mini_speedup_compile_only_cpu.json; a minute or two to compile at each call)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    try:
        LADDER_DIR.mkdir(parents=True, exist_ok=True)
        (LADDER_DIR / "ladder.json").write_text(json.dumps(ladder_json(), indent=2) + "\n")
        if args.write:
            return 0
        rungs = args.rung or [name for name, _, settings in RUNGS if settings["scale"] == "mini"]
        if args.rescore:
            for rung in rungs:
                print(json.dumps({"rung": rung, **rescore(rung, args.videos)}), flush=True)
            return 0
        variants = args.variant or list(VARIANTS)
        for variant in variants:
            if variant not in VARIANTS + tuple(OTHER_STARTS):
                raise ValueError(f"variant must be one of {VARIANTS + tuple(OTHER_STARTS)}, got {variant!r}")
        deadline = time.time() + 60 * args.max_minutes
        for rung in rungs:
            rung_settings(rung)
            for variant in variants:
                result = run_one(rung, variant, seed=args.seed, runs_root=args.runs, deadline=deadline,
                                 progress=not args.no_progress, compile_model=args.compile)
                print(f"{rung} {result_name(variant, args.seed)}: "
                      + (f"{result['val_accuracy']:.2f}% (still videos {result['still_val_accuracy']:.2f}%)"
                         if result else "unfinished"), flush=True)
    except (ValueError, FileNotFoundError) as error:
        p.exit(2, f"{p.prog}: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
