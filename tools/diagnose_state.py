"""Look inside a training state on CPU: is the model still learning, are its regions still regions?

    python tools/diagnose_state.py states/multisync/dyreg --videos 300 \
        --out results/multisync/attempts/dyreg_fast_recipe.json

Reads a GPU queue state (``model.pt`` + ``log.jsonl``) or a run directory
(``checkpoint.pt`` + ``log.jsonl``) and measures, on the first ``--videos`` validation videos:

- accuracy with the BatchNorm running statistics as saved (what eval mode gives), and with
  them recomputed over ``--bn-batches`` training batches (:func:`dyreg_edu.train.recompute_batchnorm`);
  a large gap means the running statistics lag behind the weights;
- the regions (:func:`dyreg_edu.metrics.region_statistics`): how far apart the nodes sit and
  how large the regions are, as fractions of the map side, and the object-centric distance;
- from the log: steps, training videos, and every validation record; from ``windows.jsonl``
  (a GPU queue state) the windows of GPU time it trained in.

Writes the figures with their provenance (``--out``) and a compact copy of the log beside
it, gzipped (``<out>.log.jsonl.gz``: every ``--log-stride``-th step and every validation record;
:func:`dyreg_edu.runs.read_log` reads it).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from dyreg_edu import train  # noqa: E402
from dyreg_edu.runs import read_log, rounded, write_gzip  # noqa: E402
from dyreg_edu.train import TrainConfig, build_data, build_model, evaluate, recompute_batchnorm  # noqa: E402
from data_gen.multisync import MultiSyncMNIST  # noqa: E402


def load_state(folder: Path) -> dict:
    """``model.pt`` (a GPU queue state, half precision) or ``checkpoint.pt`` (a run directory)."""
    path = folder / "model.pt" if (folder / "model.pt").exists() else folder / "checkpoint.pt"
    if not path.exists():
        raise FileNotFoundError(f"{folder} holds neither model.pt (a GPU queue state) nor checkpoint.pt (a run)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state["model"] = {k: v.float() if v.is_floating_point() else v for k, v in state["model"].items()}
    return state


def first_videos(cfg: TrainConfig, videos: int) -> MultiSyncMNIST:
    """The first ``videos`` of the run's validation slice (the same videos, in the same order)."""
    return train.build_data(dataclasses.replace(cfg, val_videos=videos), "val", device="cpu")


def summary(evaluation: dict) -> dict:
    keep = ("val_accuracy", "val_loss", "object_centric", "regions")
    return rounded({k: evaluation[k] for k in keep if k in evaluation})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("folder", type=Path, help="a GPU queue state (states/multisync/<run>) or a run directory")
    p.add_argument("--videos", type=int, default=300, help="validation videos to measure on (CPU: ~8 a second)")
    p.add_argument("--bn-batches", type=int, default=16, help="training batches for the recomputed statistics")
    p.add_argument("--log-stride", type=int, default=100, help="keep every n-th step of the log in the copy")
    p.add_argument("--trained-on", default="", help="the device the run trained on (the state does not say)")
    p.add_argument("--out", type=Path, help="write the figures here (JSON); the compact log goes beside it")
    args = p.parse_args(argv)
    tic = time.time()
    state = load_state(args.folder)
    cfg = dataclasses.replace(TrainConfig.from_dict(state["config"]), device="cpu")
    model = build_model(cfg)
    model.load_state_dict(state["model"])
    data = first_videos(cfg, args.videos)
    saved = summary(evaluate(model, data, cfg=cfg))
    recompute_batchnorm(model, build_data(cfg, "train"), cfg, args.bn_batches)
    recomputed = summary(evaluate(model, data, cfg=cfg))
    records = read_log(args.folder / "log.jsonl")
    validations = [{k: r[k] for k in ("step", "val_accuracy", "object_centric", "regions", "gamma") if k in r}
                   for r in records if "val_accuracy" in r]
    windows = read_log(args.folder / "windows.jsonl")  # [] when there is none
    from dyreg_edu.runs import cpu_name, git_commit

    result = {
        "run": args.folder.name, "variant": cfg.variant, "scale": cfg.scale, "recipe": cfg.recipe,
        "steps": state["state"]["step"], "train_videos": state["state"]["step"] * cfg.batch_size,
        "training_commit": state["state"].get("commit"), "trained_on": args.trained_on,
        "training_seconds": round(state["state"]["seconds"], 1),
        "measured_on_videos": args.videos,
        "bn_statistics_as_saved": saved, "bn_statistics_recomputed": recomputed,
        "log_validations": validations, "windows": windows,
        "command": "python " + " ".join([str(Path(__file__).relative_to(REPO))] + (sys.argv[1:] if argv is None else argv)),
        "commit": git_commit(), "device": cpu_name(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_seconds": round(time.time() - tic, 1), "config": cfg.to_dict(),
    }
    print(json.dumps({k: result[k] for k in ("run", "steps", "bn_statistics_as_saved", "bn_statistics_recomputed")}, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        compact = [r for r in records if r["step"] % args.log_stride == 0 or "val_accuracy" in r or r is records[-1]]
        write_gzip(args.out.with_suffix(".log.jsonl.gz"), "".join(json.dumps(r) + "\n" for r in compact))
    return 0


if __name__ == "__main__":
    sys.exit(main())
