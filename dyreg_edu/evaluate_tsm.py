"""Evaluate the authors' TSM-ResNet-50 + DyReg checkpoint on a clip, as their test script does.

    python -m dyreg_edu.evaluate_tsm --checkpoint dyreg_gnn_model_l2l3l4.pth.tar --frames FRAME_DIR
    python -m dyreg_edu.evaluate_tsm --checkpoint ... --frames FRAME_DIR --full-res --labels category.txt

``--frames`` is a folder of one video's frames (``000001.jpg``, ... as their frame extraction
writes them, any image format PIL reads, sorted by name). The clip is prepared like their
single-clip evaluation: ``T`` frames at the centres of ``T`` equal segments, the shorter side
scaled to 256, a centre crop of 224 (256 with ``--full-res``, the authors' ``--full_res``, which
also runs the DyReg blocks at full resolution), ImageNet mean and std. It prints the top
classes as JSON. A whole Something-Something split, with both of the paper's protocols, is
``python -m dyreg_edu.train_ssv2 --root ROOT --evaluate CHECKPOINT`` (Chapter 9).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from torch import Tensor

#: ImageNet normalisation (the authors' ``input_mean`` / ``input_std``).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SCALE_SIZE = 256


def segment_centres(num_video_frames: int, num_frames: int) -> list[int]:
    """0-based indices of the centres of ``num_frames`` equal segments (TSN's test sampling).

    ``int(tick / 2 + tick * k)`` with ``tick = N / T``. A video shorter than ``T`` frames
    repeats its frames in order (the authors' loader would take frame 1 every time).
    """
    if num_video_frames < 1:
        raise ValueError("the video has no frames")
    if num_video_frames < num_frames:
        return [k * num_video_frames // num_frames for k in range(num_frames)]
    tick = num_video_frames / num_frames
    return [int(tick / 2 + tick * k) for k in range(num_frames)]


def frame_paths(folder: Path) -> list[Path]:
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"no frames ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return paths


def prepare_frame(image, crop: int) -> Tensor:
    """One PIL image -> ``[3, crop, crop]``: shorter side to 256, centre crop, normalised."""
    from torchvision.transforms import functional as TF

    image = TF.resize(image.convert("RGB"), SCALE_SIZE)
    tensor = TF.to_tensor(TF.center_crop(image, crop))
    return TF.normalize(tensor, MEAN, STD)


def load_clip(folder: Path, num_frames: int = 16, crop: int = 224) -> Tensor:
    """A folder of frames as the model's input ``[1, T, 3, crop, crop]``."""
    from PIL import Image

    paths = frame_paths(folder)
    frames = []
    for index in segment_centres(len(paths), num_frames):
        with Image.open(paths[index]) as image:
            frames.append(prepare_frame(image, crop))
    return torch.stack(frames)[None]


def top_classes(logits: Tensor, labels: list[str] | None = None, k: int = 5) -> list[dict]:
    """The ``k`` best classes of ``logits [K]`` with their logit and softmax probability."""
    probs = logits.softmax(-1)
    values, indices = logits.topk(min(k, logits.numel()))
    return [{"class": int(i), "label": labels[i] if labels else None, "logit": round(float(v), 4),
             "probability": round(float(probs[i]), 4)} for v, i in zip(values, indices)]


def evaluate_clip(model, clip: Tensor, labels: list[str] | None = None, k: int = 5) -> list[dict]:
    with torch.no_grad():
        logits = model.eval()(clip)[0]
    return top_classes(logits, labels, k)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, type=Path, help="the authors' .pth.tar (or one in their layout)")
    p.add_argument("--frames", type=Path, help="a folder with one video's frames")
    p.add_argument("--data", type=Path, help="not here: a whole split is python -m dyreg_edu.train_ssv2 --root ROOT --evaluate CHECKPOINT")
    p.add_argument("--num-frames", type=int, default=16, help="T (16 in the paper)")
    p.add_argument("--full-res", action="store_true", help="256 x 256 crops, DyReg at full resolution")
    p.add_argument("--labels", type=Path, help="category.txt: one class name a line, in index order")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--trust", action="store_true", help="torch.load(weights_only=False): only for a file you trust")
    args = p.parse_args(argv)
    if args.data is not None:
        p.exit(2, "evaluate_tsm: evaluates one clip (--frames FOLDER); for a whole split run "
                  f"python -m dyreg_edu.train_ssv2 --root {args.data} --evaluate {args.checkpoint}\n")
    if args.frames is None:
        p.error("give --frames FOLDER (one video's frames)")
    from .official import load_checkpoint_file, tsm_from_official

    try:  # a file that is not the authors' checkpoint: one line naming it (dyreg_edu.files)
        state = load_checkpoint_file(args.checkpoint, weights_only=not args.trust)
    except (FileNotFoundError, ValueError) as error:
        p.exit(2, f"evaluate_tsm: error: --checkpoint {error}\n")
    size = 256 if args.full_res else 224
    try:
        model = tsm_from_official(state, num_frames=args.num_frames, input_size=size, train_size=224)
        labels = args.labels.read_text().splitlines() if args.labels else None
        clip = load_clip(args.frames, args.num_frames, size)
    except (FileNotFoundError, ValueError, KeyError) as error:
        p.exit(2, f"evaluate_tsm: error: {error}\n")
    result = {"checkpoint": str(args.checkpoint), "frames": str(args.frames), "crop": size,
              "graph_stages": list(model.graph_stages), "top": evaluate_clip(model, clip, labels, args.top)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
