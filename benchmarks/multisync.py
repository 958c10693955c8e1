"""Benchmark: vectorised MultiSyncMNIST ``batch`` against the obvious per-video numpy loop.

Both make the same kind of videos (same sprites, label drawn over 56 classes,
clipped random walk with a shared synchronous step, paste by maximum) and,
like a training loop, consume and drop them: torch in batches of ``--batch``
videos (16 MB at 100, which the allocator recycles), numpy one video array at
a time. A single call for all ``--videos`` at once is also timed: there the
freshly mapped 164 MB output (page faults) dominates. Torch runs on one
thread (``--threads``).
A sweep over call sizes (``--call-sizes``: ``--videos`` videos in calls of n) shows where
the rate goes for large calls, beside the cost of only allocating and zeroing the same
output: on CPU the paste works in 4 MB chunks, so what remains of the slow-down is the
first touch of a fresh output larger than glibc recycles (about 32 MB, 200 videos at 128
px), which a long-lived process can avoid with ``MALLOC_MMAP_THRESHOLD_`` /
``MALLOC_TRIM_THRESHOLD_``, and a GPU (caching allocator) never pays.
Prints videos/s for both and the ratio; ``--device cuda`` adds the GPU rate;
``--out`` writes the figures as JSON (command, commit, device, date, wall_seconds).

    python benchmarks/multisync.py --videos 1000 --out results/benchmarks/multisync_cpu.json
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from data_gen.multisync import NO_SYNC, NUM_CLASSES, MultiSyncMNIST, pair_of  # noqa: E402
from dyreg_edu.notebook import cpu_name, git_commit  # noqa: E402


def numpy_loop(ds: MultiSyncMNIST, indices, seed: int = 0) -> dict:
    """The obvious generator: loop over videos, frames and digits, paste 15x15 sprites; yields videos."""
    g, T, D, S = ds.geometry, ds.num_frames, ds.num_digits, ds.size
    Q, m, L = g.sprite, g.step_hi, g.max_pos_hi
    sprites = ds.sprites.numpy()
    start, count = ds._class_start.cpu().numpy(), ds._class_count.cpu().numpy()
    for i in indices:
        video = np.zeros((T, S, S), np.uint8)
        boxes = np.zeros((T, D, 4), np.float32)
        r = np.random.default_rng([seed, i])
        label = int(r.integers(NUM_CLASSES))
        sync = np.zeros(D, bool)
        digits = r.integers(0, 10, D)
        if label != NO_SYNC:
            lo, hi = pair_of(label)
            weights = np.array([math.comb(D, k) for k in range(2, D + 1)], float)
            k = 2 + r.choice(D - 1, p=weights / weights.sum())
            members = r.permutation(D)[:k]
            sync[members] = True
            digits[members] = r.integers(lo, hi + 1, k)
            digits[members[0]], digits[members[1]] = lo, hi
        sprite = [start[c] + r.integers(count[c]) for c in digits]
        pos = r.integers(0, L + 1, (D, 2))
        trajectory = [pos.copy()]
        for t in range(T - 1):
            step = np.zeros((D, 2), np.int64)
            for a in range(2):
                slo, shi = -m, m
                for d in range(D):
                    lo_, hi_ = max(-m, -pos[d, a]), min(m, L - pos[d, a])
                    step[d, a] = r.integers(lo_, hi_ + 1)
                    if sync[d]:
                        slo, shi = max(slo, lo_), min(shi, hi_)
                shared = r.integers(slo, shi + 1) if sync.any() else 0
                step[sync, a] = shared
            pos = pos + step
            trajectory.append(pos.copy())
        for t in range(T):
            for d in range(D):
                x, y = trajectory[t][d]
                patch = sprites[sprite[d], (y % 2) * 2 + x % 2]
                window = video[t, y // 2:y // 2 + Q, x // 2:x // 2 + Q]
                np.maximum(window, patch, out=window)
                boxes[t, d] = (x / 2, y / 2, (x + g.digit_hi) / 2, (y + g.digit_hi) / 2)
        yield {"video": video, "label": label, "digits": digits, "sync": sync, "boxes": boxes}


def _drain(items) -> None:
    """Consume and drop, as a training loop does."""
    for _ in items:
        pass


def rate(fn, n: int, repeats: int, sync=lambda: None) -> float:
    fn()
    sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return n / best


def call_size_sweep(ds: MultiSyncMNIST, videos: int, sizes, repeats: int) -> list[dict]:
    """Videos/s for ``videos`` videos made in calls of each size, and for only allocating
    and zeroing the same outputs (the first-touch cost of fresh memory)."""
    frame_bytes = ds.num_frames * ds.size * ds.size
    rows = []
    for n in sizes:
        calls = [torch.arange(i, min(videos, i + n)) for i in range(0, videos, n)]
        made = rate(lambda: _drain(ds.batch(c) for c in calls), videos, repeats)
        alloc = rate(lambda: _drain(torch.empty(len(c) * frame_bytes, dtype=torch.uint8).zero_() for c in calls),
                     videos, repeats)
        rows.append({"call_size": n, "videos_per_s": round(made, 1), "alloc_zero_videos_per_s": round(alloc, 1)})
    return rows


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=int, default=1000, help="videos per timed run on CPU")
    p.add_argument("--batch", type=int, default=100, help="torch batch size (training-like)")
    p.add_argument("--loop-videos", type=int, default=None, help="videos for the numpy loop (default: --videos)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu", help="'cuda' also times the GPU")
    p.add_argument("--gpu-videos", type=int, default=20000)
    p.add_argument("--call-sizes", default="64,256,1000,4000", help="videos per call for the sweep")
    p.add_argument("--out", default=None, help="write the figures to this JSON file")
    args = p.parse_args(argv)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run(args, argv)
    finally:
        torch.set_num_threads(threads_before)


def _run(args, argv) -> dict:
    wall0 = time.perf_counter()
    ds = MultiSyncMNIST("train", num_videos=max(args.videos, args.gpu_videos), device="cpu")
    idx = torch.arange(args.videos)
    batches = [idx[i:i + args.batch] for i in range(0, args.videos, args.batch)]
    torch_rate = rate(lambda: _drain(ds.batch(b) for b in batches), args.videos, args.repeats)
    single_rate = rate(lambda: ds.batch(idx), args.videos, args.repeats)
    sweep = call_size_sweep(ds, args.videos, [int(n) for n in args.call_sizes.split(",") if n], args.repeats)
    n_loop = args.loop_videos or args.videos
    loop_rate = rate(lambda: _drain(numpy_loop(ds, range(n_loop))), n_loop, args.repeats)
    result = {"videos": args.videos, "threads": args.threads, "batch": args.batch,
              "torch_batch_videos_per_s": round(torch_rate, 1), "numpy_loop_videos_per_s": round(loop_rate, 1),
              "ratio": round(torch_rate / loop_rate, 2),
              f"torch_single_call_{args.videos}_videos_per_s": round(single_rate, 1), "digits": ds.digit_source,
              "call_size_sweep": sweep}
    print(f"torch batches of {args.batch}, {args.threads} thread(s): {torch_rate:10,.0f} videos/s")
    output_mb = args.videos * ds.num_frames * ds.size * ds.size / 1e6
    print(f"torch one call of {args.videos}:            {single_rate:10,.0f} videos/s (one fresh {output_mb:,.0f} MB output)")
    print(f"numpy per-video loop, 1 thread:     {loop_rate:10,.0f} videos/s")
    print(f"ratio (batches / loop): {torch_rate / loop_rate:.1f}x")
    for row in sweep:
        print(f"  calls of {row['call_size']:5d}: {row['videos_per_s']:10,.0f} videos/s "
              f"(allocating and zeroing the output alone: {row['alloc_zero_videos_per_s']:10,.0f} videos/s)")
    if args.device.startswith("cuda"):
        if torch.cuda.is_available():
            gds = MultiSyncMNIST("train", num_videos=args.gpu_videos, device=args.device)
            gidx = torch.arange(args.gpu_videos, device=args.device)
            gpu_rate = rate(lambda: gds.batch(gidx), args.gpu_videos, args.repeats, torch.cuda.synchronize)
            same = torch.equal(gds.batch(gidx[:64])["video"].cpu(), ds.batch(idx[:64])["video"])
            result.update(gpu=torch.cuda.get_device_name(), gpu_videos_per_s=round(gpu_rate, 1), gpu_equals_cpu=same)
            print(f"{torch.cuda.get_device_name()}: {gpu_rate:,.0f} videos/s (same bytes as CPU: {same})")
            gpu_sweep = []
            for n in (256, 1024, 4096, args.gpu_videos):
                calls = [gidx[i:i + n] for i in range(0, args.gpu_videos, n)]
                r = rate(lambda: _drain(gds.batch(c) for c in calls), args.gpu_videos, args.repeats, torch.cuda.synchronize)
                gpu_sweep.append({"call_size": n, "videos_per_s": round(r, 1)})
                print(f"  GPU calls of {n:6d}: {r:12,.0f} videos/s")
            result["gpu_call_size_sweep"] = gpu_sweep
        else:
            print("cuda requested but not available")
    result.update(command="python " + " ".join([os.path.relpath(__file__)] + (sys.argv[1:] if argv is None else list(argv))),
                  commit=git_commit(), device=cpu_name(), cpu_count=os.cpu_count(), torch=torch.__version__,
                  load_average_1min=round(os.getloadavg()[0], 2),
                  date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  wall_seconds=round(time.perf_counter() - wall0, 1))
    if args.out:
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)
        print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
