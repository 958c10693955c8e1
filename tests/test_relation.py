"""The graph-alone experiment (dyreg_edu.experiments.relation)."""

import dataclasses
import pytest
import torch

from dyreg_edu.experiments import relation


def fake_batch():
    boxes = torch.zeros(1, 3, 2, 4)  # [B, T, D, 4]: digit 0 moves right 2 px a frame, digit 1 stays
    for t in range(3):
        boxes[0, t, 0] = torch.tensor([2.0 * t, 0, 2.0 * t + 8, 8])
        boxes[0, t, 1] = torch.tensor([10.0, 10, 18, 18])
    return {"boxes": boxes, "digits": torch.tensor([[3, 7]]), "sync": torch.tensor([[True, False]])}


def test_node_inputs_hold_centres_or_steps_and_the_class():
    batch = fake_batch()
    centres = relation.node_inputs(batch, "centres", video_size=32)
    steps = relation.node_inputs(batch, "steps", video_size=32, scale=10.0)
    assert centres.shape == steps.shape == (1, 3, 2, 12)
    assert torch.allclose(centres[0, :, 0, 0], torch.tensor([4.0, 6.0, 8.0]) / 32)
    assert torch.allclose(steps[0, :, 0, 0], torch.tensor([0.0, 20.0, 20.0]) / 32)  # 2 px a frame, x10
    assert torch.all(steps[0, :, 1, :2] == 0)
    assert steps[0, 0, 0, 2 + 3] == 1 and steps[0, 0, 1, 2 + 7] == 1 and steps[..., 2:].sum() == 6


def test_bad_settings_name_the_value():
    with pytest.raises(ValueError, match="inputs must be one of"):
        relation.RelationConfig(inputs="positions")
    with pytest.raises(ValueError, match="messages must be one of"):
        relation.RelationConfig(messages="mean")
    with pytest.raises(ValueError, match="steps must be a positive int"):
        relation.RelationConfig(steps=0)
    with pytest.raises(ValueError, match="target must be one of"):
        relation.RelationConfig(target="labels")
    with pytest.raises(ValueError, match=r"until must be an accuracy in \[0, 100\].*got 120.0"):
        relation.RelationConfig(until=120.0)
    with pytest.raises(ValueError, match="until must be an accuracy in .*got '98'"):
        relation.RelationConfig(until="98")


def test_probe_gives_one_logit_per_digit_and_a_run_records_its_curve():
    probe = relation.RelationProbe(channels=8, messages="concat")
    assert probe(relation.node_inputs(fake_batch(), "steps", 32)).shape == (1, 2)
    cfg = relation.RelationConfig(inputs="steps", steps=4, batch_size=8, val_videos=16, eval_every=2, channels=8)
    result = relation.run(cfg)
    assert [r["step"] for r in result["curve"]] == [2, 4]
    assert 50.0 <= result["base_rate"] <= 100.0 and result["train_videos"] == 32
    # until: stop at the first evaluation that reaches it (some of the 48 flags are right)
    early = relation.run(dataclasses.replace(cfg, steps=6, eval_every=2, until=1e-9), ceiling_videos=2_000)
    assert [r["step"] for r in early["curve"]] == [2] and early["train_videos"] == 16


def test_label_target_reads_the_56_classes_and_its_base_rate_is_the_motion_blind_ceiling():
    probe = relation.RelationProbe(channels=8, target="label")
    assert probe(relation.node_inputs(fake_batch(), "steps", 32)).shape == (1, 56)
    cfg = relation.RelationConfig(inputs="steps", target="label", steps=4, batch_size=8, val_videos=16,
                                  eval_every=4, channels=8)
    result = relation.run(cfg, ceiling_videos=2_000)
    assert [r["step"] for r in result["curve"]] == [4]
    # the ceiling of a rule that knows the digits: far above chance (1/56), below 100
    assert 100 / 56 < result["base_rate"] < 100.0


def test_ideal_nodes_gate_the_class_by_the_sync_flag_and_the_head_can_read_the_label_from_them():
    nodes = relation.ideal_nodes(torch.tensor([[3, 7]]), torch.tensor([[True, False]]))
    assert nodes.shape == (1, 20)
    assert nodes[0, 3] == nodes[0, 7] == 0.5 and nodes[0, 10 + 3] == 0.5 and nodes[0, 10 + 7] == 0
    accuracy = relation.read_out_check(train_videos=4_000, val_videos=500, steps=300)
    assert accuracy["classes_and_sync"] > accuracy["classes"] + 20
