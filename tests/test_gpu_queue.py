"""The GPU work queue's state handling (the GPU part itself runs only on a GPU machine)."""

import contextlib
import io
import json
import tarfile

import pytest
import torch

from tools import gpu_queue
from dyreg_edu import runs, train
from test_train import tiny


def job(tmp_path, name="dyreg"):
    """A queue job whose run and state folders are in ``tmp_path``."""
    return gpu_queue.Job(name, tmp_path / "runs" / name, tmp_path / "states" / name, None, None, None)


def test_state_survives_a_half_precision_round_trip(tmp_path):
    cfg = tiny("dyreg", train_videos=16)
    train.train(cfg, tmp_path / "runs" / "dyreg", max_steps=2, progress=False)
    files = runs.save_state(tmp_path / "runs" / "dyreg", tmp_path / "states" / "dyreg")
    assert all(f.exists() for f in files) and files[-1].name == "log.jsonl.gz"
    model = torch.load(tmp_path / "states" / "dyreg" / "model.pt", weights_only=True)
    assert all(v.dtype != torch.float32 for v in model["model"].values())
    (tmp_path / "runs" / "dyreg" / "checkpoint.pt").unlink()
    assert runs.restore_state(tmp_path / "states" / "dyreg", tmp_path / "runs" / "dyreg")
    result = train.train(cfg, tmp_path / "runs" / "dyreg", max_steps=4, resume=True, progress=False)
    assert result["steps"] == 4
    steps = [r["step"] for r in runs.read_log(tmp_path / "runs" / "dyreg" / "log.jsonl")]
    assert steps == [1, 2, 3, 4]


def test_sgd_momentum_is_left_out_and_sgd_resumes_without_it():
    weight = torch.nn.Parameter(torch.ones(3))
    sgd = torch.optim.SGD([weight], lr=0.1, momentum=0.9)
    weight.sum().backward()
    sgd.step()
    slim = runs.without_sgd_momentum(sgd.state_dict())
    assert slim["state"] == {} and slim["param_groups"] == sgd.state_dict()["param_groups"]
    fresh = torch.optim.SGD([weight], lr=0.1, momentum=0.9)
    fresh.load_state_dict(slim)
    fresh.step()  # the buffer restarts as this gradient
    assert torch.allclose(fresh.state[weight]["momentum_buffer"], torch.ones(3))
    adam = {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2)}}, "param_groups": []}
    assert runs.without_sgd_momentum(adam) == adam


def test_pack_splits_and_reassembles(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_queue, "REPO", tmp_path)
    monkeypatch.setattr(gpu_queue, "PIECE", 1000)
    a, b = tmp_path / "results" / "a.json", tmp_path / "states" / "b.pt"
    a.parent.mkdir(), b.parent.mkdir()
    a.write_text("{}")
    b.write_bytes(bytes(range(256)) * 20)
    pieces = gpu_queue.pack([a, b, b], tmp_path / "out")
    assert len(pieces) > 2 and all(p.stat().st_size <= 1000 for p in pieces)
    data = b"".join(p.read_bytes() for p in pieces)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert sorted(tar.getnames()) == ["results/a.json", "states/b.pt"]


def test_first_minute_holds_the_tsm_overhead_cuda_rows():
    """The CUDA rows of benchmarks/tsm_overhead.py are queued with the other benchmarks."""
    commands = {command[0]: command for command in gpu_queue.BENCHMARKS}
    command = commands["benchmarks/tsm_overhead.py"]
    assert command[command.index("--device") + 1] == "cuda"
    assert command[command.index("--out") + 1] == "results/benchmarks/tsm_overhead_cuda.json"


def test_compact_keeps_adam_second_moments_and_steps():
    """bf16 keeps tiny second moments that fp16 would flush to zero; scalar steps stay exact."""
    state = {"state": {0: {"step": torch.tensor(93750.0), "exp_avg_sq": torch.full((4,), 1e-12)}}}
    small = runs.compact(state, torch.bfloat16)
    assert small["state"][0]["step"].item() == 93750.0
    assert small["state"][0]["exp_avg_sq"].dtype == torch.bfloat16
    assert (small["state"][0]["exp_avg_sq"] > 0).all()
    assert runs.float32(small)["state"][0]["exp_avg_sq"].dtype == torch.float32


