"""data_gen.ssv2 on a tiny download in the official layout (real VP9 webm written with PyAV):
label order, sampling read back from the pixels, crops, both evaluation protocols, loud errors,
subsets, the JPEG layout, Something-Else boxes and the object-centric distance."""

import json
import shutil

import pytest
import torch

pytest.importorskip("av")

from data_gen import ssv2  # noqa: E402
from data_gen.ssv2 import SomethingSomethingV2, VideoError, denormalize, frame_index_of  # noqa: E402
from dyreg_edu import metrics  # noqa: E402
from dyreg_edu.metrics import box_centers, distance_sums  # noqa: E402

T = 8


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return ssv2.write_synthetic(tmp_path_factory.mktemp("ssv2"), train_per_class=2, val_per_class=1)


def indices_in_pixels(frames):
    return frame_index_of(denormalize(frames))


def test_classes_follow_labels_json(root):
    mapping = json.loads((root / "labels" / "labels.json").read_text())
    ds = SomethingSomethingV2(root, "validation", num_frames=T)
    assert ds.classes == sorted(mapping, key=lambda k: int(mapping[k]))
    records = json.loads((root / "labels" / "validation.json").read_text())
    assert len(ds) == len(records) == 4
    for vid, label, record in zip(ds.ids, ds.labels, records):
        assert vid == record["id"] and ds.classes[label] == ssv2.template_key(record["template"])


def test_old_file_names_are_found(tmp_path):
    old = ssv2.write_synthetic(tmp_path, train_per_class=1, val_per_class=1, old_names=True, frame_range=(16, 16))
    assert (old / "labels" / "something-something-v2-labels.json").exists()
    assert len(SomethingSomethingV2(old, "train", num_frames=T)) == 4
    (old / "labels" / "something-something-v2-validation.json").rename(old / "something-something-v2-validation.json")
    assert len(SomethingSomethingV2(old, "val", num_frames=T)) == 4


def test_val_takes_segment_centres_read_back_from_pixels(root):
    ds = SomethingSomethingV2(root, "validation", num_frames=T, output="dict")
    for i in range(len(ds)):
        s = ds[i]
        n = s["num_video_frames"]
        centres = torch.tensor([int(n / T / 2 + n / T * k) for k in range(T)])
        assert s["frames"].shape == (T, 3, 224, 224)
        assert torch.equal(s["indices"], centres)
        assert torch.equal(indices_in_pixels(s["frames"]), centres)


