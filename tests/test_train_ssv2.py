"""python -m dyreg_edu.train_ssv2 on a tiny official-layout download: a few steps, exact resume,
two-process gloo DDP, both evaluation protocols, the object-centric distance, distillation."""

import dataclasses
import json
import os
import socket
import subprocess
import sys

import pytest
import torch

pytest.importorskip("av")

from data_gen import ssv2  # noqa: E402
from dyreg_edu import train_ssv2  # noqa: E402
from dyreg_edu.models import collect_aux  # noqa: E402
from dyreg_edu.runs import read_log  # noqa: E402
from dyreg_edu.train_ssv2 import SSv2Config, evaluate, train  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return ssv2.write_synthetic(tmp_path_factory.mktemp("ssv2"), train_per_class=3, val_per_class=1)


def tiny(root, **overrides):
    """ResNet-18 TSM without graphs, 4 frames of 64 x 64, a batch of 4 (3 steps an epoch)."""
    settings = dict(root=str(root), depth=18, graph_stages=(), pretrained=False, num_frames=4, crop=64, test_crop=96,
                    batch_size=4, base_lr=0.05, epochs=2, lr_steps=(1,), eval_every_epochs=100, workers=0,
                    device="cpu", checkpoint_minutes=0.0, annotations=str(root / "something_else.json"))
    settings.update(overrides)
    return SSv2Config(**settings)


def records(run):
    return read_log(run / "log.jsonl")


@pytest.mark.slow
def test_a_few_steps_then_both_protocols(root, tmp_path):
    result = train(tiny(root), tmp_path, max_steps=4, progress=False)
    log = records(tmp_path)
    assert [r["step"] for r in log] == [1, 2, 3, 4] and all(r["loss"] > 0 for r in log)
    assert log[0]["lr"] == pytest.approx(0.05 * 4 / 10)  # scaled with the batch (the first group: 1x)
    assert log[3]["lr"] == pytest.approx(log[0]["lr"] / 10)  # epoch 1 passed (3 steps an epoch)
    assert result["steps"] == 4 and result["train_videos"] == 16 and not result["finished"]
    for key in ("command", "commit", "device", "date", "wall_seconds", "config"):
        assert key in result
    one, multi = result["evaluation"]["1-clip"], result["evaluation"]["3x2"]
    assert one["videos"] == multi["videos"] == 4 and one["views"] == 1 and multi["views"] == 6
    assert multi["crop"] == 96 and one["crop"] == 64
    assert 0 <= one["top1"] <= 100 and "top5" not in one and "top5" not in multi  # 4 classes: top-5 says nothing
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["state"]["step"] == 4 and "classifier.weight" in ckpt["model"]


@pytest.mark.slow
def test_resume_gives_the_losses_of_a_straight_run(root, tmp_path):
    cfg = tiny(root, dropout=0.5)
    train(cfg, tmp_path / "straight", max_steps=5, progress=False, final_eval=False)
    train(cfg, tmp_path / "split", max_steps=2, progress=False, final_eval=False)
    train(cfg, tmp_path / "split", max_steps=5, resume=True, progress=False, final_eval=False)
    assert records(tmp_path / "split") == [{**r, "videos_per_second": s["videos_per_second"]}
                                           for r, s in zip(records(tmp_path / "straight"), records(tmp_path / "split"))]
    with pytest.raises(ValueError, match="exists"):
        train(cfg, tmp_path / "straight", max_steps=1, progress=False)
    with pytest.raises(ValueError, match="another configuration"):
        train(dataclasses.replace(cfg, base_lr=0.1), tmp_path / "split", resume=True, max_steps=6, progress=False)