def test_each_window_is_recorded_with_its_steps(tmp_path):
    folder = tmp_path / "states" / "dyreg"
    folder.mkdir(parents=True)
    (folder / "log.jsonl").write_text('{"step": 1}\n{"step": 40}\n')
    path = gpu_queue.record_window(job(tmp_path), 0, 12.3, "cpu")
    (folder / "log.jsonl").write_text('{"step": 1}\n{"step": 40}\n{"step": 90}\n')
    gpu_queue.record_window(job(tmp_path), 40, 4.0, "cpu")
    windows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(w["from_step"], w["to_step"]) for w in windows] == [(0, 40), (40, 90)]
    assert all({"date", "device", "commit", "wall_seconds"} <= set(w) for w in windows)


def test_a_warm_machines_second_window_keeps_the_first(tmp_path, monkeypatch):
    """On a warm machine the run folder outlives a working tree whose states/ lacks the first
    window (it was not unpacked yet): the second window resumes from the run folder's step,
    and the committed record still lists both windows."""
    run, folder = tmp_path / "runs" / "dyreg", tmp_path / "states" / "dyreg"
    run.mkdir(parents=True), folder.mkdir(parents=True)
    assert gpu_queue.resumes_from(job(tmp_path)) == 0
    (folder / "log.jsonl").write_text('{"step": 1}\n{"step": 40}\n')
    gpu_queue.record_window(job(tmp_path), 0, 12.3, "cpu")
    (run / "checkpoint.pt").write_bytes(b"")
    (run / "log.jsonl").write_text('{"step": 1}\n{"step": 40}\n')
    for f in folder.iterdir():  # the next call's working tree: no states/ for this run
        f.unlink()
    assert gpu_queue.resumes_from(job(tmp_path)) == 40
    (folder / "log.jsonl").write_text('{"step": 1}\n{"step": 40}\n{"step": 90}\n')
    path = gpu_queue.record_window(job(tmp_path), gpu_queue.resumes_from(job(tmp_path)), 4.0, "cpu")
    windows = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(w["from_step"], w["to_step"]) for w in windows] == [(0, 40), (40, 90)]


def test_diagnose_state_reports_batchnorm_and_regions(tmp_path):
    from tools import diagnose_state

    cfg = tiny("dyreg", train_videos=16)
    train.train(cfg, tmp_path / "run", max_steps=2, progress=False)
    out = tmp_path / "diagnosis.json"
    diagnose_state.main([str(tmp_path / "run"), "--videos", "4", "--bn-batches", "1", "--out", str(out)])
    report = json.loads(out.read_text())
    assert report["steps"] == 2 and report["measured_on_videos"] == 4
    for key in ("bn_statistics_as_saved", "bn_statistics_recomputed"):
        assert set(report[key]["regions"]) == {"spread", "size"}
    assert {"command", "commit", "device", "date", "wall_seconds"} <= set(report)
    assert out.with_suffix(".log.jsonl.gz").exists() and runs.read_log(out.with_suffix(".log.jsonl"))
    with pytest.raises(FileNotFoundError, match="neither model.pt"):
        diagnose_state.main([str(tmp_path)])


def test_recorded_benchmarks_are_not_run_again(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_queue, "REPO", tmp_path)
    ran = []
    monkeypatch.setattr(gpu_queue.subprocess, "run", lambda command, **kw: ran.append(command[1]))
    for command in gpu_queue.BENCHMARKS[:2]:  # the first two are recorded already
        out = tmp_path / command[command.index("--out") + 1]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("{}")
    changed = gpu_queue.run_benchmarks("cuda")
    assert ran == [command[0] for command in gpu_queue.BENCHMARKS[2:]]
    assert len(changed) == len(gpu_queue.BENCHMARKS) - 2
    ran.clear()
    gpu_queue.run_benchmarks("cuda", rerun=True)
    assert ran == [command[0] for command in gpu_queue.BENCHMARKS]


