"""Metrics: accuracy, confusion matrix, the object-centric distance (App. F.3), the motion-blind ceiling."""

import pytest
import torch

from dyreg_edu.metrics import (accuracy, box_centers, confusion_matrix, motion_blind_ceiling, object_centric_distance,
                               region_centers, step_separation)


def test_accuracy_and_confusion():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0]])
    labels = torch.tensor([0, 1, 2, 2])
    assert accuracy(logits, labels) == 75.0
    cm = confusion_matrix(logits.argmax(-1), labels, 3)
    assert cm.tolist() == [[1, 0, 0], [0, 1, 0], [0, 1, 1]]
    with pytest.raises(ValueError, match="logits must be"):
        accuracy(logits[0], labels)


def test_centres_are_normalised_to_the_frame():
    # map pixel 0 covers [0, 1/16) of the frame: its centre is 0.5 / 16
    regions = torch.tensor([[0.0, 15.0, 2.0, 2.0]])
    assert region_centers(regions, 16, 16).tolist() == [[0.5 / 16, 15.5 / 16]]
    assert box_centers(torch.tensor([[0.0, 32.0, 64.0, 64.0]]), 128).tolist() == [[0.25, 0.375]]


def test_object_centric_distance_on_hand_made_boxes():
    # one frame, two nodes, two objects; node 0 on object 0, node 1 at distance 0.3 from object 1
    nodes = torch.tensor([[[[0.2, 0.2], [0.8, 0.5]]]])
    objects = torch.tensor([[[[0.2, 0.2], [0.8, 0.8]]]])
    d = object_centric_distance(nodes, objects)
    assert d["precision"] == pytest.approx(0.15)  # (0 + 0.3) / 2
    assert d["recall"] == pytest.approx(0.15)
    # both nodes on object 0: precision 0, recall (0 + dist(obj1, nearest node)) / 2
    both = torch.tensor([[[[0.2, 0.2], [0.2, 0.2]]]])
    d = object_centric_distance(both, objects)
    far = ((0.6 ** 2) * 2) ** 0.5
    assert d["precision"] == pytest.approx(0.0) and d["recall"] == pytest.approx(far / 2)
    assert d["score"] == 0.0  # a harmonic mean of distances follows the smaller one (the book says so)
    with pytest.raises(ValueError, match="centers must be"):
        object_centric_distance(nodes[0], objects)


def test_motion_blind_ceiling():
    # multiset {1, 2} -> label 5 twice, label 6 once: the rule predicts 5
    train_digits = torch.tensor([[1, 2], [2, 1], [1, 2], [3, 3]])
    train_labels = torch.tensor([5, 5, 6, 7])
    val_digits = torch.tensor([[2, 1], [1, 2], [3, 3], [3, 3]])
    val_labels = torch.tensor([5, 6, 7, 0])
    assert motion_blind_ceiling(train_digits, train_labels, val_digits, val_labels) == 50.0


def test_motion_blind_ceiling_with_many_digits():
    """Nine digits (Table 7's largest count) fit: the rule is kept per multiset seen, not in a 10**D table."""
    train_digits = torch.tensor([[1] * 9, [2] * 9, [1] * 9])
    train_labels = torch.tensor([3, 4, 3])
    val_digits = torch.tensor([[1] * 9, [2] * 9, [5] * 9])  # the last multiset was never seen: first class
    assert motion_blind_ceiling(train_digits, train_labels, val_digits, torch.tensor([3, 4, 0])) == 100.0


def test_region_statistics_on_hand_made_regions():
    from dyreg_edu.metrics import region_statistics

    # one frame, two nodes on a 16 x 16 map: centres 8 px apart on x, sizes 4 and 12
    regions = torch.tensor([[[[4.0, 8.0, 4.0, 4.0], [12.0, 8.0, 12.0, 12.0]]]])
    stats = region_statistics(regions, 16, 16)
    assert stats["frames"] == 1
    spread_x = torch.tensor([4.0, 12.0]).std() / 16  # y spread is 0
    assert stats["spread"].item() == pytest.approx(spread_x.item() / 2)
    assert stats["size"].item() == pytest.approx(0.5)  # (4 + 12) / 2 / 16
    with pytest.raises(ValueError, match=r"\[B, T, N, 4\]"):
        region_statistics(regions[0], 16, 16)
    single = region_statistics(regions[:, :, :1], 16, 16)  # one node: no spread (not NaN)
    assert single["spread"].item() == 0.0 and single["size"].item() == pytest.approx(0.25)


def test_step_separation_on_hand_made_steps():
    sync = torch.tensor([[True, True, False], [False, False, False], [True, False, True]])
    steps = torch.zeros(3, 2, 3, 2)
    steps[0, :, 2] = 3.0  # digit 2 moves on its own; digits 0 and 1 share a step
    steps[1, :, 0], steps[1, :, 1], steps[1, :, 2] = 1.0, 2.0, 4.0  # no sync: every pair apart
    steps[2, :, 1] = 2.0
    assert step_separation(steps, sync) == 1.0  # every pair in sync is closer than every pair apart
    assert step_separation(-steps, sync) == 1.0  # distances, not directions
    swapped = torch.tensor([[False, True, True], [False, False, False], [True, False, True]])
    assert step_separation(steps, swapped) == pytest.approx(7.5 / 14)  # a sync pair 3 apart: ties count half
    assert step_separation(torch.zeros(3, 2, 3, 2), sync) == 0.5  # steps that say nothing
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(400, 5, 3, 2, generator=generator)
    random_sync = torch.rand(400, 3, generator=generator) > 0.5
    assert abs(step_separation(noise, random_sync) - 0.5) < 0.05
    with pytest.raises(ValueError, match="needs pairs in sync and pairs not in sync, got 0 and 9"):
        step_separation(steps, torch.zeros(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"steps must be \[B, T-1, D, 2\]"):
        step_separation(steps[..., 0], sync)
