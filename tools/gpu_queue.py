"""The GPU work queue: what only a GPU can do, resumed window after window.

    python tools/gpu_queue.py --minutes 8.5 --out "$OUT"      # (make gpu-queue)

GPU time comes in short windows (about 15 minutes, now and then), so the queue
picks up where the last window stopped and stops itself in time to save:

1. Its first minute records the CUDA rows of the benchmarks
   (``results/benchmarks/{block,multisync,train_throughput,tsm_overhead,block_profile}_cuda.json``),
   those not recorded yet (``--rerun-benchmarks`` measures them all again, e.g. on another GPU).
   ``block_profile`` is torch.profiler's account of one DyReg block at res4, stage by stage: why
   ``tsm_overhead``'s DyReg costs more on the GPU than paper Table 12 says.
2. The rest goes to the paper-scale MultiSyncMNIST runs in the order of their value
   (:data:`dyreg_edu.ablations.PRIORITY`: ``dyreg``, ``fixed``, ``resnet18``, ``pos_only``,
   then the others). Each resumes from its committed state in ``states/multisync/<name>/``
   (model and optimiser in half precision, the only place a run survives between
   windows), trains until the deadline or its end, and is saved back there. A finished
   run writes ``results/multisync/<name>.json`` and, for the book's variants,
   ``checkpoints/multisync_<name>.pt``.

Everything it changed is packed into ``OUT/queue.tar.part-*`` (15 MB pieces, the
device tool's limit is 16 MB a file); unpack it in the repository with
``cat queue.tar.part-* | tar -x`` and commit.
"""
from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import time
import traceback
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from dyreg_edu import ablations  # noqa: E402
from dyreg_edu.runs import load_checkpoint, read_log  # noqa: E402

STATES = REPO / "states" / "multisync"
RUNS = REPO / "runs" / "paper"
#: The CUDA benchmarks of the first minute or two, in order of value; each gets at most
#: ``BENCHMARK_SECONDS`` left of the budget (a slow or broken one cannot eat the window).
BENCHMARKS = [
    ["benchmarks/multisync.py", "--device", "cuda", "--videos", "200", "--loop-videos", "50", "--repeats", "1",
     "--out", "results/benchmarks/multisync_cuda.json"],
    ["benchmarks/train_throughput.py", "--scale", "paper", "--device", "cuda", "--out", "results/benchmarks/train_throughput_cuda.json"],
    ["benchmarks/block.py", "--device", "cuda", "--out", "results/benchmarks/block_cuda.json"],
    ["benchmarks/tsm_overhead.py", "--device", "cuda", "--repeats", "5", "--out", "results/benchmarks/tsm_overhead_cuda.json"],
    ["benchmarks/block_profile.py", "--device", "cuda", "--out", "results/benchmarks/block_profile_cuda.json"],
]
BENCHMARK_SECONDS = 110
PIECE = 15 * 2**20


def map_tensors(tree, fn):
    """``fn`` applied to every tensor of a (nested dict/list) state; the rest unchanged."""
    if torch.is_tensor(tree):
        return fn(tree)
    if isinstance(tree, dict):
        return {k: map_tensors(v, fn) for k, v in tree.items()}
    if isinstance(tree, list):
        return [map_tensors(v, fn) for v in tree]
    return tree


def compact(tree, dtype):
    """Floating tensors of a (nested) state to ``dtype``; scalars (Adam's ``step``) and the rest unchanged.

    The model goes to fp16 (more mantissa than bf16); the optimiser to bf16, whose range
    keeps Adam's tiny second moments (fp16 would flush them to zero, and the first resumed
    step would divide by ``eps`` alone).
    """
    return map_tensors(tree, lambda t: t.to(dtype) if t.is_floating_point() and t.numel() > 1 else t)


def float32(tree):
    """Half-precision tensors of a (nested) state back to fp32; the rest unchanged."""
    return map_tensors(tree, lambda t: t.float() if t.dtype in (torch.float16, torch.bfloat16) else t)


