"""The data a MultiSyncMNIST run reads, and how a batch becomes the model's input.

``cfg`` is a :class:`dyreg_edu.train.TrainConfig` (any object with its data fields will do).
"""

from __future__ import annotations

from torch import Tensor

from data_gen.multisync import MultiSyncMNIST


def build_data(cfg, split: str, device=None) -> MultiSyncMNIST:
    """The training split (``train_videos`` an epoch) or the fixed validation slice (the first ``val_videos``)."""
    num = cfg.train_videos if split == "train" else cfg.val_videos
    return MultiSyncMNIST(split, num_videos=num, num_digits=cfg.num_digits, num_frames=cfg.num_frames,
                          size=cfg.size, seed=cfg.data_seed, device=device or cfg.device, digit_size=cfg.digit_size,
                          max_step=cfg.max_step, layout=cfg.layout, label=cfg.label, p_no_sync=cfg.p_no_sync)


def data_checks(cfg) -> list[tuple[str, bool, str]]:
    """The checks of ``cfg``'s data settings, as ``(name, ok, what was expected)``."""
    whole = lambda v: isinstance(v, int) and not isinstance(v, bool)  # noqa: E731
    return [
        ("digit_size", cfg.digit_size is None or (whole(cfg.digit_size) and 1 <= cfg.digit_size <= cfg.size // 2),
         f"None or an int of 1 to {cfg.size // 2} pixels (half the video)"),
        ("max_step", cfg.max_step is None or (cfg.max_step > 0 and float(2 * cfg.max_step).is_integer()),
         "None or a positive multiple of 0.5 pixels"),
        ("train_videos", cfg.train_videos >= cfg.batch_size, f"at least the batch size ({cfg.batch_size})"),
        ("val_videos", whole(cfg.val_videos) and cfg.val_videos >= 1, "a positive int"),
    ]


def as_input(videos: Tensor) -> Tensor:
    """uint8 videos ``[B, T, S, S]`` -> the model's float input ``[B, T, 1, S, S]`` in [0, 1]."""
    return videos[:, :, None].float() / 255


def model_kwargs(batch: dict, device, *, still: bool = False) -> dict:
    """A batch as the model's keyword arguments on ``device``: ``video`` (or ``features``, a
    :class:`~dyreg_edu.feature_cache.FeatureCache`'s batch) and ``boxes``; ``still=True`` freezes both at the
    first frame (the backbone reads frame by frame, so a still video's features are its first frame's)."""
    if "features" not in batch:
        video, boxes = model_inputs(batch, device, still=still)
        return {"video": video, "boxes": boxes}
    features, boxes = batch["features"].to(device), batch["boxes"].to(device)
    if still:
        features, boxes = features[:, :1].expand_as(features), boxes[:, :1].expand_as(boxes)
    return {"features": features, "boxes": boxes}


def model_inputs(batch: dict, device, *, still: bool = False) -> tuple[Tensor, Tensor]:
    """A batch's video as the model's input ``[B, T, 1, S, S]`` and its ground-truth ``boxes``
    ``[B, T, D, 4]`` (only the oracle reads them), on ``device``. ``still=True`` freezes both at
    the first frame (still videos: the digits are there, nothing moves)."""
    video, boxes = batch["video"].to(device), batch["boxes"].to(device)
    if still:
        video, boxes = video[:, :1].expand_as(video), boxes[:, :1].expand_as(boxes)
    return as_input(video), boxes
