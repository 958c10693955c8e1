"""The plumbing of a run (dyreg_edu.runs): logs, provenance, checkpoints, settings, the CLI's KEY=VALUE."""

import contextlib
import gzip
import re

import pytest
import torch

from dyreg_edu import runs


def test_read_log_gives_a_runs_records_and_nothing_for_a_run_without_a_log(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1, "loss": 2.5}\n\n{"step": 2, "loss": 2.0, "val_accuracy": 30.0}\n')
    assert runs.read_log(log) == [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.0, "val_accuracy": 30.0}]
    assert runs.read_log(tmp_path / "missing.jsonl") == []


def test_git_commit_says_when_the_code_differs_from_the_commit(monkeypatch):
    from types import SimpleNamespace

    def fake_git(changes):
        def run(args, **kwargs):
            out = "abc1234\n" if "rev-parse" in args else changes
            return SimpleNamespace(stdout=out, returncode=0)
        return run

    monkeypatch.delenv("DYREG_COMMIT", raising=False)
    monkeypatch.setattr(runs.subprocess, "run", fake_git(""))
    assert runs.git_commit() == "abc1234"
    monkeypatch.setattr(runs.subprocess, "run", fake_git(" M dyreg_edu/train.py\n"))
    assert runs.git_commit() == "abc1234-dirty"
    monkeypatch.setenv("DYREG_COMMIT", "def5678")  # a GPU machine's copy, named by the queue's command
    assert runs.git_commit() == "def5678"


def test_keyword_values_read_literals_and_words():
    from dyreg_edu.dyreg import DyRegBlock

    assert runs.keyword_values(["anchors=grid", "fixed_size=2", "grid=(3, 3)", "normalize_kernels=False"], DyRegBlock,
                               "--block") == {"anchors": "grid", "fixed_size": 2, "grid": (3, 3), "normalize_kernels": False}
    with pytest.raises(ValueError, match="--block normalize_kernels wants bool or None, got 'false' \\(True or False\\)"):
        runs.keyword_values(["normalize_kernels=false"], DyRegBlock, "--block")
    with pytest.raises(ValueError, match="--block wants KEY=VALUE with KEY one of"):
        runs.keyword_values(["variant=fixed"], DyRegBlock, "--block", exclude=("variant",))


def test_a_gzipped_log_reads_as_the_plain_one(tmp_path):
    text = '{"step": 1, "loss": 2.5}\n{"step": 2, "loss": 2.0}\n'
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "run.jsonl.gz").write_bytes(gzip.compress(text.encode()))
    expected = [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.0}]
    assert runs.read_log(tmp_path / "logs" / "run.jsonl") == expected == runs.read_log(tmp_path / "logs" / "run.jsonl.gz")


def test_settings_round_trip_and_refuse_unknown_keys():
    from dyreg_edu.train import TrainConfig, config

    cfg = config("dyreg", "mini", experiments={"box_loss": {"weight": 1.0}})
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg and isinstance(TrainConfig.from_dict(cfg.to_dict()).widths, tuple)
    with pytest.raises(ValueError, match=r"unknown settings \['colour'\]"):
        TrainConfig.from_dict({**cfg.to_dict(), "colour": "red"})


def test_check_resume_names_the_settings_that_differ(tmp_path):
    from dyreg_edu.train import config

    with pytest.raises(ValueError, match=r"another configuration \(lr, seed differ\)"):
        runs.check_resume(config("dyreg", "mini"), config("dyreg", "mini", lr=0.1, seed=3), tmp_path / "c.pt")
    runs.check_resume(config("dyreg", "mini"), config("dyreg", "mini", device="cpu"), tmp_path / "c.pt", device="cuda")




# --------------------------------------------------------------------------- mixed precision


@pytest.mark.parametrize("amp, device, bf16, expected", [
    ("auto", "cpu", None, "off"), ("off", "cpu", None, "off"), ("bf16", "cpu", None, "bf16"),  # bf16 when asked
    ("auto", "cuda", True, "bf16"),   # an A100, L4 or H100
    ("auto", "cuda", False, "fp16"),  # a T4 or V100: fp16 with a gradient scaler
    ("fp16", "cuda", True, "fp16"), ("bf16", "cuda:1", True, "bf16"), ("off", "cuda", False, "off"),
    (True, "cuda", True, "bf16"), (True, "cpu", None, "off"), (False, "cuda", True, "off"),  # older configs' bools
])
def test_amp_resolves_to_the_precision_the_device_has(amp, device, bf16, expected):
    assert runs.resolve_amp(amp, device, bf16=bf16) == expected


@pytest.mark.parametrize("amp, device, bf16, message", [
    ("fp16", "cpu", None, "amp 'fp16' is for CUDA GPUs; on the CPU a run is fp32"),
    ("bf16", "cuda", False, "this GPU has no bf16"),
    ("half", "cpu", None, "amp must be one of ('auto', 'bf16', 'fp16', 'off'), got 'half'"),
])
def test_amp_refuses_what_the_device_cannot_do(amp, device, bf16, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        runs.resolve_amp(amp, device, bf16=bf16)


def test_the_cpu_autocast_of_auto_is_none():
    assert isinstance(runs.autocast("cpu", "auto"), contextlib.nullcontext)
    assert isinstance(runs.autocast("cpu", True), contextlib.nullcontext)


def fp16_step(precision, model, x, scale_loss=1.0):
    with precision.autocast():
        loss = model(x).float().pow(2).mean() * scale_loss
    precision.backward(loss)
    precision.unscale(model.optim)
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    precision.step(model.optim)
    model.optim.zero_grad()


def test_the_fp16_gradient_scaler_skips_an_overflowing_step_and_keeps_its_state():
    """fp16 with torch.amp.GradScaler (the T4's path), run on the CPU: a step whose gradients overflow fp16 is
    skipped and halves the scale; a normal one moves the weights; the scaler's state round-trips."""
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    model.optim = torch.optim.SGD(model.parameters(), lr=0.1)
    precision = runs.Precision("fp16", "cpu")
    x = torch.randn(8, 4)
    before = model.weight.detach().clone()
    fp16_step(precision, model, x, scale_loss=1e6)  # times the initial scale 65536: inf in fp16
    assert torch.equal(model.weight, before) and precision.state_dict()["scale"] == 32768.0
    fp16_step(precision, model, x)
    assert not torch.equal(model.weight, before)
    again = runs.Precision("fp16", "cpu")
    again.load_state_dict(precision.state_dict())
    assert again.state_dict() == precision.state_dict()
    off = runs.Precision("off", "cpu")
    assert off.scaler is None and off.state_dict() == {} and isinstance(off.autocast(), contextlib.nullcontext)
    off.load_state_dict(precision.state_dict())  # a fp16 checkpoint resumed in fp32: the scale is not needed
    with pytest.raises(ValueError, match="'bf16', 'fp16' or 'off'"):
        runs.Precision("auto")
