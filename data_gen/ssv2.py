"""Something-Something V2 (paper Section 4.1, Appendix F) from the official download.

Bring your own download (Qualcomm's "AI datasets / something-something": 20 parts that
unzip, concatenate and untar into ``20bn-something-something-v2/<id>.webm``, and a labels
zip). The layout this module reads, exactly as distributed::

    root/
      labels/labels.json          template (no brackets) -> index as a string, "0".."173"
      labels/train.json           [{"id", "label", "template", "placeholders"}, ...]
      labels/validation.json      same records
      labels/test.json            [{"id"}, ...]; test-answers.csv ("id;template") if present
      20bn-something-something-v2/<id>.webm          VP9 in WebM, 12 fps, 240 px high
      20bn-something-something-v2-frames/<id>/000001.jpg ...   optional (``extract_frames``)

The old 20BN names (``something-something-v2-labels.json``, ``-train.json``, ...) are found
too, in ``root/labels/`` or in ``root/`` itself.

**Decoding.** A clip is decoded once, start to end, with PyAV (no seeking: VP9 in WebM
stores no frame count and seeks unreliably), and only the sampled frames are converted
to RGB. A missing, unreadable or truncated video raises :class:`VideoError` naming its id
and path; the authors' loader silently substitutes a random other video instead.

**Sampling** (TSM's ``TSNDataSet``, 0-based here; see :func:`segment_indices`): the ``N``
frames are cut into ``T`` equal segments; training takes a random frame in each, evaluation
the segment centres, and the paper's test protocol adds a second clip at the segment starts.

**Crops** (TSM's transforms, applied identically to every frame of a clip):

- ``train``: shorter side scaled to ``short_side`` (``crop * 256 // 224``: 256 for 224),
  then a multi-scale crop (:func:`multiscale_crop_box`) resized to ``crop x crop``; **no
  horizontal flip**, since flipping turns "Pushing something from left to right" into
  "...right to left".
- ``val``: shorter side 256, centre crop 224 (the 1-clip protocol of paper Table 8).
- ``test``: shorter side 256, 3 crops (left, centre, right) of 256 x 256 ("full
  resolution") x 2 clips = 6 views (the paper's main table); ``ds[i]`` is then
  ``[6, T, 3, 256, 256]``.

**Randomness** of a training sample is a pure function of ``(seed, epoch, index)``
(:meth:`SomethingSomethingV2.set_epoch`, or ``ds[(index, epoch)]``), so any number of
workers and an interrupted run resumed draw the same crops and frames.

**Subsets** for one GPU: ``fraction`` (a seeded random part of the split) and ``classes``
(e.g. the 87 templates of Mini-SSv2; labels become indices into ``ds.classes``).

**Something-Else** boxes (Materzynska et al., 2020): ``annotations=`` the merged JSON parts;
``output="dict"`` adds ``boxes [T, D, 4]`` (views first in test mode), aligned with the
sampled frames and mapped into the crop's pixels (NaN rows pad frames with fewer boxes).
:func:`dyreg_edu.metrics.object_centric_sums` is the Appendix F.3 distance on them.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

NUM_CLASSES = 174
FPS = 12
VIDEO_DIR = "20bn-something-something-v2"
FRAMES_DIR = "20bn-something-something-v2-frames"
#: Each labels file under its current (Qualcomm) name and the old 20BN one.
LABEL_FILES = {
    "labels": ("labels.json", "something-something-v2-labels.json"),
    "train": ("train.json", "something-something-v2-train.json"),
    "validation": ("validation.json", "something-something-v2-validation.json"),
    "test": ("test.json", "something-something-v2-test.json"),
}
SPLITS = {"train": "train", "validation": "validation", "val": "validation", "test": "test"}
MODES = ("train", "val", "test")
#: TSM's ``GroupMultiScaleCrop`` scales and the test crops' number of temporal clips.
SCALES = (1.0, 0.875, 0.75, 0.66)
TEST_CLIPS = 2
TEST_CROPS = 3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class VideoError(RuntimeError):
    """A video that is missing, unreadable or truncated; the message names its id and path."""


# --------------------------------------------------------------------------- labels


def template_key(template: str) -> str:
    """``"Putting [something] into [something]"`` -> ``"Putting something into something"`` (the labels.json key)."""
    return template.replace("[", "").replace("]", "")


def find_label_file(root, kind: str) -> Path:
    """The ``kind`` file (``labels``, ``train``, ``validation``, ``test``) under its current or old name,
    in ``root/labels/`` or ``root/``."""
    root = Path(root)
    candidates = [folder / name for name in LABEL_FILES[kind] for folder in (root / "labels", root)]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"no {kind} file in {root}: looked for {', '.join(str(p) for p in candidates)}")


def load_classes(root) -> list[str]:
    """The 174 templates (no brackets) in label order, from ``labels.json``."""
    mapping = json.loads(find_label_file(root, "labels").read_text())
    order = sorted(mapping, key=lambda k: int(mapping[k]))
    if [int(mapping[k]) for k in order] != list(range(len(order))):
        raise ValueError(f"{find_label_file(root, 'labels')}: indices must be 0..{len(order) - 1}, each once")
    return order


def load_records(root, split: str, classes: Sequence[str]) -> list[tuple[str, int]]:
    """``(id, label)`` of every video of ``split`` (label -1 for test videos without answers)."""
    split = SPLITS[split]
    index = {name: i for i, name in enumerate(classes)}
    records = json.loads(find_label_file(root, split).read_text())
    if split != "test":
        return [(str(r["id"]), index[template_key(r["template"])]) for r in records]
    answers = {}
    for folder in (Path(root) / "labels", Path(root)):
        if (folder / "test-answers.csv").is_file():
            with (folder / "test-answers.csv").open() as f:
                answers = {row[0]: index[template_key(row[1])] for row in csv.reader(f, delimiter=";") if row}
            break
    return [(str(r["id"]), answers.get(str(r["id"]), -1)) for r in records]


# --------------------------------------------------------------------------- sampling


def segment_indices(num_video_frames: int, num_segments: int, mode: str = "val",
                    generator: torch.Generator | None = None) -> Tensor:
    """TSN segment sampling: ``T = num_segments`` frame indices (0-based, int64 ``[T]``) of a
    clip of ``N = num_video_frames`` frames.

    - ``"train"``: ``N // T`` frames a segment, one random frame in each
      (``k * (N // T) + randint(N // T)``; the last ``N mod T`` frames are never drawn, as in TSM).
    - ``"val"``: the segment centres, ``int(tick / 2 + tick * k)`` with ``tick = N / T``.
    - ``"starts"``: the segment starts, ``int(tick * k)`` (the second clip of the test protocol).

    Short clips (``N < T``, and ``N = T`` in evaluation): the centres, repeating frames where
    ``N < T``; TSM returns frame 0 ``T`` times there (its comment: "shouldn't here be a range?").
    """
    N, T = num_video_frames, num_segments
    if N < 1 or T < 1:
        raise ValueError(f"need at least one frame and one segment, got N={N}, T={T}")
    k = torch.arange(T)
    tick = N / T
    if mode == "train" and N >= T:
        length = N // T
        return k * length + torch.randint(length, (T,), generator=generator)
    if mode in ("train", "val"):
        return torch.tensor([int(tick / 2 + tick * i) for i in range(T)])
    if mode == "starts":
        return torch.tensor([int(tick * i) for i in range(T)])
    raise ValueError(f"mode must be 'train', 'val' or 'starts', got {mode!r}")


def test_indices(num_video_frames: int, num_segments: int) -> Tensor:
    """The paper's two clips (TSM's ``twice_sample``): ``[2, T]``, segment centres then starts."""
    return torch.stack([segment_indices(num_video_frames, num_segments, "val"),
                        segment_indices(num_video_frames, num_segments, "starts")])


# --------------------------------------------------------------------------- crops


def fixed_offsets(image_w: int, image_h: int, crop_w: int, crop_h: int) -> list[tuple[int, int]]:
    """The 13 crop origins ``(x, y)`` of TSM's ``more_fix_crop``: 4 corners, centre, 4 edge centres,
    4 quarter points, on a grid of quarter steps."""
    w, h = (image_w - crop_w) // 4, (image_h - crop_h) // 4
    return [(0, 0), (4 * w, 0), (0, 4 * h), (4 * w, 4 * h), (2 * w, 2 * h),
            (0, 2 * h), (4 * w, 2 * h), (2 * w, 4 * h), (2 * w, 0),
            (w, h), (3 * w, h), (w, 3 * h), (3 * w, 3 * h)]


def multiscale_crop_box(image_h: int, image_w: int, crop: int, generator: torch.Generator | None = None,
                        scales: Sequence[float] = SCALES, max_distort: int = 1) -> tuple[int, int, int, int]:
    """TSM's ``GroupMultiScaleCrop``: a box ``(top, left, height, width)`` to be resized to ``crop x crop``.

    Sides are ``int(short_side * scale)`` for each scale (snapped to ``crop`` within 3 pixels);
    height and width scales differ by at most ``max_distort`` steps; the origin is one of
    :func:`fixed_offsets`. All choices uniform.
    """
    sides = [int(min(image_h, image_w) * s) for s in scales]
    sides = [crop if abs(s - crop) < 3 else s for s in sides]
    pairs = [(w, h) for i, h in enumerate(sides) for j, w in enumerate(sides) if abs(i - j) <= max_distort]
    w, h = pairs[int(torch.randint(len(pairs), (), generator=generator))]
    offsets = fixed_offsets(image_w, image_h, w, h)
    x, y = offsets[int(torch.randint(len(offsets), (), generator=generator))]
    return y, x, h, w


def centre_crop_box(image_h: int, image_w: int, crop: int) -> tuple[int, int, int, int]:
    """torchvision's ``CenterCrop``: ``(top, left, crop, crop)``."""
    return int(round((image_h - crop) / 2)), int(round((image_w - crop) / 2)), crop, crop


def three_crop_boxes(image_h: int, image_w: int, crop: int) -> list[tuple[int, int, int, int]]:
    """TSM's ``GroupFullResSample`` without flip: left, right and centre crops at mid height."""
    w, h = (image_w - crop) // 4, (image_h - crop) // 4
    return [(2 * h, x, crop, crop) for x in (0, 4 * w, 2 * w)]


def scaled_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """torchvision ``Resize(short_side)``: the shorter side becomes ``short_side``, aspect kept."""
    if height <= width:
        return short_side, int(short_side * width / height)
    return int(short_side * height / width), short_side


def resize(frames: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear (antialiased) resize of float ``[T, 3, H, W]`` to ``size = (h, w)``."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    return F.interpolate(frames, size=size, mode="bilinear", align_corners=False, antialias=True)


def normalize(frames: Tensor) -> Tensor:
    """float ``[..., 3, H, W]`` in [0, 255] -> ImageNet-normalised."""
    mean = frames.new_tensor(IMAGENET_MEAN)[:, None, None] * 255
    std = frames.new_tensor(IMAGENET_STD)[:, None, None] * 255
    return (frames - mean) / std


def denormalize(frames: Tensor) -> Tensor:
    """Inverse of :func:`normalize`: back to [0, 255] floats (for figures and tests)."""
    mean = frames.new_tensor(IMAGENET_MEAN)[:, None, None] * 255
    std = frames.new_tensor(IMAGENET_STD)[:, None, None] * 255
    return frames * std + mean


# --------------------------------------------------------------------------- reading videos


def decode_video(path, video_id: str = "?"):
    """Every frame of a webm, decoded once from start to end: a list of ``av.VideoFrame``.

    Raises :class:`VideoError` (naming ``video_id`` and ``path``) if the file is missing or
    unreadable, has no frames, or ends before the duration its header announces (truncated).
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"video {video_id}: missing file {path}")
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            frames = list(container.decode(stream))
            duration = container.duration / 1e6 if container.duration else None
            rate = float(stream.average_rate or stream.guessed_rate or FPS)
    except (av.error.FFmpegError, IndexError, ValueError) as error:
        raise VideoError(f"video {video_id}: cannot decode {path}: {error}") from error
    if not frames:
        raise VideoError(f"video {video_id}: no frames in {path}")
    last = frames[-1].time
    if duration is not None and last is not None and duration - (last + 1 / rate) > 1.5 / rate:
        raise VideoError(f"video {video_id}: truncated file {path}: decoding stops at {last + 1 / rate:.2f} s "
                         f"of the {duration:.2f} s its header announces ({len(frames)} frames)")
    return frames


def frames_to_tensor(frames: Sequence, indices: Iterable[int]) -> Tensor:
    """The chosen ``av.VideoFrame`` s as uint8 ``[len, H, W, 3]`` RGB (converting only those)."""
    import numpy as np

    return torch.from_numpy(np.stack([frames[int(i)].to_ndarray(format="rgb24") for i in indices]))


def jpeg_paths(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.jpg"))


def read_jpegs(paths: Sequence[Path], indices: Iterable[int], video_id: str = "?") -> Tensor:
    """Frames of the JPEG layout as uint8 ``[len, H, W, 3]``; an unreadable file raises :class:`VideoError`."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    out = []
    for i in indices:
        try:
            with Image.open(paths[int(i)]) as image:
                out.append(np.asarray(image.convert("RGB")))
        except (OSError, UnidentifiedImageError) as error:
            raise VideoError(f"video {video_id}: cannot read frame {paths[int(i)]}: {error}") from error
    return torch.from_numpy(np.stack(out))


# --------------------------------------------------------------------------- Something-Else


def load_something_else(paths) -> dict[str, list]:
    """Something-Else box annotations: the JSON parts (a path or a list of paths) merged into
    one dict ``{video id: [frame record, ...]}``; each record has ``name`` (``"<id>/0001.jpg"``,
    1-based at 12 fps) and ``labels`` (``box2d`` ``{x1, y1, x2, y2}`` in original pixels, ``category``)."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    merged: dict[str, list] = {}
    for path in paths:
        merged.update({str(k): v for k, v in json.loads(Path(path).read_text()).items()})
    return merged


def frame_boxes(records: list, indices: Iterable[int], include_hands: bool = True) -> list[Tensor]:
    """The boxes at each sampled frame (0-based ``indices``; Something-Else names frames from 1):
    a list of float ``[D_t, 4]`` ``(x1, y1, x2, y2)`` in original pixels, empty where unannotated."""
    by_frame = {int(Path(r["name"]).stem) - 1: r for r in records}
    out = []
    for i in indices:
        labels = by_frame.get(int(i), {}).get("labels", [])
        boxes = [[b["box2d"][k] for k in ("x1", "y1", "x2", "y2")] for b in labels
                 if include_hands or b.get("category") != "hand"]
        out.append(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    return out


def boxes_in_crop(boxes: Tensor, scale: tuple[float, float], box: tuple[int, int, int, int], crop: int) -> Tensor:
    """Boxes ``[D, 4]`` in original pixels -> pixels of the ``crop x crop`` network input: scaled by
    ``scale = (sy, sx)`` (the resize to the short side), shifted by the crop box ``(top, left, h, w)``,
    resized to ``crop``, clipped to the frame; boxes left with no area are dropped."""
    top, left, h, w = box
    sy, sx = scale
    x = (boxes[:, 0::2] * sx - left) * crop / w
    y = (boxes[:, 1::2] * sy - top) * crop / h
    out = torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], -1).clamp(0, crop)
    return out[(out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])]


def pad_boxes(per_frame: list[Tensor], num: int | None = None) -> Tensor:
    """A list of ``[D_t, 4]`` -> ``[T, D, 4]`` with NaN rows where a frame has fewer boxes."""
    num = max([len(b) for b in per_frame] + [num or 1])
    out = torch.full((len(per_frame), num, 4), float("nan"))
    for t, b in enumerate(per_frame):
        out[t, :len(b)] = b
    return out


# --------------------------------------------------------------------------- the data set


class SomethingSomethingV2(torch.utils.data.Dataset):
    """Something-Something V2 from the official download (see the module docstring).

    ``ds[i]`` is ``(frames, label)``: float ``[T, 3, crop, crop]`` ImageNet-normalised
    (``[6, T, 3, crop, crop]`` in ``mode="test"``) and the class index (into ``ds.classes``).
    ``output="dict"`` gives a dict with ``frames``, ``label``, ``id``, ``indices`` (the sampled
    0-based frame numbers, ``[T]`` or ``[2, T]``), ``num_video_frames`` and, with
    ``annotations``, ``boxes``.

    Args:
        root: the unpacked download.
        split: ``"train"``, ``"validation"`` (or ``"val"``), ``"test"``.
        num_frames: ``T`` (16 in the paper).
        mode: ``"train"``, ``"val"`` (1 clip, centre crop) or ``"test"`` (3 crops x 2 clips);
            ``None``: ``"train"`` for the train split, else ``"val"``.
        crop: the network's input side (224; ``None`` is 224, or 256 in ``"test"`` mode).
        short_side: the side frames are scaled to before cropping (default ``crop * 256 // 224``,
            and ``crop`` in ``"test"`` mode: full resolution).
        fraction: keep a seeded random ``fraction`` of the videos (in file order).
        classes: keep these templates (names, brackets optional, or indices in labels.json);
            labels become indices into ``ds.classes``, which keeps labels.json's order.
        layout: ``"video"`` (webm), ``"jpeg"`` (``extract_frames``'s folders) or ``"auto"``
            (the JPEG folder of a video if it exists, else its webm).
        seed: the random draws of training samples and of ``fraction``.
        annotations: Something-Else boxes (a dict from :func:`load_something_else`, or paths).
        include_hands: count hand boxes as objects (the paper does not say; our default yes).
    """

    def __init__(self, root, split: str = "train", *, num_frames: int = 16, mode: str | None = None,
                 crop: int | None = None, short_side: int | None = None, fraction: float | None = None,
                 classes: Sequence | None = None, layout: str = "auto", seed: int = 0, annotations=None,
                 include_hands: bool = True, output: str = "tuple"):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
        mode = mode or ("train" if split == "train" else "val")
        checks = [("mode", mode in MODES, f"one of {MODES}"), ("layout", layout in ("auto", "video", "jpeg"), "'auto', 'video' or 'jpeg'"),
                  ("output", output in ("tuple", "dict"), "'tuple' or 'dict'"), ("num_frames", num_frames >= 1, "positive"),
                  ("fraction", fraction is None or 0 < fraction <= 1, "in (0, 1]"),
                  ("crop", crop is None or (isinstance(crop, int) and crop >= 1), "a positive int of pixels, or None"),
                  ("short_side", short_side is None or (isinstance(short_side, int) and short_side >= (crop or 1)),
                   "an int of pixels at least the crop, or None")]
        for name, ok, expected in checks:
            if not ok:
                raise ValueError(f"{name} must be {expected}, got {locals()[name]!r}")
        self.root, self.split, self.mode, self.num_frames = Path(root), SPLITS[split], mode, num_frames
        self.crop = (256 if mode == "test" else 224) if crop is None else crop
        self.short_side = (self.crop if mode == "test" else self.crop * 256 // 224) if short_side is None else short_side
        self.layout, self.seed, self.output, self.include_hands, self.epoch = layout, seed, output, include_hands, 0
        all_classes = load_classes(root)
        records = load_records(root, split, all_classes)
        self.class_indices = self._class_indices(classes, all_classes)
        keep = {c: i for i, c in enumerate(self.class_indices)}
        self.classes = [all_classes[c] for c in self.class_indices]
        records = [(vid, keep[label] if label >= 0 else -1) for vid, label in records if label < 0 or label in keep]
        if fraction is not None and fraction < 1:
            g = torch.Generator().manual_seed(seed)
            chosen = torch.randperm(len(records), generator=g)[:max(1, round(fraction * len(records)))].sort().values
            records = [records[int(i)] for i in chosen]
        self.ids = [vid for vid, _ in records]
        self.labels = [label for _, label in records]
        if annotations is not None and not isinstance(annotations, dict):
            annotations = load_something_else(annotations)
        self.annotations = annotations

    @staticmethod
    def _class_indices(classes, all_classes) -> list[int]:
        if classes is None:
            return list(range(len(all_classes)))
        index = {name: i for i, name in enumerate(all_classes)}
        out = []
        for c in classes:
            if isinstance(c, int) and 0 <= c < len(all_classes):
                out.append(c)
            elif isinstance(c, str) and template_key(c) in index:
                out.append(index[template_key(c)])
            else:
                raise ValueError(f"unknown class {c!r}: give a template of labels.json or an index below {len(all_classes)}")
        return sorted(set(out))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def num_views(self) -> int:
        return TEST_CLIPS * TEST_CROPS if self.mode == "test" else 1

    def set_epoch(self, epoch: int) -> None:
        """Training draws depend on ``(seed, epoch, index)``; set the epoch before iterating."""
        self.epoch = int(epoch)

    def video_path(self, i: int) -> Path:
        return self.root / VIDEO_DIR / f"{self.ids[i]}.webm"

    def frame_folder(self, i: int) -> Path:
        return self.root / FRAMES_DIR / self.ids[i]

    def generator(self, index: int, epoch: int) -> torch.Generator:
        """The random generator of one training sample (a pure function of seed, epoch, index)."""
        key = ((self.seed * 1_000_003 + epoch) * 2_147_483_647 + index) % (2**63 - 1)
        return torch.Generator().manual_seed(key)

    def _source(self, i: int):
        """``(number of frames, fetch(indices) -> uint8 [len, H, W, 3])`` for video ``i``."""
        vid, folder = self.ids[i], self.frame_folder(i)
        use_jpeg = self.layout == "jpeg" or (self.layout == "auto" and folder.is_dir())
        if use_jpeg:
            paths = jpeg_paths(folder)
            if not paths:
                raise VideoError(f"video {vid}: no frames in {folder}")
            return len(paths), lambda idx: read_jpegs(paths, idx, vid)
        frames = decode_video(self.video_path(i), vid)
        return len(frames), lambda idx: frames_to_tensor(frames, idx)

    def sample(self, i: int, epoch: int | None = None) -> dict:
        """The dict of one video (see the class docstring)."""
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} videos")
        epoch = self.epoch if epoch is None else epoch
        g = self.generator(i, epoch) if self.mode == "train" else None
        count, fetch = self._source(i)
        if self.mode == "test":
            indices = test_indices(count, self.num_frames)
        else:
            indices = segment_indices(count, self.num_frames, self.mode, g)
        raw = fetch(indices.flatten()).permute(0, 3, 1, 2).float()  # [(clips T), 3, H, W]
        height, width = raw.shape[-2:]
        size = scaled_size(height, width, self.short_side)
        frames = resize(raw, size)
        if self.mode == "train":
            boxes = [multiscale_crop_box(*size, self.crop, g)]
        elif self.mode == "val":
            boxes = [centre_crop_box(*size, self.crop)]
        else:
            boxes = three_crop_boxes(*size, self.crop)
        clips = rearrange(frames, "(c t) ch h w -> c t ch h w", t=self.num_frames)
        views = [resize(clip[..., top:top + h, left:left + w], (self.crop, self.crop))
                 for clip in clips for (top, left, h, w) in boxes]
        out = {"frames": normalize(torch.stack(views) if self.mode == "test" else views[0]),
               "label": self.labels[i], "id": self.ids[i], "indices": indices, "num_video_frames": count,
               "crop_boxes": torch.tensor(boxes)}
        if self.annotations is not None:
            out["boxes"] = self._boxes(i, indices, (size[0] / height, size[1] / width), boxes)
        return out

    def _boxes(self, i, indices, scale, crop_boxes) -> Tensor:
        records = self.annotations.get(self.ids[i])
        if records is None:
            raise KeyError(f"video {self.ids[i]} has no Something-Else annotation")
        per_view = []
        for clip in indices.reshape(-1, self.num_frames):
            raw = frame_boxes(records, clip, self.include_hands)
            per_view += [[boxes_in_crop(b, scale, box, self.crop) for b in raw] for box in crop_boxes]
        num = max(len(b) for view in per_view for b in view)
        padded = torch.stack([pad_boxes(view, num) for view in per_view])
        return padded if self.mode == "test" else padded[0]

    def __getitem__(self, key):
        i, epoch = key if isinstance(key, tuple) else (key, None)
        sample = self.sample(int(i), epoch)
        if self.output == "dict":
            return sample
        return sample["frames"], sample["label"]


def collate_boxes(samples: list[dict]) -> dict:
    """``DataLoader`` collate for ``output="dict"``: frames and labels stacked, boxes padded with NaN."""
    out = {"frames": torch.stack([s["frames"] for s in samples]), "label": torch.tensor([s["label"] for s in samples]),
           "id": [s["id"] for s in samples]}
    if "boxes" in samples[0]:
        num = max(s["boxes"].shape[-2] for s in samples)
        out["boxes"] = torch.stack([F.pad(s["boxes"], (0, 0, 0, num - s["boxes"].shape[-2]), value=float("nan"))
                                    for s in samples])
    return out


# --------------------------------------------------------------------------- a synthetic download


#: Templates of the synthetic data set: how the square moves (dx, dy per frame, in frame widths/heights).
SYNTHETIC_TEMPLATES = {
    "Pushing [something] from left to right": (1, 0),
    "Pushing [something] from right to left": (-1, 0),
    "Moving [something] up": (0, -1),
    "Moving [something] down": (0, 1),
}


def write_webm(path, frames: Tensor, fps: int = FPS) -> None:
    """uint8 ``[T, H, W, 3]`` RGB (even ``H``, ``W``) -> a VP9 WebM, as the official videos are."""
    import av

    with av.open(str(path), "w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=fps)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "10", "deadline": "realtime", "cpu-used": "8"}
        for frame in frames.numpy():
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def synthetic_clip(num_frames: int, height: int, width: int, motion: tuple[int, int], start: float = 0.5,
                   square: bool = True) -> tuple[Tensor, Tensor]:
    """A clip whose background brightness encodes the frame index (``20 + 5 t``: read back with
    :func:`frame_index_of`) and a red square that moves by ``motion`` across the frame.

    Returns uint8 ``[T, H, W, 3]`` and the square's boxes ``[T, 4]`` (x1, y1, x2, y2) in pixels.
    """
    if num_frames > 47:
        raise ValueError(f"the brightness code holds at most 47 frames, got {num_frames}")
    t = torch.arange(num_frames)
    frames = (20 + 5 * t).to(torch.uint8)[:, None, None, None].expand(num_frames, height, width, 3).clone()
    side = height // 4
    progress = t / max(1, num_frames - 1) - 0.5  # -0.5 .. 0.5
    cx = width * (start + 0.6 * motion[0] * progress)
    cy = height * (0.5 + 0.6 * motion[1] * progress)
    boxes = torch.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], -1).round()
    if square:
        for k, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
            frames[k, max(0, y1):y2, max(0, x1):x2] = torch.tensor([230, 30, 30], dtype=torch.uint8)
    return frames, boxes


def frame_index_of(frames: Tensor) -> Tensor:
    """Read back :func:`synthetic_clip`'s code: ``[..., 3, H, W]`` in [0, 255] -> int64 ``[...]``
    (the median green value, which the square does not change)."""
    green = frames[..., 1, :, :].flatten(-2)
    return ((green.median(-1).values - 20) / 5).round().long()


def write_synthetic(root, *, templates: dict | None = None, train_per_class: int = 6, val_per_class: int = 2,
                    frame_range: tuple[int, int] = (20, 40), height: int = 48, width: int = 86, seed: int = 0,
                    old_names: bool = False, something_else: bool = True) -> Path:
    """A small download in the official layout (see the module docstring): VP9 webm clips of
    :func:`synthetic_clip`, one template per kind of motion, ``labels/*.json`` and (if
    ``something_else``) ``something_else.json`` with the square's boxes (Something-Else format).

    ``labels.json`` lists the templates sorted alphabetically, as the official file does; ids
    are consecutive integers from 1. ``old_names=True`` writes the 20BN file names instead.
    """
    root = Path(root)
    templates = templates or SYNTHETIC_TEMPLATES
    names = sorted(templates, key=template_key)
    g = torch.Generator().manual_seed(seed)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    (root / VIDEO_DIR).mkdir(exist_ok=True)
    file = {kind: LABEL_FILES[kind][1 if old_names else 0] for kind in LABEL_FILES}
    (root / "labels" / file["labels"]).write_text(json.dumps({template_key(n): str(i) for i, n in enumerate(names)}, indent=1))
    next_id, annotations, test = 1, {}, []
    for split, per_class in (("train", train_per_class), ("validation", val_per_class)):
        records = []
        for _ in range(per_class):
            for name in names:
                count = int(torch.randint(frame_range[0], frame_range[1] + 1, (), generator=g))
                start = 0.5 + 0.2 * (float(torch.rand((), generator=g)) - 0.5)
                frames, boxes = synthetic_clip(count, height, width, templates[name], start)
                write_webm(root / VIDEO_DIR / f"{next_id}.webm", frames)
                noun = "a red square"
                records.append({"id": str(next_id), "label": name.replace("[something]", noun).lower(),
                                "template": name, "placeholders": [noun]})
                annotations[str(next_id)] = [
                    {"name": f"{next_id}/{k + 1:04d}.jpg", "labels": [
                        {"box2d": dict(zip(("x1", "y1", "x2", "y2"), box.tolist())), "category": "red square",
                         "standard_category": "0000"}], "nr_instances": 1, "gt_placeholders": [noun]}
                    for k, box in enumerate(boxes)]
                next_id += 1
        (root / "labels" / file[split]).write_text(json.dumps(records, indent=1))
    (root / "labels" / file["test"]).write_text(json.dumps(test))
    if something_else:
        (root / "something_else.json").write_text(json.dumps(annotations))
    return root


# --------------------------------------------------------------------------- JPEG extraction (optional)


def extract_video(task: tuple) -> tuple[str, int]:
    """Decode one webm and write its frames, shorter side ``short_side``, as ``<folder>/000001.jpg`` ...
    (the authors' ``vid2img`` layout, 1-based). Returns ``(id, frame count)``."""
    from PIL import Image

    path, folder, video_id, short_side, quality = task
    frames = decode_video(path, video_id)
    folder = Path(folder)
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(frames):
        image = frames_to_tensor(frames, [k]).permute(0, 3, 1, 2).float()
        image = resize(image, scaled_size(*image.shape[-2:], short_side))[0].round().clamp(0, 255).to(torch.uint8)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(tmp / f"{k + 1:06d}.jpg", quality=quality)
    tmp.rename(folder)  # a folder appears whole or not at all
    return video_id, len(frames)


def extract_frames(root, *, ids: Sequence[str] | None = None, workers: int = 4, short_side: int = 256,
                   quality: int = 95, progress: bool = True) -> int:
    """Write every video's frames as JPEG to ``root/20bn-something-something-v2-frames/<id>/``
    with a process pool, skipping videos already extracted. For disks faster than decoders;
    the loader reads either layout. Returns the number of videos extracted."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from tqdm.auto import tqdm

    root = Path(root)
    ids = ids if ids is not None else sorted((p.stem for p in (root / VIDEO_DIR).glob("*.webm")), key=int)
    tasks = [(root / VIDEO_DIR / f"{vid}.webm", root / FRAMES_DIR / vid, vid, short_side, quality)
             for vid in ids if not (root / FRAMES_DIR / vid).is_dir()]
    if not tasks:
        return 0
    # spawn, not fork: a forked child can inherit a lock held by one of the parent's decoder or
    # OpenMP threads and wait on it forever
    with ProcessPoolExecutor(max(1, workers), mp_context=multiprocessing.get_context("spawn")) as pool:
        for _ in tqdm(pool.map(extract_video, tasks, chunksize=8), total=len(tasks), disable=not progress,
                      desc="extracting"):
            pass
    return len(tasks)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m data_gen.ssv2",
                                description="Something-Something V2 helpers: JPEG extraction, a synthetic download.")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("extract", help="decode every webm to JPEG frames (optional; the loader reads webm directly)")
    e.add_argument("--root", required=True)
    e.add_argument("--workers", type=int, default=4)
    e.add_argument("--short-side", type=int, default=256)
    e.add_argument("--quality", type=int, default=95)
    s = sub.add_parser("synthetic", help="write a small data set in the official layout")
    s.add_argument("--root", required=True)
    s.add_argument("--train-per-class", type=int, default=6)
    s.add_argument("--val-per-class", type=int, default=2)
    args = p.parse_args(argv)
    try:
        if args.command == "extract":
            print(f"extracted {extract_frames(args.root, workers=args.workers, short_side=args.short_side, quality=args.quality)} videos")
        else:
            print(write_synthetic(args.root, train_per_class=args.train_per_class, val_per_class=args.val_per_class))
    except (VideoError, FileNotFoundError, ValueError) as error:
        p.exit(2, f"{p.prog}: error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