def test_first_minute_holds_the_block_profile(tmp_path, monkeypatch):
    """benchmarks/block_profile.py's CUDA profile of one res4 block is queued with the benchmarks
    and runs in a window where it is not recorded yet."""
    commands = {command[0]: command for command in gpu_queue.BENCHMARKS}
    command = commands["benchmarks/block_profile.py"]
    assert command[command.index("--device") + 1] == "cuda"
    assert command[command.index("--out") + 1] == "results/benchmarks/block_profile_cuda.json"
    monkeypatch.setattr(gpu_queue, "REPO", tmp_path)
    ran = []
    monkeypatch.setattr(gpu_queue.subprocess, "run", lambda command, **kw: ran.append(command[1:]))
    for other in gpu_queue.BENCHMARKS:  # every other benchmark is recorded
        if other is not command:
            out = tmp_path / other[other.index("--out") + 1]
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text("{}")
    assert gpu_queue.run_benchmarks("cuda") == [tmp_path / "results" / "benchmarks" / "block_profile_cuda.json"]
    assert ran == [command]


def load_block_profile():
    """benchmarks/block_profile.py as a module (benchmarks/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("block_profile", gpu_queue.REPO / "benchmarks" / "block_profile.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_block_profile_reproduces_the_block_and_covers_every_stage(monkeypatch):
    """The queued profile's stage-by-stage forward is the block's, exactly (the script checks it
    before profiling and stops when the block's forward has changed), and its table gives every
    stage its forward and backward work."""
    from dyreg_edu.dyreg import DyRegBlock

    profile = load_block_profile()
    torch.manual_seed(0)
    block = DyRegBlock(32, 16, 16, node_dim=16, region_dim=8)  # a projection, unlike res4
    with torch.no_grad():
        block.residual_norm.scale.fill_(1.0)
        block.region_generator.gamma.fill_(0.3)
    x = torch.randn(1, 3, 32, 16, 16)
    profile.check_stages(block, x, contextlib.nullcontext)
    result = profile.profile_mode(block, x, "train", contextlib.nullcontext, repeats=1, top=5)
    rows = {row["stage"]: row for row in result["stages"]}
    assert set(profile.STAGES + profile.REGION_PARTS) <= set(rows)
    for stage in profile.STAGES + profile.REGION_PARTS:
        assert rows[stage]["forward_ops"] > 0 and rows[stage]["backward_ops"] > 0, stage
    parts = sum(rows[part]["backward_ops"] for part in profile.REGION_PARTS)
    assert rows["region generation"]["backward_ops"] == parts
    assert len(result["top_kernels"]) == 5
    real_remap = profile.remap_nodes
    monkeypatch.setattr(profile, "remap_nodes", lambda nodes, kernels: 1.001 * real_remap(nodes, kernels))
    with pytest.raises(SystemExit, match="differs from block"):
        profile.check_stages(block, x, contextlib.nullcontext)


def test_the_queue_trains_the_ladders_long_runs_first_and_saves_their_state(tmp_path, monkeypatch):
    """The ladder's runs come before the paper scale; an unfinished one is saved to its committed state and
    resumes from it on another machine (a later window, or a CPU session)."""
    names = [j.name for j in gpu_queue.ladder_jobs("cuda") + gpu_queue.paper_jobs("cuda")]
    assert names[:3] == ["ladder/sync2/resnet18", "ladder/sync2/dyreg", "ladder/sync2/fixed"]
    assert names.index("ladder/mini/fixed_seed1") < names.index("dyreg")
    trained = []

    def fake_train(deadline):
        cfg = tiny("dyreg", train_videos=16)
        train.train(cfg, tmp_path / "runs" / "x", max_steps=len(trained) + 1, resume=bool(trained), progress=False)
        trained.append(deadline)
        return None  # unfinished

    x = gpu_queue.Job("x", tmp_path / "runs" / "x", tmp_path / "states" / "x", fake_train, lambda: False, list)
    changed = gpu_queue.run_queue(float("inf"), "cpu", jobs=[x])
    assert {p.name for p in changed} == {"model.pt", "optimizer.pt", "log.jsonl.gz", "windows.jsonl"}
    (tmp_path / "runs" / "x" / "checkpoint.pt").unlink()  # another machine: only the committed state
    gpu_queue.run_queue(float("inf"), "cpu", jobs=[x])
    windows = [json.loads(line) for line in (tmp_path / "states" / "x" / "windows.jsonl").read_text().splitlines()]
    assert [(w["from_step"], w["to_step"]) for w in windows] == [(0, 1), (1, 2)]
