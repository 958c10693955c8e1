"""MultiSyncMNIST from the command line: preview, export and stats.

    python -m data_gen preview --count 4 --out exports/preview.gif   # animated GIF with boxes
    python -m data_gen export --split val --out exports/multisync     # uint8 .npz shards, resumable
    python -m data_gen stats --count 5600                             # label histogram and speed
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import torch

from .digits import SOURCES
from .multisync import NUM_CLASSES, SPLIT_IDS, MultiSyncMNIST, pair_of


def _dataset(args) -> MultiSyncMNIST:
    return MultiSyncMNIST(args.split, num_videos=args.num_videos, num_digits=args.num_digits,
                          num_frames=args.num_frames, size=args.size, seed=args.seed,
                          digits=args.digits, device=args.device, root=args.root)


def preview(args) -> None:
    """Animated GIF of a few videos with their boxes (green: synchronous) and labels."""
    import imageio.v2 as imageio
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    ds = _dataset(args)
    b = {k: v.cpu() for k, v in ds.batch(list(range(args.first, args.first + args.count))).items()}
    n = args.count
    frames = []
    for t in range(ds.num_frames):
        fig, axes = plt.subplots(1, n, figsize=(2.2 * n, 2.6), dpi=80, squeeze=False)
        for j, ax in enumerate(axes[0]):
            ax.imshow(b["video"][j, t], cmap="gray", vmin=0, vmax=255)
            for d in range(ds.num_digits):
                x1, y1, x2, y2 = b["boxes"][j, t, d].tolist()
                color = "lime" if b["sync"][j, d] else "red"
                ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, ec=color, lw=1))
            pair = pair_of(int(b["label"][j]))
            ax.set_title(f"#{args.first + j} label {int(b['label'][j])}\n"
                         f"{'no sync' if pair is None else pair} digits {b['digits'][j].tolist()}", fontsize=6)
            ax.axis("off")
        fig.suptitle(f"MultiSyncMNIST {ds.split} frame {t}", fontsize=7)
        fig.canvas.draw()
        frames.append(torch.from_numpy(__import__("numpy").asarray(fig.canvas.buffer_rgba()))[..., :3].numpy())
        plt.close(fig)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    imageio.mimsave(args.out, frames, duration=0.4, loop=0)
    print(f"wrote {args.out} ({n} videos, {ds.num_frames} frames, digits from {ds.digit_source})")


def export(args) -> None:
    """uint8 shards ``shard_XXXXX.npz`` (video, label, digits, sync, boxes); resumable."""
    import numpy as np
    from tqdm import tqdm

    ds = _dataset(args)
    out = os.path.join(args.out, ds.split)
    os.makedirs(out, exist_ok=True)
    n_shards = -(-len(ds) // args.shard_size)
    done = 0
    for s in tqdm(range(n_shards), desc=f"export {ds.split}", unit="shard"):
        path = os.path.join(out, f"shard_{s:05d}.npz")
        if os.path.exists(path):
            done += 1
            continue
        first = s * args.shard_size
        b = ds.batch(range(first, min(first + args.shard_size, len(ds))))
        tmp = path + ".tmp.npz"
        np.savez(tmp, first_index=np.int64(first), **{k: v.cpu().numpy() for k, v in b.items()})
        os.replace(tmp, path)
    print(f"{n_shards} shards in {out} ({done} already there); {ds!r}")


def stats(args) -> None:
    """Label histogram over the first videos and the generation speed."""
    ds = _dataset(args)
    counts = torch.zeros(NUM_CLASSES, dtype=torch.int64)
    t0, n = time.perf_counter(), min(args.count, len(ds))
    for first in range(0, n, args.batch_size):
        b = ds.batch(range(first, min(first + args.batch_size, n)))
        counts += torch.bincount(b["label"].cpu(), minlength=NUM_CLASSES)
    if ds.device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    expected = n / NUM_CLASSES
    chi2 = float(((counts - expected) ** 2).sum() / expected)
    print(repr(ds))
    for c in range(NUM_CLASSES):
        pair = pair_of(c)
        print(f"{c:3d} {'no sync' if pair is None else str(pair):>8} {int(counts[c]):7d} {'#' * round(40 * counts[c].item() / counts.max().item())}")
    print(f"{n} videos in {dt:.2f} s: {n / dt:,.0f} videos/s on {ds.device} "
          f"({torch.get_num_threads()} threads); chi-square {chi2:.1f} on 55 degrees of freedom")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m data_gen", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name, helptext in [("preview", "animated GIF of a few videos"), ("export", "write uint8 shards"),
                           ("stats", "label histogram and speed")]:
        q = sub.add_parser(name, help=helptext)
        q.add_argument("--split", default="train" if name != "preview" else "val", choices=list(SPLIT_IDS))
        q.add_argument("--num-videos", type=int, default=None)
        q.add_argument("--num-digits", type=int, default=5)
        q.add_argument("--num-frames", type=int, default=10)
        q.add_argument("--size", type=int, default=128)
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--digits", default="auto", choices=list(SOURCES))
        q.add_argument("--root", default=None, help="torchvision MNIST root")
        q.add_argument("--device", default="cpu")
        q.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
        if name == "preview":
            q.add_argument("--count", type=int, default=4)
            q.add_argument("--first", type=int, default=0)
            q.add_argument("--out", default="exports/multisync_preview.gif")
        elif name == "export":
            q.add_argument("--shard-size", type=int, default=1000)
            q.add_argument("--out", default="exports/multisync")
        else:
            q.add_argument("--count", type=int, default=5600)
            q.add_argument("--batch-size", type=int, default=100)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        {"preview": preview, "export": export, "stats": stats}[args.command](args)
    except (ValueError, FileNotFoundError) as error:
        p.exit(2, f"{p.prog} {args.command}: error: {error}\n")


if __name__ == "__main__":
    main(sys.argv[1:])
