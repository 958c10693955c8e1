"""The trainer: every variant learns, exact resume, checkpoints, load_trained, the CLI's errors."""

import json

import pytest
import torch

from dyreg_edu import runs, train
from dyreg_edu.train import MODEL_VARIANTS, config, load_trained
from dyreg_edu.layers import count_parameters


def tiny(variant="dyreg", **overrides):
    """32-pixel videos with 2 digits and 3 frames, 8 training videos (so a few steps memorise them)."""
    settings = dict(size=32, num_digits=2, num_frames=3, train_videos=8, val_videos=4, batch_size=8, epochs=50,
                    backbone="scratch", freeze_backbone=False, head_init="none", warmup_steps=0, lr=3e-3, eval_every=4,
                    checkpoint_minutes=0.0)
    settings.update(overrides)
    return config(variant, "mini", **settings)


def losses(run_dir):
    return [r["loss"] for r in runs.read_log(run_dir / "log.jsonl")]


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
    assert [r["step"] for r in runs.read_log(tmp_path / "split" / "log.jsonl")] == list(range(1, 7))


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
    path = runs.export_checkpoint(tmp_path / "run", tmp_path / "multisync_tiny_pos_only.pt")
    model, val = load_trained(path)
    assert not model.training and len(val) == 4 and val.split == "val" and val.size == 32
    batch = val.batch(range(4))
    logits = model(batch["video"][:, :, None].float() / 255)
    assert logits.shape == (4, 56)
    full = train.build_model(tiny("pos_only"))
    full.load_state_dict(ckpt["model"])
    reference = full.eval()(batch["video"][:, :, None].float() / 255)
    assert (logits - reference).abs().max() < 5e-2  # the exported copy is fp16


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
        (["--variant", "dyreg", "--batch-size", "0"], "batch_size must be a positive multiple of processes x accumulate = 1, got 0"),
        (["--variant", "dyreg", "--batch-size", "9", "--accumulate", "2"], "batch_size must be a positive multiple of processes x accumulate = 2, got 9"),
        (["--variant", "dyreg", "--accumulate", "0"], "accumulate must be a positive int of micro-batches a step, got 0"),
        (["--variant", "dyreg", "--lr", "-1"], "lr must be positive, got -1.0"),
        (["--variant", "dyreg", "--max-minutes", "0"], "max_minutes must be positive, got 0.0"),
        (["--variant", "dyreg", "--resume"], "no checkpoint at"),
        (["--variant", "dyreg", "--digit-size", "40"], "digit_size must be None or an int of 1 to 32 pixels"),
        (["--variant", "dyreg", "--max-step", "0.3"], "max_step must be None or a positive multiple of 0.5 pixels, got 0.3"),
        (["--variant", "dyreg", "--block", "foo=1"], "--block wants KEY=VALUE with KEY one of"),
        (["--variant", "dyreg", "--block", "node_motion=True"], "--block wants KEY=VALUE with KEY one of"),
        (["--variant", "dyreg", "--head-init", "oracle"], "head_init must be 'none' or 'resnet18'"),
        (["--variant", "dyreg", "--block", "normalize_kernels=false"], "--block normalize_kernels wants bool or None, got 'false' (True or False)"),
        (["--variant", "pos_only", "--block", "fixed_size=abc"], "--block fixed_size wants float or None or int, got 'abc'"),
        (["--variant", "dyreg", "--digit-steps", "0"], "digit_steps must be a positive int of pretraining steps, got 0"),
        (["--variant", "dyreg", "--grad-clip", "-1"], "grad_clip must be 0 (no clipping) or a positive gradient norm, got -1.0"),
        (["--variant", "dyreg", "--amp", "fp16"], "amp 'fp16' is for CUDA GPUs; on the CPU a run is fp32"),
        (["--variant", "dyreg", "--amp", "half"], "amp must be one of ('auto', 'bf16', 'fp16', 'off'), got 'half'"),
    ],
)
def test_cli_errors_are_one_line(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        train.main(argv + ["--out", str(tmp_path / "run"), "--no-progress"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_cli_trains_and_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(train.SCALES, "mini", {**train.SCALES["mini"], **dict(
        size=32, num_digits=2, num_frames=3, train_videos=16, val_videos=4, backbone="scratch", freeze_backbone=False, head_init="none")})
    out = str(tmp_path / "run")
    assert train.main(["--variant", "fixed", "--out", out, "--max-steps", "2", "--batch-size", "8", "--epochs", "10", "--no-progress"]) == 0
    assert train.main(["--variant", "fixed", "--out", out, "--max-steps", "3", "--batch-size", "8", "--epochs", "10", "--no-progress", "--resume"]) == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["steps"] == 3 and result["command"].startswith("python -m dyreg_edu.train --variant fixed")
    assert [r["step"] for r in runs.read_log(tmp_path / "run" / "log.jsonl")] == [1, 2, 3]


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
    one = runs.read_log(tmp_path / "one" / "log.jsonl")
    three = runs.read_log(tmp_path / "three" / "log.jsonl")
    assert [r["step"] for r in three] == list(range(1, 8))
    for a, b in zip(one, three):
        assert a["loss"] == b["loss"] and a["accuracy"] == b["accuracy"] and a["gamma"] == b["gamma"]
        assert ("val_accuracy" in a) == ("val_accuracy" in b)


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




def test_accumulation_steps_on_the_mean_loss_of_its_micro_batches(tmp_path):
    """``accumulate=2``: the step's loss is the mean of its two halves' losses, each half through the model
    on its own (its own BatchNorm batch), from the same start."""
    import torch.nn.functional as F

    cfg = tiny("dyreg", train_videos=16, accumulate=2)
    model, _ = train.starting_model(cfg, progress=False)
    model.train()
    data = train.build_data(cfg, "train")
    loader = data.iter_batches(cfg.batch_size, shuffle=True)
    loader.set_epoch(0)
    halves = []
    for indices in loader.order()[:cfg.batch_size].chunk(2):
        batch = data.batch(indices)
        video, boxes = train.model_inputs(batch, "cpu")
        halves.append(F.cross_entropy(model(video, boxes=boxes), batch["label"]).item())
    train.train(cfg, tmp_path, max_steps=2, progress=False)
    assert losses(tmp_path)[0] == pytest.approx(sum(halves) / 2, rel=1e-5)


DDP_SCRIPT = """
import json, sys
from dyreg_edu import train
settings = json.loads(sys.argv[1])
cfg = train.config(settings.pop("variant"), "mini", **settings)
train.train(cfg, sys.argv[2], max_steps=3, progress=False)
"""


@pytest.mark.slow
def test_two_process_gloo_ddp_gives_the_losses_of_one_process(tmp_path):
    """``torchrun`` with two processes, each with half of every step's batch, logs the losses of one process
    that accumulates the same two halves (the same BatchNorm batches), to fp32 precision."""
    import os
    import socket
    import subprocess
    import sys

    settings = dict(variant="dyreg", size=32, num_digits=2, num_frames=3, train_videos=16, val_videos=4, batch_size=8,
                    epochs=50, backbone="scratch", freeze_backbone=False, head_init="none", warmup_steps=0, lr=3e-3,
                    eval_every=2, checkpoint_minutes=0.0)
    script = tmp_path / "run.py"
    script.write_text(DDP_SCRIPT)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", f"--master_port={port}",
                          str(script), json.dumps(settings), str(tmp_path / "two")], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    variant = settings.pop("variant")
    train.train(config(variant, "mini", accumulate=2, **settings), tmp_path / "one", max_steps=3, progress=False)
    two, one = [runs.read_log(tmp_path / name / "log.jsonl") for name in ("two", "one")]
    assert [r["step"] for r in two] == [r["step"] for r in one] == [1, 2, 3]
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=1e-4)
    assert [r["val_accuracy"] for r in two if "val_accuracy" in r] == [r["val_accuracy"] for r in one if "val_accuracy" in r]
    assert json.loads((tmp_path / "two" / "result.json").read_text())["steps"] == 3


LOADERS = {  # how each loader of a trained MultiSyncMNIST model is given a file
    "load_trained": lambda path, tmp: load_trained(path),
    "--resume": lambda path, tmp: train.main(["--variant", "dyreg", "--out", str(_as_run(path, tmp)), "--resume",
                                              "--no-progress"]),
    "--experiment warm_start:head": lambda path, tmp: train.main(
        ["--variant", "dyreg", "--out", str(tmp / "run"), "--no-progress", "--max-steps", "0",
         "--experiment", f"warm_start:head={path}"]),
}


def _as_run(path, tmp):
    """A run directory whose checkpoint.pt is the file ``path``."""
    run = tmp / "resumed"
    run.mkdir(exist_ok=True)
    (run / "checkpoint.pt").write_bytes(path.read_bytes())
    return run


@pytest.mark.parametrize("loader", LOADERS)
@pytest.mark.parametrize("kind", ["text", "random_bytes", "truncated", "other_kind", "digit_backbone"])
def test_a_file_that_is_not_a_trained_checkpoint_gets_one_clear_error(loader, kind, bad_torch_files, repo_root,
                                                                     tmp_path, capsys):
    """A text file, random bytes, a half-written checkpoint, a dict of another kind and a checkpoint of
    another kind (the mini design's digit backbone): one ValueError, or one ``error:`` line, naming the file."""
    path = repo_root / "checkpoints" / "multisync_mini_digits.pt" if kind == "digit_backbone" else bad_torch_files[kind]
    try:
        LOADERS[loader](path, tmp_path)
    except SystemExit as exit_:
        err = capsys.readouterr().err.strip()
        assert exit_.code == 2 and "\n" not in err and "Traceback" not in err, err
        message = err
    except ValueError as error:
        message = str(error)
    else:
        raise AssertionError(f"{loader} accepted {kind}")
    named = "resumed/checkpoint.pt" if loader == "--resume" else path.name  # the file the loader was given
    assert named in message and "expected" in message, message


def test_fp16_with_a_gradient_scaler_learns_and_resumes_exactly(tmp_path, monkeypatch):
    """The T4's path (fp16 autocast, a gradient scaler whose state is checkpointed), run on the CPU: the trainer
    is told that ``amp`` means fp16 here (on a real CPU run it is an error, and ``auto`` is fp32)."""
    monkeypatch.setattr(train, "resolve_amp", lambda amp, device, bf16=None: "fp16")
    cfg = tiny("dyreg", dropout=0.5, train_videos=16)
    train.train(cfg, tmp_path / "straight", max_steps=6, progress=False)
    train.train(cfg, tmp_path / "split", max_steps=3, progress=False)
    def scaler(run):
        return torch.load(tmp_path / run / "checkpoint.pt", weights_only=True)["scaler"]

    # (whether fp16 overflows at the first steps, at the scaler's initial 65536, depends on the CPU's kernels)
    state = scaler("split")
    assert 0 < state["scale"] <= 65536 and 0 <= state["_growth_tracker"] <= 3
    assert (state["scale"], state["_growth_tracker"]) != (65536.0, 0)  # it has stepped: grown its tracker or halved
    train.train(cfg, tmp_path / "split", max_steps=6, resume=True, progress=False)
    assert losses(tmp_path / "split") == losses(tmp_path / "straight")
    assert losses(tmp_path / "straight")[-1] < losses(tmp_path / "straight")[0] - 0.2
    assert scaler("split") == scaler("straight")  # the scaler's state went through the checkpoint


def test_configs_saved_with_a_bool_amp_read_as_auto_or_off():
    old = config("dyreg", "mini").to_dict()
    assert train.TrainConfig.from_dict({**old, "amp": True}).amp == "auto"
    assert train.TrainConfig.from_dict({**old, "amp": False}).amp == "off"
    assert config("dyreg", "mini").amp == "auto"


def test_the_cli_trains_a_rung_of_the_ladder():
    """``--task where --padding circular --full-curve`` is the ladder's where rung (chapter 6's GPU cell)."""
    from dyreg_edu.ladder import rung_config

    for variant in ("dyreg", "resnet18"):
        argv = ["--variant", variant, "--task", "where", "--padding", "circular", "--full-curve", "--out", "x"]
        args = train.parser().parse_args(argv)
        assert config(args.variant, args.scale, args.recipe, **train.overrides_from_args(args)) == rung_config("where", variant)
