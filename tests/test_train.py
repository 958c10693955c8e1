"""The trainer: every variant learns, exact resume, checkpoints, load_trained, the CLI's errors."""

import dataclasses
import json

import pytest
import torch

from dyreg_edu import ablations, train
from dyreg_edu.train import MODEL_VARIANTS, config, digit_targets, load_trained
from dyreg_edu.layers import count_parameters


def tiny(variant="dyreg", **overrides):
    """32-pixel videos with 2 digits and 3 frames, 8 training videos (so a few steps memorise them)."""
    settings = dict(size=32, num_digits=2, num_frames=3, train_videos=8, val_videos=4, batch_size=8, epochs=50,
                    backbone="scratch", freeze_backbone=False, head_init="none", warmup_steps=0, lr=3e-3, eval_every=4,
                    checkpoint_minutes=0.0)
    settings.update(overrides)
    return config(variant, "mini", **settings)


def losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("variant", MODEL_VARIANTS)
def test_every_variant_learns(variant, tmp_path):
    torch.manual_seed(0)
    result = train.train(tiny(variant), tmp_path, max_steps=8, progress=False)
    first, last = losses(tmp_path)[0], losses(tmp_path)[-1]
    assert last < first - 0.2, (variant, first, last)
    assert result["steps"] == 8 and result["train_videos"] == 64 and result["variant"] == variant
    for key in ("val_accuracy", "val_videos", "train_videos", "epochs", "command", "commit", "device", "date", "wall_seconds"):
        assert key in result


def test_resume_gives_the_losses_of_a_straight_run(tmp_path):
    cfg = tiny("dyreg", dropout=0.5, train_videos=16)  # dropout: the random state must be restored too
    train.train(cfg, tmp_path / "straight", max_steps=6, progress=False)
    train.train(cfg, tmp_path / "split", max_steps=3, progress=False)
    result = train.train(cfg, tmp_path / "split", max_steps=6, resume=True, progress=False)
    assert result["steps"] == 6
    assert losses(tmp_path / "split") == losses(tmp_path / "straight")
    assert [json.loads(line)["step"] for line in (tmp_path / "split" / "log.jsonl").read_text().splitlines()] == list(range(1, 7))


def test_a_finished_run_is_not_overwritten(tmp_path):
    train.train(tiny("fixed"), tmp_path, max_steps=1, progress=False)
    with pytest.raises(ValueError, match="exists: pass resume=True"):
        train.train(tiny("fixed"), tmp_path, max_steps=1, progress=False)
    with pytest.raises(ValueError, match="another configuration"):
        train.train(tiny("fixed", lr=1e-2), tmp_path, max_steps=2, resume=True, progress=False)


def test_checkpoint_loads_weights_only_and_load_trained_rebuilds(tmp_path):
    train.train(tiny("pos_only"), tmp_path / "run", max_steps=2, progress=False)
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert {"model", "optimizer", "config", "state", "rng"} <= set(ckpt)
    path = train.export_checkpoint(tmp_path / "run", tmp_path / "multisync_tiny_pos_only.pt")
    model, val = load_trained(path)
    assert not model.training and len(val) == 4 and val.split == "val" and val.size == 32
    batch = val.batch(range(4))
    logits = model(batch["video"][:, :, None].float() / 255)
    assert logits.shape == (4, 56)
    full = train.build_model(tiny("pos_only"))
    full.load_state_dict(ckpt["model"])
    reference = full.eval()(batch["video"][:, :, None].float() / 255)
    assert (logits - reference).abs().max() < 5e-2  # the exported copy is fp16


def test_digit_targets_mark_the_centre_cells():
    boxes = torch.tensor([[[[0.0, 0.0, 7.0, 7.0], [24.0, 8.0, 31.0, 15.0]]]])  # [B=1, T=1, D=2, 4] in a 32-px video
    target = digit_targets(boxes, torch.tensor([[3, 7]]), map_size=8, video_size=32)
    assert target.shape == (1, 1, 8, 8)
    assert target[0, 0, 0, 0] == 3 and target[0, 0, 2, 6] == 7
    assert (target == 10).sum() == 62