def test_accumulation_and_bad_settings(root, tmp_path):
    train(tiny(root, accumulate=2), tmp_path, max_steps=1, progress=False, final_eval=False)
    assert records(tmp_path)[0]["step"] == 1
    with pytest.raises(ValueError, match="batch_size must be a multiple"):
        train(tiny(root, accumulate=3), tmp_path / "b", max_steps=1, progress=False)
    with pytest.raises(ValueError, match="graph_stages"):
        train(tiny(root, graph_stages=("res6",)), tmp_path / "c", max_steps=1, progress=False)
    for accumulate in (0, -1):
        with pytest.raises(ValueError, match=f"accumulate must be a positive number of micro-batches, got {accumulate}"):
            train(tiny(root, accumulate=accumulate), tmp_path / "d", max_steps=1, progress=False)


def test_the_papers_recipe_does_not_clip():
    """The authors' script passes --gd 20, but their code never applies it (dyreg_spec.md 5.1)."""
    from dyreg_edu.train_ssv2 import PAPER_RECIPE, SSv2Config
    assert PAPER_RECIPE["grad_clip"] == 0.0 and SSv2Config(root="x").grad_clip == 0.0


@pytest.mark.slow
def test_cli_errors_name_the_setting(root, tmp_path):
    out = subprocess.run([sys.executable, "-m", "dyreg_edu.train_ssv2", "--root", str(root), "--out", str(tmp_path),
                          "--graph-stages", "res9", "--device", "cpu"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 2 and "graph_stages" in out.stderr and "Traceback" not in out.stderr


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_gloo_ddp_gives_the_losses_of_one_process(root, tmp_path):
    """Two processes, each with half of every step's batch, log the losses of one process that
    accumulates the same two halves (the same BatchNorm batches), to fp32 precision."""
    args = ["--root", str(root), "--depth", "18", "--graph-stages", "none", "--no-pretrained", "--dropout", "0",
            "--num-frames", "4", "--crop", "64", "--batch-size", "4", "--epochs", "1", "--max-steps", "3",
            "--workers", "0", "--device", "cpu", "--no-final-eval", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                          f"--master_port={free_port()}", "-m", "dyreg_edu.train_ssv2", *args, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads((tmp_path / "two" / "result.json").read_text())
    assert result["processes"] == 2 and result["steps"] == 3 and result["train_videos"] == 12
    assert train_ssv2.main(args + ["--accumulate", "2", "--out", str(tmp_path / "one")]) == 0
    two, one = records(tmp_path / "two"), records(tmp_path / "one")
    assert [r["step"] for r in two] == [r["step"] for r in one] == [1, 2, 3]
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=1e-4)
    assert [r["accuracy"] for r in two] == [r["accuracy"] for r in one]


def test_step_batches_split_the_global_batch_between_processes(root):
    cfg = tiny(root, accumulate=2)
    whole = list(train_ssv2.StepBatches(12, cfg, train_ssv2.Dist(), 0, 3))
    parts = [list(train_ssv2.StepBatches(12, cfg, train_ssv2.Dist(r, 2), 0, 3)) for r in range(2)]
    assert len(whole) == 6 and all(len(b) == 2 for b in whole)
    for step in range(3):
        mine = {k for r in range(2) for b in parts[r][2 * step:2 * step + 2] for k in b}
        assert mine == {k for b in whole[2 * step:2 * step + 2] for k in b}


@pytest.fixture(scope="module")
def dyreg_model():
    torch.manual_seed(0)
    cfg = SSv2Config(root="x", depth=50, graph_stages=("res4",), pretrained=False, num_frames=4, crop=64)
    return train_ssv2.build_model(cfg, 4).eval()


def test_evaluate_reports_object_centric_distance_in_both_protocols(root, dyreg_model):
    ann = root / "something_else.json"
    val = ssv2.SomethingSomethingV2(root, "validation", num_frames=4, crop=64, output="dict", annotations=ann)
    test = ssv2.SomethingSomethingV2(root, "validation", num_frames=4, mode="test", crop=96, output="dict", annotations=ann)
    for data in (val, test):
        out = evaluate(dyreg_model, data, batch_size=2)
        oc = out["object_centric"]["res4"]
        assert out["videos"] == 4 and 0 < oc["precision"] < 1.5 and 0 < oc["recall"] < 1.5
        assert out["object_centric"]["score"] == pytest.approx(oc["score"])


def test_distillation_loss_is_zero_for_the_teacher_itself(dyreg_model):
    video = torch.randn(2, 4, 3, 64, 64)
    with collect_aux(dyreg_model) as a:
        dyreg_model(video)
    name = train_ssv2.STAGE_MODULES["res4"]
    moved = {name: {**a[name], "regions": a[name]["regions"] + torch.tensor([0.4, 0.0, 0.0, 0.0])}}
    assert train_ssv2.distillation_loss(a, {"res4": a}).item() == 0
    # (0.4 / W)^2 on one of the four parameters, W = 4 (res4 of a 64-pixel frame)
    assert train_ssv2.distillation_loss(a, {"res4": moved}).item() == pytest.approx(0.1**2 / 4)


@pytest.mark.slow
def test_distillation_kick_start_runs_for_its_fraction(root, tmp_path):
    teacher = tiny(root, depth=50, graph_stages=("res4",), batch_size=2, epochs=1)
    train(teacher, tmp_path / "teacher", max_steps=1, progress=False, final_eval=False)
    student = dataclasses.replace(teacher, distill_from={"res4": str(tmp_path / "teacher" / "checkpoint.pt")},
                                  distill_fraction=1 / 6)  # 6 steps an epoch: the first step only
    train(student, tmp_path / "student", max_steps=2, progress=False, final_eval=False)
    log = records(tmp_path / "student")
    assert log[0]["distill"] >= 0 and "distill" not in log[1]  # both start at the initial regions: near 0


def test_amp_names_a_precision_and_older_bool_configs_migrate():
    cfg = SSv2Config(root="x", device="cpu")
    assert cfg.amp == "auto"
    train_ssv2.check_config(cfg)
    for amp, message in (("fp16", "amp 'fp16' is for CUDA GPUs"), ("half", "amp must be one of")):
        with pytest.raises(ValueError, match=message):
            train_ssv2.check_config(dataclasses.replace(cfg, amp=amp))
    assert SSv2Config.from_dict({**cfg.to_dict(), "amp": True}).amp == "auto"
    assert SSv2Config.from_dict({**cfg.to_dict(), "amp": False}).amp == "off"
    args = train_ssv2.parser().parse_args(["--root", "x", "--no-amp"])
    assert train_ssv2.config_from_args(args).amp == "off"
    assert train_ssv2.config_from_args(train_ssv2.parser().parse_args(["--root", "x", "--amp", "fp16"])).amp == "fp16"


@pytest.mark.slow
def test_fp16_with_a_gradient_scaler_resumes_with_its_scale(root, tmp_path, monkeypatch):
    """The T4's path, run on the CPU (told that amp means fp16 here): the scaler's state is in the checkpoint
    and a resumed run gives the straight run's losses."""
    monkeypatch.setattr(train_ssv2, "resolve_amp", lambda amp, device, bf16=None: "fp16")
    cfg = tiny(root, dropout=0.5, grad_clip=20.0)
    train(cfg, tmp_path / "straight", max_steps=4, progress=False, final_eval=False)
    train(cfg, tmp_path / "split", max_steps=2, progress=False, final_eval=False)
    assert torch.load(tmp_path / "split" / "checkpoint.pt", weights_only=True)["scaler"]["scale"] > 0
    train(cfg, tmp_path / "split", max_steps=4, resume=True, progress=False, final_eval=False)
    assert [r["loss"] for r in records(tmp_path / "split")] == [r["loss"] for r in records(tmp_path / "straight")]
    scalers = [torch.load(tmp_path / run / "checkpoint.pt", weights_only=True)["scaler"] for run in ("straight", "split")]
    assert scalers[0] == scalers[1]  # the same skipped steps and the same scale
