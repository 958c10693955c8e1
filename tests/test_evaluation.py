"""What a run measures (dyreg_edu.evaluation): accuracy on moving and still videos, precise BatchNorm."""

import torch

from dyreg_edu import train

from test_train import tiny


def test_still_videos_remove_the_motion(tmp_path):
    cfg = tiny("resnet18")
    model = train.build_model(cfg).eval()
    data = train.build_data(cfg, "val")
    moving, still = train.evaluate(model, data), train.evaluate(model, data, still=True)
    assert moving["val_videos"] == still["val_videos"] == 4
    assert moving["val_loss"] != still["val_loss"]


def test_recompute_batchnorm_gives_the_exact_statistics_of_its_batches():
    from torch import nn
    from dyreg_edu.train import build_data, build_model, recompute_batchnorm

    cfg = tiny("resnet18", train_videos=16)
    model, data = build_model(cfg), build_data(cfg, "train")
    first = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    first.running_mean.fill_(1e3)
    seen = []
    hook = first.register_forward_hook(lambda m, inputs, output: seen.append(inputs[0].detach()))
    recompute_batchnorm(model, data, cfg, batches=2)
    hook.remove()
    inputs = torch.cat(seen)  # the 2 x 8 videos' frames
    torch.testing.assert_close(first.running_mean, inputs.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert not model.training and first.momentum == 0.1


def test_recompute_batchnorm_leaves_frozen_batchnorms_alone():
    from torch import nn
    from dyreg_edu.mini import freeze_backbone as freeze
    from dyreg_edu.train import build_data, build_model, recompute_batchnorm

    cfg = tiny("resnet18", train_videos=16)
    model, data = build_model(cfg), build_data(cfg, "train")
    freeze(model)
    frozen = next(m for m in model.stem.modules() if isinstance(m, nn.BatchNorm2d))
    before = frozen.running_mean.clone()
    recompute_batchnorm(model, data, cfg, batches=1)
    assert torch.equal(frozen.running_mean, before)
