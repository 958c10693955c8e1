"""Metrics for MultiSyncMNIST (and any video classifier with regions).

- :func:`accuracy` and :func:`confusion_matrix`: classification.
- :func:`object_centric_distance`: the paper's object-centric metric (Appendix F.3,
  Eq. 15-16): how close the predicted regions' centres are to the ground-truth objects.
- :func:`region_statistics`: whether the regions are still regions: how far apart the
  nodes sit and how much of the map each one covers (a collapse shows here first).
- :func:`step_separation` (not in the paper): how well the digits' nodes' steps alone tell
  the synchronous digits from the others, as an AUC.

Coordinates: a region's centre ``(cx, cy)`` is in feature-map pixels (pixel ``q`` at the
point ``q``, see ``api.md``); pixel ``q`` covers the part ``[q, q + 1) / W`` of the frame,
so its normalised position is ``(q + 0.5) / W``. Ground-truth boxes ``(x1, y1, x2, y2)``
are in video pixels; their centre is divided by the video size. Both are then in
``[0, 1]``, the paper's "normalised to the size of the input".
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import Tensor


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy in percent: ``logits [B, K]``, ``labels [B]``."""
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"logits must be [B, K] and labels [B], got {tuple(logits.shape)} and {tuple(labels.shape)}")
    return 100.0 * (logits.argmax(-1) == labels).float().mean().item()