def without_sgd_momentum(optimizer: dict) -> dict:
    """An optimiser state dict with SGD's momentum buffers left out (Adam's moments kept).

    A committed state is repository history (100 MB in all), and the momentum buffer is as
    large as the model. With momentum 0.9 it remembers about the last ten steps' gradients of
    a run of ~10^5 steps; a resumed SGD rebuilds it from its first gradient on (PyTorch starts
    a missing buffer as that gradient), so leaving it out halves a window's commit and costs
    the run a few steps' worth of momentum, like the half-precision rounding does.
    """
    state = {k: {n: v for n, v in s.items() if n != "momentum_buffer"} for k, s in optimizer["state"].items()}
    return {**optimizer, "state": {k: s for k, s in state.items() if s}}


def save_state(name: str) -> list[Path]:
    """runs/paper/<name>/checkpoint.pt -> states/multisync/<name>/{model (fp16),optimizer (bf16)}.pt + log.jsonl.

    The optimiser is kept without SGD's momentum (:func:`without_sgd_momentum`).
    """
    run = RUNS / name
    ckpt = load_checkpoint(run / "checkpoint.pt")
    folder = STATES / name
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(compact({k: v for k, v in ckpt.items() if k != "optimizer"}, torch.float16), folder / "model.pt")  # rng: bytes
    torch.save(compact(without_sgd_momentum(ckpt["optimizer"]), torch.bfloat16), folder / "optimizer.pt")
    (folder / "log.jsonl").write_text((run / "log.jsonl").read_text())
    return [folder / "model.pt", folder / "optimizer.pt", folder / "log.jsonl"]


def restore_state(name: str) -> None:
    """states/multisync/<name>/ -> runs/paper/<name>/checkpoint.pt (fp32 again), when the run dir lacks it.

    A GPU continuation therefore starts from the rounded state: its losses are close to,
    not bit-equal with, an uninterrupted run's (within one window, resume is exact).
    """
    folder, run = STATES / name, RUNS / name
    if not (folder / "model.pt").exists() or (run / "checkpoint.pt").exists():
        return
    model = torch.load(folder / "model.pt", weights_only=True)
    optimizer = torch.load(folder / "optimizer.pt", weights_only=True)
    run.mkdir(parents=True, exist_ok=True)
    torch.save(float32(model) | {"optimizer": float32(optimizer)}, run / "checkpoint.pt")
    (run / "log.jsonl").write_text((folder / "log.jsonl").read_text())
    if (folder / "windows.jsonl").exists():
        (run / "windows.jsonl").write_text((folder / "windows.jsonl").read_text())


def pack(paths: list[Path], out: Path) -> list[Path]:
    """The changed files as a tar in 15 MB pieces under ``out``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(set(paths)):
            if path.exists():
                tar.add(path, arcname=str(path.relative_to(REPO)))
    data = buffer.getvalue()
    out.mkdir(parents=True, exist_ok=True)
    pieces = []
    for i in range(0, len(data), PIECE):
        piece = out / f"queue.tar.part-{i // PIECE:02d}"
        piece.write_bytes(data[i:i + PIECE])
        pieces.append(piece)
    return pieces


def run_benchmarks(device: str, rerun: bool = False) -> list[Path]:
    """The benchmarks of :data:`BENCHMARKS` within :data:`BENCHMARK_SECONDS` in all; those whose
    result file is already committed are skipped unless ``rerun`` (GPU minutes go to training)."""
    changed, budget_end = [], time.time() + BENCHMARK_SECONDS
    for command in BENCHMARKS:
        command = [device if (i > 0 and command[i - 1] == "--device") else c for i, c in enumerate(command)]
        out = REPO / command[command.index("--out") + 1]
        if out.exists() and not rerun:
            print(f"gpu_queue: {out.relative_to(REPO)} is recorded; skipped (--rerun-benchmarks runs it)", flush=True)
            continue
        left = budget_end - time.time()
        if left < 10:
            print(f"gpu_queue: no time left for {command[0]}", flush=True)
            continue
        try:
            subprocess.run([sys.executable, *command], cwd=REPO, check=True, timeout=left)
            changed.append(out)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            print(f"gpu_queue: benchmark {command[0]} failed: {error}", flush=True)
    return changed


def last_step(log: Path) -> int:
    """The step of a run's last log record (0 for no log)."""
    records = read_log(log)
    return records[-1]["step"] if records else 0