def test_learning_rate_schedule():
    cfg = tiny(warmup_steps=2, epochs=10, schedule="cosine")
    factors = [train.learning_rate_factor(cfg, s) for s in range(cfg.total_steps + 1)]
    assert factors[:2] == [0.5, 1.0] and factors[-1] == pytest.approx(0.0, abs=1e-9)
    assert all(a >= b for a, b in zip(factors[1:], factors[2:]))


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--variant", "graph"], "variant must be one of"),
        (["--variant", "dyreg", "--scale", "huge"], "scale must be one of"),
        (["--variant", "dyreg", "--batch-size", "0"], "batch_size must be a positive int, got 0"),
        (["--variant", "dyreg", "--lr", "-1"], "lr must be positive, got -1.0"),
        (["--variant", "dyreg", "--max-minutes", "0"], "max_minutes must be positive, got 0.0"),
        (["--variant", "dyreg", "--resume"], "no checkpoint at"),
        (["--variant", "dyreg", "--digit-size", "40"], "digit_size must be None or an int of 1 to 32 pixels"),
        (["--variant", "dyreg", "--max-step", "0.3"], "max_step must be None or a positive multiple of 0.5 pixels, got 0.3"),
        (["--variant", "dyreg", "--block", "foo=1"], "--block wants KEY=VALUE with KEY one of"),
        (["--variant", "dyreg", "--block", "node_motion"], "got 'node_motion'"),
        (["--variant", "oracle", "--block", "node_motion=True", "--block", "motion_from=box"],
         "motion_from must be one of ('kernel', 'centre'), got 'box'"),
        (["--variant", "dyreg", "--freeze-head"], "freeze_head must be False unless head_init is a checkpoint (.pt)"),
        (["--variant", "dyreg", "--head-init", "oracle"], "head_init must be 'none', 'resnet18' or the path of a trained checkpoint"),
        (["--variant", "dyreg", "--head-init", "missing.pt"], "head_init 'missing.pt': no such checkpoint"),
        (["--variant", "dyreg", "--freeze-regions"], "freeze_regions must be False unless regions_init names the checkpoint"),
        (["--variant", "dyreg", "--regions-init", "missing.pt"], "regions_init 'missing.pt': no such checkpoint"),
        (["--variant", "dyreg", "--oracle-jitter", "1"], "oracle_jitter must be 0, or a positive spread in video pixels for the oracle"),
        (["--variant", "fixed", "--box-loss", "1"], "box_loss must be 0, or a positive weight for a variant that makes"),
        (["--variant", "dyreg", "--num-nodes", "2", "--box-loss", "1"], "with num_nodes >= num_digits (2 nodes, 3 digits)"),
        (["--variant", "dyreg", "--box-loss-steps", "100"], "box_loss_steps must be 0 (every step), or a positive int of steps with box_loss > 0"),
        (["--variant", "dyreg", "--block", "normalize_kernels=false"], "--block normalize_kernels wants bool or None, got 'false' (True or False)"),
        (["--variant", "pos_only", "--block", "fixed_size=abc"], "--block fixed_size wants float or None or int, got 'abc'"),
        (["--variant", "dyreg", "--digit-steps", "0"], "digit_steps must be a positive int of pretraining steps, got 0"),
        (["--variant", "dyreg", "--grad-clip", "-1"], "grad_clip must be 0 (no clipping) or a positive gradient norm, got -1.0"),
    ],
)
def test_cli_errors_are_one_line(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        train.main(argv + ["--out", str(tmp_path / "run"), "--no-progress"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_block_switches_read_literals_and_words():
    assert train.block_switches(["node_motion=True", "motion_from=centre", "position_scale=25", "grid=(3, 3)"]) == {
        "node_motion": True, "motion_from": "centre", "position_scale": 25, "grid": (3, 3)}


def test_other_data_get_their_own_cached_backbone_and_plain_model():
    """num_digits, num_frames and data_seed are part of the data: a backbone cached for the
    committed design is never reused (or overwritten) for another."""
    committed = config("dyreg", "mini")
    names = {train.digit_backbone_path(committed).name, train.resnet_head_path(committed).name}
    assert names == {"multisync_mini_digits.pt", "multisync_mini_resnet18.pt"}
    for other in (dict(num_digits=4), dict(num_frames=6), dict(data_seed=1)):
        cfg = config("dyreg", "mini", **other)
        assert not names & {train.digit_backbone_path(cfg).name, train.resnet_head_path(cfg).name}, other
    assert train.digit_backbone_path(config("dyreg", "mini", num_digits=4)).name == "multisync_mini_d4_digits.pt"


def test_cli_trains_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(train.SCALES, "mini", {**train.SCALES["mini"], **dict(
        size=32, num_digits=2, num_frames=3, train_videos=16, val_videos=4, backbone="scratch", freeze_backbone=False, head_init="none")})
    out = str(tmp_path / "run")
    assert train.main(["--variant", "fixed", "--out", out, "--max-steps", "2", "--batch-size", "8", "--epochs", "10", "--no-progress"]) == 0
    assert train.main(["--variant", "fixed", "--out", out, "--max-steps", "3", "--batch-size", "8", "--epochs", "10", "--no-progress", "--resume"]) == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["steps"] == 3 and result["command"].startswith("python -m dyreg_edu.train --variant fixed")
    assert [json.loads(line)["step"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()] == [1, 2, 3]


def test_ablation_runs_and_tables(tmp_path, monkeypatch):
    assert [r.name for r in ablations.table_runs("5", "paper")] == ["resnet18", "fixed", "static", "constant_time", "pos_only",
                                                                   "dyreg", "oracle"]
    assert [r.name for r in ablations.table_runs("5")][:4] == ["resnet18", "resnet18_continued", "resnet18_tsm", "fixed"]
    control = ablations.run_of("resnet18_continued").config("mini")
    assert (control.variant, control.head_init, control.epochs) == ("resnet18", "resnet18", config("dyreg", "mini").epochs)
    assert not control.temporal_shift
    motion = ablations.run_of("resnet18_tsm").config("mini")
    assert motion.temporal_shift and dataclasses.replace(motion, temporal_shift=False) == control
    assert ablations.run_of("dyreg_nodes16").overrides == {"num_nodes": 16}
    assert ablations.run_of("pos_only_size1").overrides == {"block": {"fixed_size": 1.0}}
    assert ablations.run_of("pos_only_size2.67").overrides["block"]["fixed_size"] == pytest.approx(16 / 6)
    with pytest.raises(ValueError, match="table must be one of"):
        ablations.table_runs("8")
    monkeypatch.setattr(ablations, "results_dir", lambda scale, **design: tmp_path)
    (tmp_path / "dyreg.json").write_text(json.dumps({"val_accuracy": 61.5, "train_videos": 100, "wall_seconds": 60.0,
                                                      "object_centric": {"score": 0.1}}))
    text = ablations.write_table("9", "mini").read_text()
    assert "| DyReg-GNN | 95.09 | 61.50 | – | 0.100 | 100 | 1.0 |" in text
    assert "| DyReg-GNN without GRU | 91.91 | – |" in text


def test_digit_backbone_is_pretrained_once_and_loaded(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "digit_backbone_path", lambda cfg: tmp_path / "digits.pt")
    cfg = tiny("resnet18", backbone="digits", freeze_backbone=True, train_videos=4000)
    monkeypatch.setattr(train, "pretrain_digits", lambda c, **kw: _real_pretrain(c, steps=3, batch_size=4))
    model = train.build_model(cfg)
    report = train.load_digit_backbone(cfg, model, progress=False)
    assert set(report) >= {"digit_cell_accuracy", "background_accuracy", "commit", "wall_seconds"}
    saved = torch.load(tmp_path / "digits.pt", weights_only=True)
    assert all(k.split(".")[0] in train.BACKBONE_PARTS for k in saved["model"])
    assert torch.equal(model.stem[0].weight, saved["model"]["stem.0.weight"])
    other = dataclasses.replace(cfg, num_digits=3)
    with pytest.raises(ValueError, match="was trained for"):
        train.load_digit_backbone(other, train.build_model(other), progress=False)


_real_pretrain = train.pretrain_digits


def test_head_init_needs_the_plain_model(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "resnet_head_path", lambda cfg: tmp_path / "plain.pt")
    with pytest.raises(FileNotFoundError, match="needs the trained plain model first"):
        train.train(tiny("dyreg", head_init="resnet18"), tmp_path / "run", max_steps=1, progress=False)
    train.train(tiny("resnet18"), tmp_path / "plain", max_steps=2, progress=False)
    train.export_checkpoint(tmp_path / "plain", tmp_path / "plain.pt")
    cfg = tiny("dyreg", head_init="resnet18")
    model = train.build_model(cfg)
    train.load_resnet_head(cfg, model)
    plain, _ = load_trained(tmp_path / "plain.pt")
    assert torch.equal(model.classifier.weight, plain.classifier.weight)
    video = torch.rand(2, 3, 1, 32, 32)
    assert torch.allclose(model.eval()(video), plain(video), atol=1e-5)  # the block is the identity at init


def test_head_init_from_a_trained_checkpoint_and_freeze_head(tmp_path):
    switches = dict(node_motion=True, motion_from="centre")
    train.train(tiny("oracle", block=switches), tmp_path / "oracle", max_steps=2, progress=False)
    path = train.export_checkpoint(tmp_path / "oracle", tmp_path / "oracle.pt", half=False)
    trained = torch.load(path, weights_only=True)["model"]
    cfg = tiny("dyreg", num_nodes=2, block=switches, head_init=str(path), freeze_head=True)
    before = train.build_model(cfg).state_dict()
    result = train.train(cfg, tmp_path / "run", max_steps=3, progress=False)
    after = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    head = [k for k in after if k.split(".")[0] in ("layer3", "graph", "classifier") and ".region_generator." not in k]
    assert head and all(torch.equal(after[k], trained[k]) for k in head)  # loaded, then frozen
    regions = [k for k in after if ".region_generator." in k and after[k].is_floating_point()]
    assert any(not torch.equal(after[k], before[k]) for k in regions)  # only the regions learn
    assert result["head_init"]["variant"] == "oracle" and result["head_init"]["path"] == str(path)
    assert result["head_init"]["kernel_source"] == "initialised"  # the oracle has no region generator
    mine = train.export_checkpoint(tmp_path / "run", tmp_path / "dyreg.pt", half=False)
    again = train.build_model(cfg)
    assert train.load_trained_head(dataclasses.replace(cfg, head_init=str(mine)), again)["kernel_source"] == "copied"  # a DyReg's generator fits a DyReg
    assert all(torch.equal(again.state_dict()[k], after[k]) for k in regions)
    with pytest.raises(ValueError, match="does not fit this model's head"):  # no motion embedding there
        train.train(tiny("dyreg", head_init=str(path)), tmp_path / "other", max_steps=1, progress=False)
    with pytest.raises(ValueError, match="freeze_head must be False unless head_init is a checkpoint"):
        tiny("dyreg", freeze_head=True)
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        train.train(tiny("dyreg", head_init=str(tmp_path / "none.pt")), tmp_path / "none", max_steps=1, progress=False)


def test_still_videos_remove_the_motion(tmp_path):
    cfg = tiny("resnet18")
    model = train.build_model(cfg).eval()
    data = train.build_data(cfg, "val")
    moving, still = train.evaluate(model, data), train.evaluate(model, data, still=True)
    assert moving["val_videos"] == still["val_videos"] == 4
    assert moving["val_loss"] != still["val_loss"]


def test_digit_offsets_place_the_centre_in_its_cell():
    boxes = torch.tensor([[[[0.0, 0.0, 7.0, 7.0], [26.0, 9.0, 33.0, 16.0]]]])  # centres (3.5, 3.5), (29.5, 12.5)
    offsets, mask = train.digit_offsets(boxes, map_size=8, video_size=32)  # cells of 4 pixels
    assert mask.sum() == 2 and mask[0, 0, 0, 0] and mask[0, 0, 3, 7]
    assert offsets[0, 0, :, 0, 0].tolist() == [0.75, 0.75]  # 3.5 px = 0.875 cells: 2 * (0.875 - 0.5)
    assert offsets[0, 0, :, 3, 7].tolist() == pytest.approx([-0.25, -0.75])  # (7.375, 3.125) cells


def test_paper_scale_is_the_papers_model_and_data():
    cfg = config("dyreg", "paper")
    assert (cfg.size, cfg.num_digits, cfg.num_frames, cfg.train_videos, cfg.val_videos) == (128, 5, 10, 600_000, 10_000)
    model = train.build_model(cfg)
    assert count_parameters(model) == 3_080_992  # Table 6
    assert model.dropout.p == 0.5 and model.dropout_on == "map" and model.classifier.weight.std() < 0.002
    paper = config("dyreg", "paper", recipe="paper")
    assert (paper.optimizer, paper.lr, paper.momentum) == ("sgd", 1e-3, 0.9)


def test_paper_scaled_recipe_scales_the_papers_lr_with_the_batch():
    """The paper-scale default: the paper's SGD, its lr 0.001 per 10 videos kept per video."""
    cfg = config("dyreg", "paper")
    assert cfg.recipe == "paper_scaled" and cfg.batch_size == 128
    assert (cfg.optimizer, cfg.momentum, cfg.weight_decay, cfg.schedule) == ("sgd", 0.9, 5e-4, "constant")
    assert cfg.lr == pytest.approx(0.0128)
    assert config("dyreg", "paper", batch_size=10).lr == pytest.approx(1e-3)  # the paper's batch, the paper's lr
    assert config("dyreg", "paper", batch_size=128, lr=0.01).lr == 0.01      # an explicit lr wins
    assert config("fixed", "paper").lr == cfg.lr                              # every variant alike


def test_grouped_logging_keeps_every_step_and_the_same_losses(tmp_path):
    """log_every > 1 (one GPU sync per group) writes the same per-step records as log_every = 1."""
    torch.manual_seed(0)
    train.train(tiny("dyreg", log_every=1), tmp_path / "one", max_steps=7, progress=False)
    torch.manual_seed(0)
    train.train(tiny("dyreg", log_every=3), tmp_path / "three", max_steps=7, progress=False)
    one = [json.loads(line) for line in (tmp_path / "one" / "log.jsonl").read_text().splitlines()]
    three = [json.loads(line) for line in (tmp_path / "three" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in three] == list(range(1, 8))
    for a, b in zip(one, three):
        assert a["loss"] == b["loss"] and a["accuracy"] == b["accuracy"] and a["gamma"] == b["gamma"]
        assert ("val_accuracy" in a) == ("val_accuracy" in b)


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
    from dyreg_edu.train import build_data, build_model, freeze, recompute_batchnorm

    cfg = tiny("resnet18", train_videos=16)
    model, data = build_model(cfg), build_data(cfg, "train")
    freeze(model)
    frozen = next(m for m in model.stem.modules() if isinstance(m, nn.BatchNorm2d))
    before = frozen.running_mean.clone()
    recompute_batchnorm(model, data, cfg, batches=1)
    assert torch.equal(frozen.running_mean, before)


def test_a_design_has_its_own_backbone_head_and_results():
    committed = config("dyreg", "mini")
    other = config("dyreg", "mini", digit_size=14, max_step=5.0)
    assert train.design_tag(committed) == "" and train.design_summary(committed) == ""
    assert train.design_tag(other) == "_px14_step5"
    assert train.design_summary(other) == ", 14-pixel digits, steps up to 5 pixels"
    assert train.digit_backbone_path(other).name == "multisync_mini_px14_step5_digits.pt"
    assert train.resnet_head_path(other).name == "multisync_mini_px14_step5_resnet18.pt"
    assert ablations.results_dir("mini", digit_size=14, max_step=5.0).name == "px14_step5"
    assert ablations.results_dir("mini", digit_steps=6000).name == "digits6000"
    assert ablations.results_dir("mini").name == "mini"
    assert train._backbone_config(other)["digit_size"] == 14 and "digit_size" not in train._backbone_config(committed)
    data = train.build_data(dataclasses.replace(other, val_videos=2), "val")
    assert data.geometry.digit_hi == 28 and data.geometry.step_hi == 10


def test_the_oracle_has_a_node_per_digit_and_reads_the_boxes():
    cfg = config("oracle", "mini")
    assert cfg.num_nodes == cfg.num_digits == 3
    assert config("oracle", "mini", num_digits=5).num_nodes == 5
    with pytest.raises(ValueError, match=r"num_nodes must be num_digits \(3\) for the oracle"):
        config("oracle", "mini", num_nodes=9)
    model, data = train.build_model(tiny("oracle")), train.build_data(tiny("oracle"), "val")
    batch = data.batch(range(2))
    video, boxes = train.model_inputs(batch, "cpu")
    logits, aux = model(video, return_aux=True, boxes=boxes)
    assert logits.shape == (2, 56) and aux["regions"].shape == (2, 3, 2, 4)
    with pytest.raises(ValueError, match="reads the ground-truth boxes: call model"):
        model(video)
    still_video, still_boxes = train.model_inputs(batch, "cpu", still=True)  # the boxes stand still with the digits
    assert torch.equal(still_boxes, boxes[:, :1].expand_as(boxes)) and torch.equal(still_video, video[:, :1].expand_as(video))
    assert train.evaluate(model, data)["object_centric"]["score"] < 1e-6  # the regions are the boxes


def test_a_design_run_records_a_command_that_names_the_design(tmp_path, monkeypatch):
    seen = {}

    def fake_train(cfg, out, **kwargs):
        seen.update(cfg=cfg, out=out, command=kwargs["command"])
        return {"finished": False}

    monkeypatch.setattr(ablations, "train", fake_train)
    monkeypatch.setattr(ablations, "results_dir", lambda scale, **design: tmp_path / "results")  # no finished run there
    common = {"device": "cpu", "digit_size": 14, "max_step": 5.0}
    ablations.run_one(ablations.run_of("oracle"), "mini", tmp_path / "runs", deadline=float("inf"), common=common,
                      progress=False)
    assert seen["command"].startswith("python -m dyreg_edu.train --variant oracle --scale mini --digit-size 14 --max-step 5 --out ")
    assert (seen["cfg"].digit_size, seen["cfg"].max_step, seen["cfg"].num_nodes) == (14, 5.0, 3)
    argv = seen["command"].split(" (via")[0].split()[3:]  # the command trains the same configuration
    assert train.parser().parse_args(argv).digit_size == 14


def test_read_log_gives_a_runs_records_and_nothing_for_a_run_without_a_log(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1, "loss": 2.5}\n\n{"step": 2, "loss": 2.0, "val_accuracy": 30.0}\n')
    assert ablations.read_log(log) == [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.0, "val_accuracy": 30.0}]
    assert ablations.read_log(tmp_path / "missing.jsonl") == []


def test_show_table_displays_a_table_from_the_result_files_or_says_there_is_none(tmp_path, monkeypatch, capsys):
    from dyreg_edu import notebook

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj.data))
    monkeypatch.setattr(ablations, "results_dir", lambda scale, **design: tmp_path / "none")
    notebook.show_table("9")
    assert "no results for table 9 at the mini scale yet" in capsys.readouterr().out and not shown
    monkeypatch.setattr(ablations, "results_dir", lambda scale, **design: tmp_path)
    (tmp_path / "dyreg.json").write_text(json.dumps({"val_accuracy": 61.5, "train_videos": 100, "wall_seconds": 60.0}))
    notebook.show_table("9")
    assert shown[0].startswith("**Table 9") and "| DyReg-GNN | 95.09 | 61.50 |" in shown[0]


def test_table_7_sits_beside_the_papers_column_for_its_own_digits(tmp_path, monkeypatch):
    """The mini scale has three digits, so its Table 7 is set beside the paper's D = 3 column,
    the paper scale (five digits) beside the D = 5 one."""
    monkeypatch.setattr(ablations, "results_dir", lambda scale, **design: tmp_path / scale)
    for scale, digits, nodes5 in (("mini", 3, 98.2), ("paper", 5, 89.6)):
        path = ablations.write_table("7", scale)
        rows = json.loads(path.with_suffix(".json").read_text())["rows"]
        assert [row["paper"] for row in rows if row["name"] == "dyreg_nodes5"] == [nodes5]
        assert f"the paper's column for {digits} digits" in path.read_text().splitlines()[0]


def test_a_tables_standard_error_follows_its_validation_size():
    assert round(ablations.standard_error(2_000), 2) == 1.12
    assert ablations.standard_error(10_000) == pytest.approx(0.5)


def test_region_box_loss_matches_each_digit_to_one_node_for_the_whole_video():
    torch.manual_seed(0)
    targets = torch.rand(2, 4, 3, 4) * 8                                   # [B, T, D, 4]
    free = torch.rand(2, 4, 2, 4) * 8
    regions = torch.cat([targets[:, :, [2, 0, 1]], free], dim=2)          # digits on nodes 1, 2, 0; nodes 3, 4 free
    assert train.region_box_loss(regions, targets) == 0
    moved = regions.clone()
    moved[..., 0] += 1.0                                                   # every centre 1 pixel to the right
    assert torch.isclose(train.region_box_loss(moved, targets), torch.tensor(0.5 / 4))  # smooth L1 of 1 in 1 of 4
    swapped = regions.clone()
    swapped[:, 2:, [0, 1]] = swapped[:, 2:, [1, 0]]                        # two nodes swap digits half-way
    assert train.region_box_loss(swapped, targets) > 0                     # one assignment for the whole video


def test_box_loss_brings_the_regions_to_the_digits(tmp_path):
    cfg = tiny("dyreg", num_nodes=2, box_loss=1.0, lr=1e-2, epochs=200)
    model = train.build_model(cfg)
    data = train.build_data(cfg, "train")
    batch = data.batch(range(8))
    video, boxes = train.model_inputs(batch, "cpu")

    def gap():
        with torch.no_grad():
            regions = model(video, return_aux=True)[1]["regions"]
        return train.region_box_loss(regions, model.oracle_regions(boxes)).item()

    before = gap()
    train.train(cfg, tmp_path, max_steps=40, progress=False)
    model.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"])
    assert gap() < 0.5 * before, (before, gap())


def test_box_loss_steps_teaches_the_regions_for_the_first_steps_only(tmp_path):
    """Taught for the first 2 steps of 4 against taught at every step, from the same start: the same
    first two losses (the label's and the boxes'), then a lower third one, the label's alone."""
    briefly = tiny("dyreg", num_nodes=3, box_loss=1.0, box_loss_steps=2)
    throughout = dataclasses.replace(briefly, box_loss_steps=0)
    train.train(briefly, tmp_path / "briefly", max_steps=3, progress=False)
    train.train(throughout, tmp_path / "throughout", max_steps=3, progress=False)
    first, second = losses(tmp_path / "briefly"), losses(tmp_path / "throughout")
    assert first[:2] == pytest.approx(second[:2], rel=1e-6)
    assert first[2] < second[2]


def test_oracle_jitter_shifts_each_box_as_a_whole():
    cfg = tiny("oracle", oracle_jitter=1.5)
    model = train.build_model(cfg)
    boxes = train.build_data(cfg, "val").batch(range(4))["boxes"]
    exact = dataclasses.replace(cfg, oracle_jitter=0.0)
    truth = train.build_model(exact).oracle_regions(boxes)
    torch.manual_seed(0)
    jittered = model.oracle_regions(boxes)
    gaps = (jittered - truth)[..., :2].norm(dim=-1)
    assert torch.allclose(jittered[..., 2:], truth[..., 2:])  # sizes kept: the whole box moves
    assert (gaps > 0).float().mean() > 0.95 and gaps.mean() < 1.5  # every box moved, by about a map pixel or less
    torch.manual_seed(0)
    assert torch.equal(model.oracle_regions(boxes), jittered)  # from torch's generator (saved in checkpoints)
    with pytest.raises(ValueError, match="oracle_jitter must be 0"):
        train.build_model(dataclasses.replace(exact, variant="dyreg", oracle_jitter=1.0))


def test_git_commit_says_when_the_code_differs_from_the_commit(monkeypatch):
    from types import SimpleNamespace

    from dyreg_edu import notebook

    def fake_git(changes):
        def run(args, **kwargs):
            out = "abc1234\n" if "rev-parse" in args else changes
            return SimpleNamespace(stdout=out, returncode=0)
        return run

    monkeypatch.delenv("DYREG_COMMIT", raising=False)
    monkeypatch.setattr(notebook.subprocess, "run", fake_git(""))
    assert notebook.git_commit() == "abc1234"
    monkeypatch.setattr(notebook.subprocess, "run", fake_git(" M dyreg_edu/train.py\n"))
    assert notebook.git_commit() == "abc1234-dirty"
    monkeypatch.setenv("DYREG_COMMIT", "def5678")  # a GPU machine's copy, named by the queue's command
    assert notebook.git_commit() == "def5678"


def test_regions_init_copies_and_freezes_only_the_region_generator(tmp_path):
    train.train(tiny("dyreg", num_nodes=2), tmp_path / "taught", max_steps=3, progress=False)
    path = train.export_checkpoint(tmp_path / "taught", tmp_path / "taught.pt", half=False)
    taught = torch.load(path, weights_only=True)["model"]
    cfg = tiny("dyreg", num_nodes=2, regions_init=str(path), freeze_regions=True)
    result = train.train(cfg, tmp_path / "run", max_steps=3, progress=False)
    after = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    regions = [k for k in after if k.startswith(train.KERNEL_SOURCE_KEYS)]
    assert regions and all(torch.equal(after[k], taught[k]) for k in regions)  # copied, then frozen
    graph = [k for k in after if k.startswith("graph.") and k not in regions and after[k].is_floating_point()]
    assert any(not torch.equal(after[k], taught[k]) for k in graph)  # the rest is not the taught model's: it starts afresh
    assert result["regions_init"]["path"] == str(path) and result["regions_init"]["frozen"] is True
    moving = train.train(dataclasses.replace(cfg, freeze_regions=False), tmp_path / "moving", max_steps=3, progress=False)
    assert moving["regions_init"]["frozen"] is False
    learned = torch.load(tmp_path / "moving" / "checkpoint.pt", weights_only=True)["model"]
    assert any(not torch.equal(learned[k], taught[k]) for k in regions if learned[k].is_floating_point())
    with pytest.raises(ValueError, match="has no region generator that fits"):  # another node count
        train.train(tiny("dyreg", num_nodes=3, regions_init=str(path)), tmp_path / "misfit", max_steps=1, progress=False)
    with pytest.raises(ValueError, match="freeze_regions must be False unless regions_init"):
        tiny("dyreg", freeze_regions=True)
    with pytest.raises(ValueError, match=r"and False with freeze_head \(nothing would learn\)"):
        tiny("dyreg", regions_init=str(path), freeze_regions=True, head_init=str(path), freeze_head=True)
    with pytest.raises(ValueError, match="regions_init must be 'none' or the path of a trained checkpoint"):
        tiny("fixed", regions_init=str(path))
    with pytest.raises(FileNotFoundError, match="regions_init .* no such checkpoint"):
        train.train(tiny("dyreg", regions_init=str(tmp_path / "none.pt")), tmp_path / "none", max_steps=1, progress=False)


def test_starting_model_is_where_a_run_takes_its_first_step(tmp_path):
    train.train(tiny("dyreg", num_nodes=2), tmp_path / "taught", max_steps=3, progress=False)
    path = train.export_checkpoint(tmp_path / "taught", tmp_path / "taught.pt", half=False)
    cfg = tiny("dyreg", num_nodes=2, regions_init=str(path), freeze_regions=True)
    model, reports = train.starting_model(cfg, progress=False)
    assert set(reports) == {"regions_init"} and reports["regions_init"]["frozen"] is True
    assert not any(p.requires_grad for p in model.graph.region_generator.parameters())
    train.train(cfg, tmp_path / "run", max_steps=0, progress=False)  # saved before its first step
    after, state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"], model.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], state[k]) for k in after)
    with pytest.raises(ValueError, match="freeze_regions must be False unless regions_init"):
        train.starting_model(dataclasses.replace(cfg, regions_init="none"), progress=False)
