"""What DyReg costs in a real backbone: TSM-ResNet-50 vs +DyReg r4 vs +DyReg r3-4-5.

Videos per second of the forward pass (eval, no gradients) and of forward + backward
(training), the three models timed in turn within each repeat, in a rotating order (so that a
busy machine slows all of them alike), next to paper Table 12's runtime: 35.7 / 34.8 / 32.7 videos/s
on a GTX 1080 Ti (batch 16, 16 x 224 x 224), i.e. DyReg r4 costs 2.5% and r3-4-5 8.4%.
Our overhead is ``1 - (videos/s with DyReg) / (videos/s of TSM)``, the same measure.

    python benchmarks/tsm_overhead.py --device cpu  --out results/benchmarks/tsm_overhead_cpu.json
    python benchmarks/tsm_overhead.py --device cuda --out results/benchmarks/tsm_overhead_cuda.json

Defaults: CPU, batch 1 x 8 frames at 224, float32; CUDA, batch 8 x 16 frames at 224,
bfloat16 autocast. The DyReg blocks start away from the identity (residual scale 1,
gamma 0.3) so that every part of them does real work. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dyreg_edu.models import tsm_resnet  # noqa: E402
from dyreg_edu.notebook import cpu_name, describe_device, git_commit  # noqa: E402

MODELS = {"TSM-R50": (), "+DyReg r4": ("res4",), "+DyReg r3-4-5": ("res3", "res4", "res5")}
#: Paper Table 12's runtime (videos/s, GTX 1080 Ti, batch 16, 16 x 224^2).
PAPER_VIDEOS_PER_S = {"TSM-R50": 35.7, "+DyReg r4": 34.8, "+DyReg r3-4-5": 32.7}
DEFAULTS = {"cpu": dict(batch=1, frames=8, dtype="float32"), "cuda": dict(batch=8, frames=16, dtype="bfloat16")}


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(stages, frames: int, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    model = tsm_resnet(graph_stages=stages, num_frames=frames)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "residual_norm"):
                module.residual_norm.scale.fill_(1.0)
                module.region_generator.gamma.fill_(0.3)
    return model.to(device)


def one_pass(model, video, mode: str, autocast) -> float:
    """Seconds of one forward (``"forward"``) or forward + backward (``"train"``) pass."""
    synchronise(video.device)
    start = time.perf_counter()
    if mode == "forward":
        model.eval()
        with torch.no_grad(), autocast():
            model(video)
    else:
        model.train()
        model.zero_grad(set_to_none=True)
        with autocast():
            loss = model(video).float().logsumexp(-1).mean()
        loss.backward()
    synchronise(video.device)
    return time.perf_counter() - start


def measure(device: torch.device, batch: int, frames: int, size: int, dtype: str, repeats: int) -> list[dict]:
    models = {name: build(stages, frames, device) for name, stages in MODELS.items()}
    video = torch.randn(batch, frames, 3, size, size, device=device)
    if dtype == "float32":
        autocast = contextlib.nullcontext
    else:
        autocast = lambda: torch.autocast(device.type, dtype=getattr(torch, dtype))  # noqa: E731
    rows = []
    for mode in ("forward", "train"):
        times = {name: [] for name in models}
        for name, model in models.items():  # warm-up
            one_pass(model, video, mode, autocast)
        names = list(models)
        for repeat in range(repeats):  # rotate the order, so that no model always runs first
            for name in names[repeat % len(names):] + names[:repeat % len(names)]:
                times[name].append(one_pass(models[name], video, mode, autocast))
        medians = {name: sorted(t)[len(t) // 2] for name, t in times.items()}
        base = batch / medians["TSM-R50"]
        for name, seconds in medians.items():
            speed = batch / seconds
            paper = PAPER_VIDEOS_PER_S[name]
            rows.append({
                "model": name, "mode": "forward" if mode == "forward" else "forward+backward",
                "videos_per_s": round(speed, 3), "overhead_pct": round(100 * (1 - speed / base), 1),
                "paper_videos_per_s": paper, "paper_overhead_pct": round(100 * (1 - paper / PAPER_VIDEOS_PER_S["TSM-R50"]), 1),
            })
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, help="videos per pass (CPU 1, CUDA 8)")
    p.add_argument("--frames", type=int, help="frames per video (CPU 8, CUDA 16; the paper 16)")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="CPU float32, CUDA bfloat16 (autocast)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.exit(2, "tsm_overhead: no CUDA device here\n")
    settings = DEFAULTS[args.device] | {k: v for k, v in (("batch", args.batch), ("frames", args.frames),
                                                          ("dtype", args.dtype)) if v is not None}
    device = torch.device(args.device)
    start = time.time()
    rows = measure(device, settings["batch"], settings["frames"], args.size, settings["dtype"], args.repeats)
    result = {
        "command": "python benchmarks/tsm_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "commit": git_commit(),
        "device": describe_device() if device.type == "cuda" else cpu_name(),
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "setting": {"batch": settings["batch"], "frames": settings["frames"], "size": args.size,
                    "dtype": settings["dtype"], "repeats": args.repeats},
        "paper_setting": "GTX 1080 Ti, batch 16, 16 x 224 x 224 (Table 12)",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "wall_seconds": round(time.time() - start, 1),
        "rows": rows,
    }
    for row in rows:
        print(f"{row['mode']:>17} {row['model']:>14}: {row['videos_per_s']:8.3f} videos/s, overhead "
              f"{row['overhead_pct']:5.1f}% (paper {row['paper_videos_per_s']} videos/s, {row['paper_overhead_pct']}%)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