def confusion_matrix(predictions: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """``[K, K]`` int64 counts: row = true class, column = predicted class."""
    if predictions.shape != labels.shape:
        raise ValueError(f"predictions and labels must have one shape, got {tuple(predictions.shape)} and {tuple(labels.shape)}")
    flat = labels.long() * num_classes + predictions.long()
    return torch.bincount(flat.cpu(), minlength=num_classes * num_classes).view(num_classes, num_classes)


def region_centers(regions: Tensor, map_height: int, map_width: int) -> Tensor:
    """Normalised centres of regions ``[..., N, 4]`` (cx, cy, sx, sy in map pixels) -> ``[..., N, 2]`` in [0, 1]."""
    scale = regions.new_tensor([map_width, map_height])
    return (regions[..., :2] + 0.5) / scale


def box_centers(boxes: Tensor, video_size: int) -> Tensor:
    """Normalised centres of boxes ``[..., D, 4]`` (x1, y1, x2, y2 in video pixels) -> ``[..., D, 2]``."""
    return (boxes[..., :2] + boxes[..., 2:]) / (2 * video_size)


def distance_sums(centers: Tensor, objects: Tensor) -> tuple[Tensor, Tensor, int, int]:
    """The sums of Eq. 15 and 16 over a batch, to be averaged over a whole data set.

    ``centers [B, T, N, 2]`` (predicted, normalised), ``objects [B, T, D, 2]``
    (ground truth, normalised). Returns ``(sum_p, sum_r, count_p, count_r)``: the sum over
    frames and nodes of each node's distance to its nearest object, the sum over frames
    and objects of each object's distance to its nearest node, and how many terms each has.
    """
    if centers.dim() != 4 or objects.dim() != 4 or centers.shape[:2] != objects.shape[:2] or centers.shape[-1] != 2 or objects.shape[-1] != 2:
        raise ValueError(f"centers must be [B, T, N, 2] and objects [B, T, D, 2], got {tuple(centers.shape)} and {tuple(objects.shape)}")
    frames = rearrange(centers, "b t n xy -> (b t) n xy"), rearrange(objects, "b t d xy -> (b t) d xy")
    dist = torch.cdist(frames[0].float(), frames[1].float())  # [(B T), N, D]
    return dist.min(2).values.sum(), dist.min(1).values.sum(), dist.shape[0] * dist.shape[1], dist.shape[0] * dist.shape[2]


def object_centric_sums(centers: Tensor, boxes: Tensor, crop: int) -> tuple[Tensor, Tensor, int, int]:
    """:func:`distance_sums` with a varying number of boxes per frame (Something-Else's, Chapter 9).

    ``centers [B, T, N, 2]`` normalised region centres (:func:`region_centers`),
    ``boxes [B, T, D, 4]`` in the ``crop x crop`` input's pixels, NaN rows for no box. Frames
    without any box add nothing. With no NaN this is exactly ``distance_sums(centers,
    box_centers(boxes, crop))``.
    """
    valid = ~boxes.isnan().any(-1)  # [B, T, D]
    if valid.all():
        return distance_sums(centers, box_centers(boxes, crop))
    objects = box_centers(boxes.nan_to_num(0.0), crop)
    frames = rearrange(centers, "b t n xy -> (b t) n xy").float(), rearrange(objects, "b t d xy -> (b t) d xy").float()
    mask = rearrange(valid, "b t d -> (b t) d")
    dist = torch.cdist(*frames).masked_fill(~mask[:, None, :], math.inf)  # [(B T), N, D]
    has_box = mask.any(-1)
    nearest_object = dist.min(2).values[has_box]  # [frames with boxes, N]
    nearest_node = dist.min(1).values[mask]  # [valid boxes]
    return nearest_object.sum(), nearest_node.sum(), nearest_object.numel(), nearest_node.numel()


def harmonic_mean(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


def object_centric_distance(centers: Tensor, objects: Tensor) -> dict[str, float]:
    """Appendix F.3 on one batch: ``precision`` (Eq. 15, Dist_p), ``recall`` (Eq. 16, Dist_r)
    and ``score``, their harmonic mean. Lower is better; 0 means every node sits on an
    object and every object has a node on it. Shapes as :func:`distance_sums`.
    """
    sum_p, sum_r, n_p, n_r = distance_sums(centers, objects)
    precision, recall = sum_p.item() / n_p, sum_r.item() / n_r
    return {"precision": precision, "recall": recall, "score": harmonic_mean(precision, recall)}


def region_statistics(regions: Tensor, map_height: int, map_width: int) -> dict[str, Tensor]:
    """How spread out and how large regions ``[B, T, N, 4]`` (cx, cy, sx, sy in map pixels) are.

    Returns sums over the ``B * T`` frames (add them over batches, divide by ``frames``):

    - ``spread``: the standard deviation of the node centres over the ``N`` nodes, per axis,
      as a fraction of the map side (0: all nodes on one point; about 0.29 for centres
      spread evenly over the map; 0 for a single node);
    - ``size``: the mean half-extent ``(sx + sy) / 2`` as a fraction of the map side
      (the initial size ``H/6 + 2`` is 0.29 of a 16-pixel map; above 1 a region's tent
      covers the whole map almost flatly: the node has become a global average);
    - ``frames``: ``B * T``.
    """
    if regions.dim() != 4 or regions.shape[-1] != 4:
        raise ValueError(f"regions must be [B, T, N, 4], got {tuple(regions.shape)}")
    side = regions.new_tensor([map_width, map_height]).float()
    frames = rearrange(regions.float(), "b t n p -> (b t) n p")
    centres = frames[..., :2]
    spread = (centres.std(dim=1) / side).mean(-1) if centres.shape[1] > 1 else centres.new_zeros(len(frames))  # [(B T)]
    size = (frames[..., 2:] / side).mean(dim=(1, 2))
    return {"spread": spread.sum(), "size": size.sum(), "frames": frames.shape[0]}


class RegionScores:
    """The object-centric distance (Appendix F.3) and the regions' spread and size, summed over the
    batches of a data set: :meth:`add` each batch's regions and the digits' boxes, then :meth:`result`."""

    def __init__(self, map_height: int, map_width: int, video_size: int):
        self.map_height, self.map_width, self.video_size = map_height, map_width, video_size
        self.sums, self.shape = [0.0, 0.0, 0, 0], {"spread": 0.0, "size": 0.0, "frames": 0}

    def add(self, regions: Tensor, boxes: Tensor) -> None:
        """``regions [B, T, N, 4]`` (cx, cy, sx, sy in map pixels), ``boxes [B, T, D, 4]`` (video pixels)."""
        centers = region_centers(regions.float(), self.map_height, self.map_width)
        part = distance_sums(centers, box_centers(boxes.to(regions.device), self.video_size))
        self.sums = [a + float(b) for a, b in zip(self.sums, part)]
        stats = region_statistics(regions, self.map_height, self.map_width)
        self.shape = {k: self.shape[k] + float(v) for k, v in stats.items()}

    def result(self) -> dict:
        """``{"object_centric": {precision, recall, score}, "regions": {spread, size}}`` (``{}`` before any batch)."""
        if not self.sums[2]:
            return {}
        precision, recall = self.sums[0] / self.sums[2], self.sums[1] / self.sums[3]
        frames = self.shape["frames"]
        return {"object_centric": {"precision": precision, "recall": recall, "score": harmonic_mean(precision, recall)},
                "regions": {"spread": self.shape["spread"] / frames, "size": self.shape["size"] / frames}}


def motion_blind_ceiling(train_digits: Tensor, train_labels: Tensor, val_digits: Tensor, val_labels: Tensor) -> float:
    """The best accuracy (percent) of a classifier that sees *which* digits a video holds
    but not how they move: for each multiset of digit classes, predict the label that
    ``train`` most often gives it, and score that rule on ``val``.

    ``*_digits [V, D]`` classes, ``*_labels [V]``. A model that recognises digits perfectly
    but ignores motion cannot beat this (up to sampling error); a plain per-frame ResNet
    is such a model, so this is the bar that a graph must clear by using motion.
    """
    num_classes = int(max(train_labels.max(), val_labels.max())) + 1
    train_sets, val_sets = (digits.sort(-1).values.long().cpu() for digits in (train_digits, val_digits))
    _, ids = torch.unique(torch.cat([train_sets, val_sets]), dim=0, return_inverse=True)  # one id per multiset
    train_ids, val_ids = ids[:len(train_sets)], ids[len(train_sets):]
    table = torch.zeros(int(ids.max()) + 1, num_classes, dtype=torch.int64)  # [multisets, classes] counts
    table.index_put_((train_ids, train_labels.long().cpu()), torch.ones_like(train_ids), accumulate=True)
    best = table.argmax(-1)  # ties, and multisets never seen in training, go to the first class
    return 100.0 * (best[val_ids] == val_labels.cpu()).float().mean().item()


def step_separation(steps: Tensor, sync: Tensor) -> float:
    """How well the steps of each digit's node tell which digits move in sync (not in the paper;
    chapter 11 compares regions with it): ``steps [B, T-1, D, 2]`` (node ``d`` following digit
    ``d``, any unit), ``sync [B, D]`` the synchronous flags.

    For every pair of digits of every video, the distance between their steps averaged over the
    frames; returns the AUC, the probability that a pair moving in sync is closer than a pair that
    does not (ties count half): 1.0 when the steps alone pick out every synchronous pair, 0.5 when
    they say nothing. Computed from ranks (Mann-Whitney), so any number of pairs fits in memory.
    """
    if steps.dim() != 4 or steps.shape[-1] != 2 or sync.shape != (steps.shape[0], steps.shape[2]):
        raise ValueError(f"steps must be [B, T-1, D, 2] and sync [B, D], got {tuple(steps.shape)} and {tuple(sync.shape)}")
    first, second = torch.combinations(torch.arange(steps.shape[2], device=steps.device)).unbind(-1)  # [P] each
    distance = (steps[:, :, first] - steps[:, :, second]).norm(dim=-1).mean(1).flatten().float()  # [B P]
    together = (sync[:, first] & sync[:, second]).flatten()
    positives, negatives = int(together.sum()), int((~together).sum())
    if positives == 0 or negatives == 0:
        raise ValueError(f"step_separation needs pairs in sync and pairs not in sync, got {positives} and {negatives}")
    _, group, counts = torch.unique(distance, return_inverse=True, return_counts=True)
    mid_rank = counts.cumsum(0) - (counts - 1) / 2  # 1-based ranks, ties averaged
    rank = mid_rank[group].double()
    apart_ranks = rank[~together].sum() - negatives * (negatives + 1) / 2  # pairs (in sync, apart) ordered right
    return (apart_ranks / (positives * negatives)).item()
