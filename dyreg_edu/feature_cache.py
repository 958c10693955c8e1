"""The frozen layers' output, computed once per video of a fixed set (the mini design's fast path).

In the mini design the layers before the graph (stem, ``layer1``, ``layer2``) are pretrained and frozen
(:mod:`dyreg_edu.mini`), so every epoch over a fixed set of videos recomputes the same map. A
:class:`FeatureCache` computes it once, for the ``train_videos`` (or ``val_videos``) videos of a run, and
keeps it as fp16 in a memory-mapped file; the trainer then reads ``features`` where it would render a video
and run the backbone (``TrainConfig.feature_cache``). The maths is the same but for the storage precision
(fp16 keeps about three significant digits). The paper's training set is fixed too: 600,000 videos, and its
Appendix B trains to high accuracy on 10% of them.

The files live in ``runs/feature_cache/`` (``$DYREG_CACHE`` elsewhere), keyed by the backbone's weights
and the data; a cache is built on first use (with a progress bar and its size printed) and resumes if
interrupted. ``python -m dyreg_edu.feature_cache --clear`` removes them all.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

from data_gen.multisync import MultiSyncMNIST

from .inputs import as_input
from .mini import BACKBONE_PARTS, backbone_config
from .runs import REPO_ROOT, progress_bar

#: Videos rendered and passed through the backbone at a time while building.
CHUNK = 256


def cache_dir() -> Path:
    return Path(os.environ.get("DYREG_CACHE", REPO_ROOT / "runs" / "feature_cache"))


def cache_key(model, data: MultiSyncMNIST, cfg) -> str:
    """A name for the features of ``data`` under ``model``'s frozen backbone: a hash of its weights, of the
    data's settings and of the number of videos."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name.split(".")[0] in BACKBONE_PARTS:
            digest.update(name.encode() + tensor.detach().float().cpu().numpy().tobytes())
    digest.update(json.dumps({**backbone_config(cfg), "split": data.split, "videos": len(data)}, sort_keys=True).encode())
    return f"{data.split}_{len(data)}_{digest.hexdigest()[:16]}"


class FeatureCache:
    """``data``'s videos as the frozen backbone's map, ``[N, T, C, H, W]`` fp16 on disk, with the rest of
    each video's record (label, boxes, digits, sync). ``batch(indices)`` is ``data.batch(indices)`` with
    ``features`` in place of ``video``; ``len``, ``size``, ``split`` and ``num_classes`` are ``data``'s."""

    def __init__(self, model, data: MultiSyncMNIST, cfg, *, progress: bool = True):
        self.data, self.size, self.split, self.num_classes = data, data.size, data.split, data.num_classes
        self.path = cache_dir() / cache_key(model, data, cfg)
        meta = self.path.with_suffix(".json")
        self.device = next(model.parameters()).device
        with torch.no_grad():
            sample = model.eval().features(as_input(data.batch([0])["video"]).to(self.device))
        self.shape = (len(data),) + tuple(sample.shape[1:])
        built = json.loads(meta.read_text())["built"] if meta.exists() else 0
        if built < len(data):
            self._build(model, built, meta, progress)
        self.features = np.memmap(self.path.with_suffix(".f16"), dtype=np.float16, mode="r", shape=self.shape)
        self.targets = torch.load(self.path.with_suffix(".pt"), weights_only=True)

    def _build(self, model, start: int, meta: Path, progress: bool) -> None:
        """Fill the file from video ``start`` on, a chunk at a time, noting in ``meta`` how far it got."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        mode = "r+" if start else "w+"
        features = np.memmap(self.path.with_suffix(".f16"), dtype=np.float16, mode=mode, shape=self.shape)
        size = np.prod(self.shape) * 2 / 2**30
        print(f"feature cache: {self.shape[0]:,} {self.split} videos, {size:.1f} GiB at {self.path.with_suffix('.f16')}")
        saved = torch.load(self.path.with_suffix(".pt"), weights_only=True) if start else {}
        targets = {key: [value[:start]] for key, value in saved.items()}  # the records of the videos built so far
        model = model.eval()
        chunks = range(start, len(self.data), CHUNK)
        for first in progress_bar(chunks, progress, "feature cache"):
            batch = self.data.batch(range(first, min(first + CHUNK, len(self.data))))
            with torch.no_grad():
                maps = model.features(as_input(batch["video"]).to(self.device))
            features[first:first + len(maps)] = maps.half().cpu().numpy()
            for key in ("label", "boxes", "digits", "sync"):
                targets.setdefault(key, []).append(batch[key].cpu())
            if (first // CHUNK) % 20 == 19 or first + CHUNK >= len(self.data):  # now and then, and at the end
                features.flush()
                targets = {k: [torch.cat(v)] for k, v in targets.items()}
                torch.save({k: v[0] for k, v in targets.items()}, self.path.with_suffix(".pt"))
                meta.write_text(json.dumps({"built": first + len(maps), "shape": self.shape}))
        features.flush()

    def __len__(self) -> int:
        return len(self.data)

    def batch(self, indices) -> dict:
        indices = torch.as_tensor(indices, dtype=torch.int64).cpu()
        out = {key: self.targets[key][indices] for key in ("label", "boxes", "digits", "sync")}
        out["features"] = torch.from_numpy(self.features[indices.numpy()]).float()
        return out

    def iter_batches(self, batch_size: int, *, shuffle: bool = True):
        """The same batch order as ``data``'s (a step's videos are a pure function of the step)."""
        loader = self.data.iter_batches(batch_size, shuffle=shuffle)
        return loader


def clear() -> float:
    """Remove every cached file; returns the GiB freed."""
    folder = cache_dir()
    if not folder.exists():
        return 0.0
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**30
    shutil.rmtree(folder)
    return size


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m dyreg_edu.feature_cache", description=__doc__.split("\n\n")[0])
    p.add_argument("--clear", action="store_true", help=f"remove every cached file ({cache_dir()})")
    args = p.parse_args(argv)
    if args.clear:
        print(f"removed {clear():.2f} GiB from {cache_dir()}")
    else:
        files = sorted(cache_dir().glob("*.f16")) if cache_dir().exists() else []
        for f in files:
            print(f"{f.stat().st_size / 2**30:6.2f} GiB  {f.name}")
        print(f"{len(files)} caches in {cache_dir()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