def test_train_draws_one_frame_per_segment_deterministically(root):
    ds = SomethingSomethingV2(root, "train", num_frames=T, output="dict")
    s = ds[0]
    n = s["num_video_frames"]
    seg = torch.div(s["indices"], n // T, rounding_mode="floor")
    assert torch.equal(seg, torch.arange(T))
    assert torch.equal(indices_in_pixels(s["frames"]), s["indices"])
    again = ds[0]
    assert torch.equal(again["indices"], s["indices"]) and torch.equal(again["frames"], s["frames"])
    draws = {tuple(ds[(0, epoch)]["indices"].tolist()) for epoch in range(6)}
    assert len(draws) > 1  # the epoch changes the draw


def test_test_protocol_has_two_clips_and_three_full_resolution_crops(root):
    ds = SomethingSomethingV2(root, "validation", num_frames=T, mode="test", output="dict")
    s = ds[1]
    assert ds.num_views == 6 and ds.crop == 256
    assert s["frames"].shape == (6, T, 3, 256, 256)
    n = s["num_video_frames"]
    starts = torch.tensor([int(n / T * k) for k in range(T)])
    assert torch.equal(s["indices"][1], starts)
    read = indices_in_pixels(s["frames"])
    assert torch.equal(read[:3], s["indices"][0].expand(3, T)) and torch.equal(read[3:], starts.expand(3, T))
    left, right, centre = s["crop_boxes"].tolist()
    assert left[1] == 0 and right[1] > centre[1] > 0 and left[0] == right[0] == centre[0] == 0


def test_segment_indices_edge_cases():
    assert ssv2.segment_indices(4, 8, "val").tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert ssv2.segment_indices(8, 8, "train").tolist() == list(range(8))
    assert ssv2.segment_indices(4, 8, "train").tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    g = torch.Generator().manual_seed(0)
    idx = ssv2.segment_indices(37, 8, "train", g)
    assert torch.equal(torch.div(idx, 37 // 8, rounding_mode="floor"), torch.arange(8))
    with pytest.raises(ValueError, match="mode"):
        ssv2.segment_indices(10, 4, "dense")


def test_multiscale_crop_boxes_are_tsm_s():
    g = torch.Generator().manual_seed(0)
    sides = {256, 224, 192, 168}  # int(256 * s) for s in (1, .875, .75, .66), 224 snapped
    for _ in range(200):
        top, left, h, w = ssv2.multiscale_crop_box(256, 455, 224, g)
        assert h in sides and w in sides and top + h <= 256 and left + w <= 455
        assert abs(sorted(sides).index(h) - sorted(sides).index(w)) <= 1
        assert (left, top) in ssv2.fixed_offsets(455, 256, w, h)
    assert len(set(ssv2.fixed_offsets(455, 256, 224, 224))) == 13


def test_no_horizontal_flip_keeps_the_direction(root):
    ds = SomethingSomethingV2(root, "train", num_frames=T, output="dict", annotations=root / "something_else.json")
    right = ds.classes.index("Pushing something from left to right")
    for i in [i for i, label in enumerate(ds.labels) if label == right]:
        for epoch in range(3):
            boxes = ds[(i, epoch)]["boxes"][:, 0]
            x = boxes[~boxes.isnan().any(-1), 0]  # frames where the square is inside the crop
            assert len(x) >= 2 and x[-1] > x[0]  # it moves right in every crop


def test_missing_truncated_and_unreadable_videos_are_loud(root, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    ds = SomethingSomethingV2(copy, "validation", num_frames=T)
    vid = [ds.video_path(i) for i in range(3)]
    vid[0].unlink()
    with pytest.raises(VideoError, match=rf"video {ds.ids[0]}: missing file .*{vid[0].name}"):
        ds[0]
    data = vid[1].read_bytes()
    vid[1].write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match=rf"video {ds.ids[1]}: truncated file .*{vid[1].name}"):
        ds[1]
    vid[2].write_bytes(b"not a video")
    with pytest.raises(VideoError, match=rf"video {ds.ids[2]}: cannot decode .*{vid[2].name}"):
        ds[2]
    ds[3]  # the others still load


def test_subsets_by_class_and_fraction(root):
    full = SomethingSomethingV2(root, "train", num_frames=T)
    two = ["Moving [something] up", 3]
    sub = SomethingSomethingV2(root, "train", num_frames=T, classes=two)
    assert sub.classes == [full.classes[1], full.classes[3]] and sub.class_indices == [1, 3]
    assert len(sub) == 4 and sorted(set(sub.labels)) == [0, 1]
    for vid, label in zip(sub.ids, sub.labels):
        assert full.labels[full.ids.index(vid)] == sub.class_indices[label]
    half = SomethingSomethingV2(root, "train", num_frames=T, fraction=0.5, seed=3)
    assert len(half) == 4 and set(half.ids) <= set(full.ids)
    assert half.ids == SomethingSomethingV2(root, "train", num_frames=T, fraction=0.5, seed=3).ids
    with pytest.raises(ValueError, match="unknown class 'Juggling'"):
        SomethingSomethingV2(root, "train", classes=["Juggling"])
    with pytest.raises(ValueError, match="split"):
        SomethingSomethingV2(root, "dev")


@pytest.mark.slow
def test_jpeg_layout_reads_the_same_frames(root, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    ds = SomethingSomethingV2(copy, "validation", num_frames=T, output="dict")
    assert ssv2.extract_frames(copy, ids=ds.ids[:2], workers=1, progress=False) == 2
    assert ssv2.extract_frames(copy, ids=ds.ids[:2], workers=1, progress=False) == 0  # already done
    jpeg = SomethingSomethingV2(copy, "validation", num_frames=T, output="dict", layout="jpeg")
    video = SomethingSomethingV2(copy, "validation", num_frames=T, output="dict", layout="video")
    a, b = jpeg[0], video[0]
    assert a["num_video_frames"] == b["num_video_frames"]
    assert torch.equal(indices_in_pixels(a["frames"]), b["indices"])
    assert (denormalize(a["frames"]) - denormalize(b["frames"])).abs().mean() < 4
    with pytest.raises(VideoError, match=f"video {ds.ids[2]}: no frames"):
        (copy / ssv2.FRAMES_DIR / ds.ids[2]).mkdir()
        jpeg[2]


def red_square_box(frame):
    """(x1, y1, x2, y2) of the red pixels of one frame [3, H, W] in [0, 255]."""
    red = (frame[0] > 150) & (frame[1] < 100)
    ys, xs = red.nonzero(as_tuple=True)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()


@pytest.mark.parametrize("mode", ["train", "val", "test"])
def test_something_else_boxes_follow_the_sampled_frames_and_the_crop(root, mode):
    ds = SomethingSomethingV2(root, "validation", num_frames=T, mode=mode, output="dict",
                              annotations=root / "something_else.json")
    s = ds[2]
    frames, boxes = denormalize(s["frames"]), s["boxes"]
    if mode != "test":
        frames, boxes = frames[None], boxes[None]
    assert boxes.shape == frames.shape[:2] + (1, 4)
    for v in range(frames.shape[0]):
        for t in range(T):
            box = boxes[v, t, 0]
            if box.isnan().any():
                continue  # the square is outside this crop
            # within 1.5 source pixels (the frames are 48 high, scaled x 5.3; VP9 blurs the red edges)
            assert (red_square_box(frames[v, t]) - box).abs().max() < 8, (v, t)


def test_object_centric_sums_match_the_multisync_metric():
    g = torch.Generator().manual_seed(0)
    centers = torch.rand(2, 3, 4, 2, generator=g)
    corners = torch.rand(2, 3, 5, 2, generator=g) * 100
    boxes = torch.cat([corners, corners + 10], -1)
    ours = metrics.object_centric_sums(centers, boxes, 112)
    theirs = distance_sums(centers, box_centers(boxes, 112))
    assert all(torch.isclose(torch.as_tensor(a), torch.as_tensor(b)) for a, b in zip(ours, theirs))


def test_object_centric_sums_on_hand_made_boxes():
    # one frame: nodes at (0.25, 0.5) and (0.75, 0.5); one box centred at (0.25, 0.25); a padded row
    centers = torch.tensor([[[[0.25, 0.5], [0.75, 0.5]]]])
    boxes = torch.tensor([[[[20.0, 20.0, 30.0, 30.0], [float("nan")] * 4]]])  # crop 100: centre (0.25, 0.25)
    sum_p, sum_r, n_p, n_r = metrics.object_centric_sums(centers, boxes, 100)
    assert (n_p, n_r) == (2, 1)
    assert sum_p.item() == pytest.approx(0.25 + (0.5**2 + 0.25**2) ** 0.5)
    assert sum_r.item() == pytest.approx(0.25)
    # a frame with no box at all adds nothing
    empty = torch.full((1, 1, 1, 4), float("nan"))
    both = metrics.object_centric_sums(torch.cat([centers, centers], 1),
                                    torch.cat([boxes, torch.cat([empty, empty], 2)], 1), 100)
    assert both[2:] == (2, 1) and both[0].item() == pytest.approx(sum_p.item())


def test_hand_boxes_can_be_left_out():
    records = [{"name": "7/0001.jpg", "labels": [
        {"box2d": {"x1": 0, "y1": 0, "x2": 10, "y2": 10}, "category": "hand"},
        {"box2d": {"x1": 5, "y1": 5, "x2": 15, "y2": 25}, "category": "cup"}]}]
    with_hands, without = ssv2.frame_boxes(records, [0, 1]), ssv2.frame_boxes(records, [0], include_hands=False)
    assert with_hands[0].shape == (2, 4) and with_hands[1].shape == (0, 4)
    assert without[0].tolist() == [[5.0, 5.0, 15.0, 25.0]]
