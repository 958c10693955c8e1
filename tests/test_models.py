"""Whole models: parameter counts of Tables 6 and 12, MACs, shapes, the temporal shift."""

import pytest
import torch

from dyreg_edu.layers import count_parameters
from dyreg_edu.models import collect_aux, count_macs, syncmnist_model, temporal_shift, tsm_resnet


count = count_parameters


@pytest.mark.parametrize(
    "variant, params",
    [
        ("resnet18", 2_790_904),  # Table 6: 2.79M
        ("dyreg", 3_080_992),  # 3.08M
        ("lite", 2_832_937 - 64),  # 2.83M (the authors' module also holds an unused 64-parameter LayerNorm)
        ("semantic", 2_853_265),  # 2.85M
        ("fixed", 2_823_864),  # 2.82M
    ],
)
def test_syncmnist_parameter_counts_match_table_6(variant, params):
    assert count(syncmnist_model(variant)) == params


@pytest.mark.parametrize(
    "stages, regions, millions",
    [((), "dyreg", 23.86), (("res4",), "dyreg", 25.70), (("res4",), "fixed", 24.90), (("res3", "res4", "res5"), "dyreg", 28.70)],
)
def test_tsm_parameter_counts_match_table_12(stages, regions, millions):
    assert count(tsm_resnet(graph_stages=stages, regions=regions)) / 1e6 == pytest.approx(millions, abs=0.005)


def test_syncmnist_forward_and_aux():
    torch.manual_seed(0)
    model = syncmnist_model("dyreg").eval()
    logits, aux = model(torch.rand(2, 10, 1, 128, 128), return_aux=True)
    assert logits.shape == (2, 56)
    assert aux["regions"].shape == (2, 10, 9, 4)
    assert aux["kernels"].shape == (2, 10, 9, 16, 16)


@pytest.mark.slow
def test_tsm_macs_and_shapes_on_the_meta_device():
    video = torch.empty(1, 16, 3, 224, 224, device="meta")
    base = count_macs(tsm_resnet().to("meta"), video)
    model = tsm_resnet(graph_stages=("res4",)).to("meta")
    with collect_aux(model) as aux:
        logits = model(video)
    assert logits.shape == (1, 174)
    assert aux["backbone.layer3.4.conv2.graph"]["regions"].shape == (1, 16, 9, 4)
    added = count_macs(model, video) - base
    assert 64e9 < base < 67e9  # Table 12: 65.8G for TSM-R50
    assert 0.4e9 < added < 0.9e9  # Table 12: +0.6G for DyReg r4


def test_temporal_shift_moves_one_eighth_each_way():
    x = torch.arange(2 * 3 * 16, dtype=torch.float32).reshape(2 * 3, 16, 1, 1)  # B=2, T=3, C=16
    y = temporal_shift(x, num_frames=3).reshape(2, 3, 16)
    x = x.reshape(2, 3, 16)
    torch.testing.assert_close(y[:, :2, :2], x[:, 1:, :2])  # from the next frame
    assert torch.all(y[:, 2, :2] == 0)
    torch.testing.assert_close(y[:, 1:, 2:4], x[:, :2, 2:4])  # from the previous frame
    assert torch.all(y[:, 0, 2:4] == 0)
    torch.testing.assert_close(y[:, :, 4:], x[:, :, 4:])


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: syncmnist_model("graph"), "variant must be 'resnet18' or one of"),
        (lambda: tsm_resnet(graph_stages=("res2",)), "graph_stages must be a subset of"),
        (lambda: tsm_resnet(regions="semantic"), "regions must be 'dyreg' or 'fixed', got 'semantic'"),
    ],
)
def test_bad_model_arguments_are_named(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_a_uint8_video_is_named():
    model = syncmnist_model("resnet18", input_size=32)
    with pytest.raises(ValueError, match="video must be a floating-point tensor .* got torch.uint8"):
        model(torch.zeros(1, 2, 1, 32, 32, dtype=torch.uint8))


def test_count_macs_leaves_the_model_as_it_was():
    """Counting runs in eval mode: BatchNorm statistics untouched, the training mode restored."""
    torch.manual_seed(0)
    model = syncmnist_model("resnet18", input_size=32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert count_macs(model, torch.rand(1, 3, 1, 32, 32)) > 0
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bad_video_shape_is_named():
    with pytest.raises(ValueError, match=r"\[B, T, 1, 128, 128\].*\(2, 1, 128, 128\)"):
        syncmnist_model("resnet18")(torch.rand(2, 1, 128, 128))
    with pytest.raises(ValueError, match=r"\[B, T, 1, 128, 128\].*\(1, 2, 1, 64, 64\)"):
        syncmnist_model("resnet18")(torch.rand(1, 2, 1, 64, 64))


def test_mini_backbone_and_head_switches():
    from dyreg_edu.models import MINI_BACKBONE

    model = syncmnist_model("dyreg", input_size=64, **MINI_BACKBONE, dropout=0.5, classifier_init="authors")
    assert (model.graph.height, model.graph.width) == (16, 16)  # 64 / 4, as the paper's 128 / 8
    assert model.classifier.weight.std() < 0.002 and model.classifier.bias.abs().max() == 0
    logits = model.eval()(torch.rand(2, 3, 1, 64, 64))
    assert logits.shape == (2, 56)
    with pytest.raises(ValueError, match="dropout_on must be 'map' or 'pooled', got 'frame'"):
        syncmnist_model("resnet18", dropout_on="frame")
    with pytest.raises(ValueError, match="input_size must be a multiple of 8"):
        syncmnist_model("resnet18", input_size=100)


def test_temporal_shift_lets_the_plain_model_see_frame_order():
    torch.manual_seed(0)
    video = torch.rand(2, 4, 1, 64, 64)
    backwards = video.flip(1)
    for shift in (False, True):
        model = syncmnist_model("resnet18", input_size=64, widths=(8, 8, 16), blocks=(1, 1, 1), stem="small",
                                temporal_shift=shift).eval()
        with torch.no_grad():
            same = torch.allclose(model(video), model(backwards), atol=1e-5)
        assert same != shift  # without the shift the frames are a bag; with it their order matters
    assert count_parameters(model) == count_parameters(syncmnist_model("resnet18", input_size=64, widths=(8, 8, 16),
                                                                        blocks=(1, 1, 1), stem="small"))
