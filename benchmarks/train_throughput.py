"""Benchmark: training throughput of each MultiSyncMNIST variant, and whether the generator keeps up.

For each variant: videos/s of full training steps (forward, backward, optimiser step,
on videos already on the device), the achieved TFLOP/s (3 x the forward FLOPs counted
by torch's FLOP counter, an estimate of forward + backward), and videos/s of the
generator alone making the same batches on the same device. Training is starved when
the generator is not much faster than training.

    python benchmarks/train_throughput.py --scale mini                      # CPU
    python benchmarks/train_throughput.py --scale paper --device cuda --out results/benchmarks/train_throughput_cuda.json

On CUDA it uses bf16 autocast and channels-last, as the trainer does (``--compile`` adds torch.compile).

``--mini-speedup`` compares today's mini path with the fast one, side by side in one run, with the trainer
itself (``dyreg_edu.train.train``, the mini DyReg on a fixed set of videos): the backbone run on every
video, against its map read from the cache (``feature_cache=True``, built first and timed apart) and the
model compiled (``compile=True``; ``--no-compile`` leaves it out), in alternating slices of steps so that a
busy machine slows both alike. The rates are the median of the steps' own rates; the one-off costs
(building the cache, compiling) are printed apart. The last line is ``speedup: X.XX``.

    python benchmarks/train_throughput.py --mini-speedup [--steps 120] [--out results/benchmarks/mini_speedup_cpu.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dyreg_edu.models import count_macs  # noqa: E402
from dyreg_edu.notebook import cpu_name, git_commit  # noqa: E402
from dyreg_edu.mini import freeze_backbone as freeze  # noqa: E402
from dyreg_edu.runs import autocast, compile_model  # noqa: E402
from dyreg_edu.train import MODEL_VARIANTS, build_data, build_model, config, model_inputs  # noqa: E402


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(fn, steps: int, device: str) -> float:
    fn()  # warm-up (allocations, cuDNN autotuning, compilation)
    fn()
    sync(device)
    tic = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return (time.perf_counter() - tic) / steps


def measure(variant: str, scale: str, device: str, batch: int, steps: int, compile_: bool) -> dict:
    cfg = config(variant, scale, device=device, batch_size=batch, backbone="scratch", compile=compile_)
    model = build_model(cfg)
    if cfg.freeze_backbone:
        freeze(model)
    model.to(device)
    if device.startswith("cuda"):
        model.to(memory_format=torch.channels_last)
    forward = compile_model(model) if compile_ else model
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    data = build_data(cfg, "train", device)
    b = data.batch(range(batch))
    (video, boxes), label = model_inputs(b, device), b["label"]

    def step():
        model.train()
        if cfg.freeze_backbone:
            freeze(model)
        with autocast(cfg.device, cfg.amp):
            loss = F.cross_entropy(forward(video, boxes=boxes).float(), label)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    seconds = time_steps(step, steps, device)
    generate = time_steps(lambda: data.batch(range(batch, 2 * batch)), steps, device)
    with torch.device("meta"):
        meta_model = build_model(dataclasses.replace(cfg, device="cpu"))
    macs = count_macs(meta_model, torch.empty(video.shape, device="meta"))
    return {"variant": variant, "batch": batch, "train_videos_per_second": round(batch / seconds, 1),
            "generator_videos_per_second": round(batch / generate, 1),
            "forward_gmacs_per_video": round(macs / batch / 1e9, 3),
            "achieved_tflops": round(3 * 2 * macs / seconds / 1e12, 3)}


def mini_speedup(steps: int, slices: int, compile_: bool, cache: bool = True) -> dict:
    """Trainer videos/s of the mini DyReg today (the backbone on every video) and on the fast path (its map read
    from the feature cache; with ``compile_``, the model compiled too; without ``cache``, compiled only: what a
    run of one epoch, where no video comes twice, can use), in alternating slices of steps. A rate
    is the median of the steps' own rates in the log (each slice's first steps left out: a resumed call
    rebuilds the model and, compiled, compiles it again); the one-off costs are reported apart."""
    import statistics
    import tempfile

    from dyreg_edu import train
    from dyreg_edu.runs import read_log

    base = config("dyreg", "mini", train_videos=8192, val_videos=32, epochs=100, eval_every=10**9, checkpoint_minutes=10**9)
    fast = dataclasses.replace(base, feature_cache=cache, compile=compile_, log_every=10)  # a record a step, written in tens
    root = tempfile.mkdtemp()
    os.environ.setdefault("DYREG_CACHE", os.path.join(root, "cache"))
    tic = time.perf_counter()
    if cache:
        train.FeatureCache(*_backbone_and_data(base), fast, progress=False)  # built once, timed apart
    build_seconds = time.perf_counter() - tic
    warm = 3  # each slice's first steps (model rebuilt, compiled)
    rates, calls = {"today": [], "fast": []}, {"today": 0.0, "fast": 0.0}
    for k in range(1, slices + 1):
        for name, cfg in (("today", base), ("fast", fast)):
            out = os.path.join(root, name)
            first = (k - 1) * steps // slices
            tic = time.perf_counter()
            train.train(cfg, out, max_steps=k * steps // slices, resume=k > 1, progress=False)
            calls[name] += time.perf_counter() - tic
            rates[name] += [r["videos_per_second"] for r in read_log(os.path.join(out, "log.jsonl"))
                            if r["step"] > first + warm]
    median = {name: statistics.median(values) for name, values in rates.items()}
    videos = steps * base.batch_size
    return {"steps": steps, "slices": slices, "batch": base.batch_size, "train_videos": base.train_videos,
            "compile": compile_, "feature_cache": cache, "cache_build_seconds": round(build_seconds, 1) if cache else None,
            "today_videos_per_second": round(median["today"], 1), "fast_videos_per_second": round(median["fast"], 1),
            "today_calls_videos_per_second": round(videos / calls["today"], 1),
            "fast_calls_videos_per_second": round(videos / calls["fast"], 1),
            "speedup": round(median["fast"] / median["today"], 2)}


def _backbone_and_data(cfg):
    """The mini model with its frozen digit backbone, and the training videos (what the trainer caches)."""
    from dyreg_edu import train

    model, _ = train.starting_model(cfg, progress=False)
    return model, build_data(cfg, "train", "cpu")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", default="mini")
    p.add_argument("--device", default="cpu")
    p.add_argument("--variants", default="resnet18,fixed,pos_only,dyreg")
    p.add_argument("--batch", type=int, help="default: 32 on CPU, 128 on CUDA")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--out", help="write the figures as JSON with their provenance")
    p.add_argument("--mini-speedup", action="store_true", help="today's mini path against the fast one (the trainer)")
    p.add_argument("--slices", type=int, default=4, help="--mini-speedup: alternating slices of the steps")
    p.add_argument("--no-compile", action="store_true", help="--mini-speedup: the fast path without torch.compile")
    p.add_argument("--no-cache", action="store_true",
                   help="--mini-speedup: the fast path without the feature cache (compiled only: a one-epoch run)")
    args = p.parse_args(argv)
    if args.mini_speedup:
        tic = time.time()
        if args.no_compile and args.no_cache:
            p.error("--no-compile and --no-cache together leave nothing to compare")
        row = mini_speedup(args.steps if args.steps != 5 else 120, args.slices, not args.no_compile, not args.no_cache)
        print(f"today's mini path {row['today_videos_per_second']:8.1f} videos/s   fast path "
              f"{row['fast_videos_per_second']:8.1f} videos/s   (steady steps; whole calls with their set-up and "
              f"compilation {row['today_calls_videos_per_second']:.1f} and {row['fast_calls_videos_per_second']:.1f}"
              + (f"; cache built once in {row['cache_build_seconds']:.0f} s)" if row["feature_cache"] else "; no cache)"))
        write_record(args, argv, {"mode": "mini-speedup", **row}, tic)
        print(f"speedup: {row['speedup']:.2f}")
        return 0
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in MODEL_VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; choose from {MODEL_VARIANTS}")
    batch = args.batch or (128 if args.device.startswith("cuda") else 32)
    tic = time.time()
    rows = []
    for variant in variants:
        row = measure(variant, args.scale, args.device, batch, args.steps, args.compile)
        rows.append(row)
        print(f"{variant:14s} train {row['train_videos_per_second']:9.1f} videos/s   generator {row['generator_videos_per_second']:10.1f} videos/s"
              f"   {row['forward_gmacs_per_video']:.3f} GMAC/video   {row['achieved_tflops']:.3f} TFLOP/s", flush=True)
    write_record(args, argv, {"scale": args.scale, "rows": rows}, tic)
    return 0


def write_record(args, argv, figures: dict, tic: float) -> None:
    """The figures with their provenance, to ``--out`` when given."""
    record = {
        "command": "python benchmarks/train_throughput.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "commit": git_commit(),
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else cpu_name(),
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "wall_seconds": round(time.time() - tic, 1), **figures,
    }
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    sys.exit(main())