def record_window(name: str, first_step: int, seconds: float, device: str) -> Path:
    """Append this window's share of run ``name`` to its ``windows.jsonl``: when, on what, with
    which commit, from which step to which (a run's provenance across windows).

    The record is kept in the run folder (which survives on a warm machine even where the
    working tree's ``states/`` was replaced by a copy without this window) and copied to
    ``states/multisync/<name>/windows.jsonl``, the file that is committed.
    """
    from dyreg_edu.runs import provenance_fields

    run, folder = RUNS / name, STATES / name
    fields = provenance_fields("python tools/gpu_queue.py", seconds, device)
    window = {"date": fields["date"], "device": fields["device"], "commit": fields["commit"],
              "from_step": first_step, "to_step": last_step(folder / "log.jsonl"), "wall_seconds": fields["wall_seconds"]}
    run.mkdir(parents=True, exist_ok=True)
    with (run / "windows.jsonl").open("a") as f:
        f.write(json.dumps(window) + "\n")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "windows.jsonl"
    path.write_text((run / "windows.jsonl").read_text())
    return path


def resumes_from(name: str) -> int:
    """The step run ``name`` resumes from: its run folder's log when that holds a checkpoint (a
    warm machine's own last window), else the committed state's log (0 for a new run)."""
    run = RUNS / name
    if (run / "checkpoint.pt").exists():
        return last_step(run / "log.jsonl")
    return last_step(STATES / name / "log.jsonl")


def run_queue(deadline: float, device: str) -> list[Path]:
    """The paper-scale runs in :data:`ablations.PRIORITY` order until ``deadline``; the files changed."""
    changed: list[Path] = []
    for name in ablations.PRIORITY:
        if time.time() > deadline - 60:
            break
        done = ablations.read_result("paper", name)
        if done and done.get("finished"):
            continue
        tic = time.time()
        try:
            restore_state(name)
            first_step = resumes_from(name)
            result = ablations.run_one(ablations.run_of(name), "paper", RUNS, deadline=deadline,
                                       common={"device": device}, progress=False)
        except Exception:  # report it and go on: one broken run must not cost the window
            traceback.print_exc()
            print(f"gpu_queue: {name} failed (traceback above); trying the next run", flush=True)
            continue
        if (RUNS / name / "checkpoint.pt").exists():
            changed += save_state(name)
            changed.append(record_window(name, first_step, time.time() - tic, device))
        if result is None:
            print(f"gpu_queue: {name} saved, unfinished", flush=True)
            break
        changed.append(ablations.results_dir("paper") / f"{name}.json")
        changed.append(ablations.kept_log_path("paper", name))
        changed.append(REPO / "checkpoints" / f"multisync_{name}.pt")
        print(f"gpu_queue: {name} finished at {result['val_accuracy']:.2f}%", flush=True)
    return changed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=8.5, help="stop everything (saved) after this long")
    p.add_argument("--out", type=Path, default=REPO / "_build" / "gpu_queue", help="where the packed results go")
    p.add_argument("--skip-benchmarks", action="store_true")
    p.add_argument("--rerun-benchmarks", action="store_true", help="run the benchmarks even where their results exist")
    p.add_argument("--device", default="cuda", help="cuda (the point); cpu only to rehearse the queue")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.exit(2, "gpu_queue: no CUDA GPU here; the queue runs on a GPU machine only\n")
    start = time.time()
    deadline = start + 60 * args.minutes - 45  # leave time to save and pack
    changed = [] if args.skip_benchmarks else run_benchmarks(args.device, rerun=args.rerun_benchmarks)
    changed += run_queue(deadline, args.device)
    for table in ablations.PAPER:
        changed.append(ablations.write_table(table, "paper"))
        changed.append(ablations.results_dir("paper") / f"table{table}.json")
    pieces = pack(changed, args.out)
    print(json.dumps({"minutes": round((time.time() - start) / 60, 2), "files": [str(c.relative_to(REPO)) for c in changed],
                      "pieces": [p.name for p in pieces]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
