"""The mini design (dyreg_edu.mini): the digit backbone learned once, the plain model's head, designs."""

import dataclasses

import pytest
import torch

from dyreg_edu import ablations, mini, runs, train
from dyreg_edu.mini import digit_targets
from dyreg_edu.train import config, load_trained

from test_train import tiny


def test_digit_targets_mark_the_centre_cells():
    boxes = torch.tensor([[[[0.0, 0.0, 7.0, 7.0], [24.0, 8.0, 31.0, 15.0]]]])  # [B=1, T=1, D=2, 4] in a 32-px video
    target = digit_targets(boxes, torch.tensor([[3, 7]]), map_size=8, video_size=32)
    assert target.shape == (1, 1, 8, 8)
    assert target[0, 0, 0, 0] == 3 and target[0, 0, 2, 6] == 7
    assert (target == 10).sum() == 62


def test_other_data_get_their_own_cached_backbone_and_plain_model():
    """num_digits, num_frames and data_seed are part of the data: a backbone cached for the
    committed design is never reused (or overwritten) for another."""
    committed = config("dyreg", "mini")
    names = {mini.digit_backbone_path(committed).name, mini.resnet_head_path(committed).name}
    assert names == {"multisync_mini_digits.pt", "multisync_mini_resnet18.pt"}
    for other in (dict(num_digits=4), dict(num_frames=6), dict(data_seed=1)):
        cfg = config("dyreg", "mini", **other)
        assert not names & {mini.digit_backbone_path(cfg).name, mini.resnet_head_path(cfg).name}, other
    assert mini.digit_backbone_path(config("dyreg", "mini", num_digits=4)).name == "multisync_mini_d4_digits.pt"


def test_digit_backbone_is_pretrained_once_and_loaded(tmp_path, monkeypatch):
    monkeypatch.setattr(mini, "digit_backbone_path", lambda cfg: tmp_path / "digits.pt")
    cfg = tiny("resnet18", backbone="digits", freeze_backbone=True, train_videos=4000)
    monkeypatch.setattr(mini, "pretrain_digits", lambda c, **kw: _real_pretrain(c, steps=3, batch_size=4))
    model = train.build_model(cfg)
    report = mini.load_digit_backbone(cfg, model, progress=False)
    assert set(report) >= {"digit_cell_accuracy", "background_accuracy", "commit", "wall_seconds"}
    saved = torch.load(tmp_path / "digits.pt", weights_only=True)
    assert all(k.split(".")[0] in mini.BACKBONE_PARTS for k in saved["model"])
    assert torch.equal(model.stem[0].weight, saved["model"]["stem.0.weight"])
    other = dataclasses.replace(cfg, num_digits=3)
    with pytest.raises(ValueError, match="was trained for"):
        mini.load_digit_backbone(other, train.build_model(other), progress=False)


_real_pretrain = mini.pretrain_digits


def test_head_init_needs_the_plain_model(tmp_path, monkeypatch):
    monkeypatch.setattr(mini, "resnet_head_path", lambda cfg: tmp_path / "plain.pt")
    with pytest.raises(FileNotFoundError, match="needs the trained plain model first"):
        train.train(tiny("dyreg", head_init="resnet18"), tmp_path / "run", max_steps=1, progress=False)
    train.train(tiny("resnet18"), tmp_path / "plain", max_steps=2, progress=False)
    runs.export_checkpoint(tmp_path / "plain", tmp_path / "plain.pt")
    cfg = tiny("dyreg", head_init="resnet18")
    model = train.build_model(cfg)
    mini.load_resnet_head(cfg, model)
    plain, _ = load_trained(tmp_path / "plain.pt")
    assert torch.equal(model.classifier.weight, plain.classifier.weight)
    video = torch.rand(2, 3, 1, 32, 32)
    assert torch.allclose(model.eval()(video), plain(video), atol=1e-5)  # the block is the identity at init


def test_digit_offsets_place_the_centre_in_its_cell():
    boxes = torch.tensor([[[[0.0, 0.0, 7.0, 7.0], [26.0, 9.0, 33.0, 16.0]]]])  # centres (3.5, 3.5), (29.5, 12.5)
    offsets, mask = mini.digit_offsets(boxes, map_size=8, video_size=32)  # cells of 4 pixels
    assert mask.sum() == 2 and mask[0, 0, 0, 0] and mask[0, 0, 3, 7]
    assert offsets[0, 0, :, 0, 0].tolist() == [0.75, 0.75]  # 3.5 px = 0.875 cells: 2 * (0.875 - 0.5)
    assert offsets[0, 0, :, 3, 7].tolist() == pytest.approx([-0.25, -0.75])  # (7.375, 3.125) cells


def test_a_design_has_its_own_backbone_head_and_results():
    committed = config("dyreg", "mini")
    other = config("dyreg", "mini", digit_size=14, max_step=5.0)
    assert mini.design_tag(committed) == "" and mini.design_summary(committed) == ""
    assert mini.design_tag(other) == "_px14_step5"
    assert mini.design_summary(other) == ", 14-pixel digits, steps up to 5 pixels"
    assert mini.digit_backbone_path(other).name == "multisync_mini_px14_step5_digits.pt"
    assert mini.resnet_head_path(other).name == "multisync_mini_px14_step5_resnet18.pt"
    research = ablations.REPO_ROOT / "results" / "research"
    assert ablations.results_dir("mini", digit_size=14, max_step=5.0) == research / "design_px14_step5"
    assert ablations.results_dir("mini", digit_steps=6000) == research / "design_digits6000"
    assert ablations.results_dir("paper", digit_size=14) == research / "design_paper_px14"
    assert ablations.results_dir("mini") == ablations.REPO_ROOT / "results" / "multisync" / "mini"
    assert ablations.results_dir("paper") == ablations.REPO_ROOT / "results" / "multisync"
    assert mini.backbone_config(other)["digit_size"] == 14 and "digit_size" not in mini.backbone_config(committed)
    data = train.build_data(dataclasses.replace(other, val_videos=2), "val")
    assert data.geometry.digit_hi == 28 and data.geometry.step_hi == 10


