"""The GPU work queue: what only a GPU can do, resumed window after window.

    python tools/gpu_queue.py --minutes 8.5 --out "$OUT"      # (make gpu-queue)

GPU time comes in short windows (about 15 minutes, now and then), so the queue
picks up where the last window stopped and stops itself in time to save:

1. Its first minute records the CUDA rows of the benchmarks
   (``results/benchmarks/{block,multisync,train_throughput,tsm_overhead,block_profile}_cuda.json``),
   those not recorded yet (``--rerun-benchmarks`` measures them all again, e.g. on another GPU).
   ``block_profile`` is torch.profiler's account of one DyReg block at res4, stage by stage: why
   ``tsm_overhead``'s DyReg costs more on the GPU than paper Table 12 says.
2. The rest goes first to the ladder's long runs (:mod:`dyreg_edu.ladder`: the rungs that need the
   relation, :data:`LADDER_RUNGS`; the plain model, DyReg and Fixed, then a second seed of the last two),
   which take millions of videos (days on a CPU, minutes on an H100), then to the paper-scale
   MultiSyncMNIST runs in the order of their value (:data:`dyreg_edu.ablations.PRIORITY`: ``dyreg``,
   ``fixed``, ``resnet18``, ``pos_only``, then the others). Each resumes from its committed state in
   ``states/ladder/<rung>/<name>/`` or ``states/multisync/<name>/`` (model and optimiser in half
   precision, :func:`dyreg_edu.runs.save_state`; the only place a run survives between windows, and
   where a CPU session resumes it from too), trains until the deadline or its end, and is saved back
   there with a ``windows.jsonl`` record of which machine ran which steps. A finished run writes its
   result (``results/multisync/ladder/<rung>/`` or ``results/multisync/``) and checkpoint.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from dyreg_edu import ablations, ladder, runs  # noqa: E402

STATES = REPO / "states" / "multisync"
#: The ladder's rungs whose runs need millions of videos: the queue trains them before the paper scale.
LADDER_RUNGS = ("sync2", "pair2", "mini")
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
    """The step of a run's last log record (0 for no log; ``log.jsonl`` or its ``.gz``)."""
    records = runs.read_log(log)
    return records[-1]["step"] if records else 0


@dataclass
class Job:
    """One run of the queue: where it trains (``run``), where its state is committed (``state``), and how
    it trains until a deadline (``train(deadline) -> result or None``) and which files a finished one adds."""

    name: str
    run: Path
    state: Path
    train: Callable[[float], dict | None]
    finished: Callable[[], bool]
    outputs: Callable[[], list[Path]]


def ladder_jobs(device: str) -> list[Job]:
    """The ladder's long runs (the rungs that need the relation; DyReg, Fixed and the plain model, two seeds)."""
    jobs = []
    for rung in LADDER_RUNGS:
        for seed in (0, 1):
            for variant in ladder.VARIANTS if seed == 0 else ("dyreg", "fixed"):
                name = ladder.result_name(variant, seed)
                jobs.append(Job(
                    f"ladder/{rung}/{name}", REPO / "runs" / "ladder" / rung / name, REPO / "states" / "ladder" / rung / name,
                    lambda deadline, r=rung, v=variant, s=seed: ladder.run_one(
                        r, v, seed=s, runs_root=REPO / "runs" / "ladder", deadline=deadline, progress=False, device=device),
                    lambda r=rung, n=name: (ladder.LADDER_DIR / r / f"{n}.json").exists(),
                    lambda r=rung, n=name, v=variant, s=seed: ladder.outputs(r, v, s)))
    return jobs


def paper_jobs(device: str) -> list[Job]:
    """The paper-scale runs in :data:`ablations.PRIORITY` order."""
    return [Job(name, RUNS / name, STATES / name,
                lambda deadline, n=name: ablations.run_one(ablations.run_of(n), "paper", RUNS, deadline=deadline,
                                                           common={"device": device}, progress=False),
                lambda n=name: bool((ablations.read_result("paper", n) or {}).get("finished")),
                lambda n=name: [ablations.results_dir("paper") / f"{n}.json",
                                ablations.kept_log_path("paper", n),
                                REPO / "checkpoints" / f"multisync_{n}.pt"])
            for name in ablations.PRIORITY]


def record_window(job: Job, first_step: int, seconds: float, device: str) -> Path:
    """Append this window's share of ``job`` to its ``windows.jsonl``: when, on what, with which commit, from
    which step to which (a run's provenance across windows). Kept in the run folder (which survives on a
    warm machine even where the working tree's ``states/`` was replaced) and copied to the committed state."""
    fields = runs.provenance_fields("python tools/gpu_queue.py", seconds, device)
    window = {"date": fields["date"], "device": fields["device"], "commit": fields["commit"],
              "from_step": first_step, "to_step": last_step(job.state / "log.jsonl"), "wall_seconds": fields["wall_seconds"]}
    job.run.mkdir(parents=True, exist_ok=True)
    with (job.run / "windows.jsonl").open("a") as f:
        f.write(json.dumps(window) + "\n")
    job.state.mkdir(parents=True, exist_ok=True)
    path = job.state / "windows.jsonl"
    path.write_text((job.run / "windows.jsonl").read_text())
    return path


def resumes_from(job: Job) -> int:
    """The step ``job`` resumes from: its run folder's log when that holds a checkpoint (a warm machine's own
    last window), else the committed state's log (0 for a new run)."""
    if (job.run / "checkpoint.pt").exists():
        return last_step(job.run / "log.jsonl")
    return last_step(job.state / "log.jsonl")


def run_queue(deadline: float, device: str, jobs: list[Job] | None = None) -> list[Path]:
    """The jobs in order (the ladder's long runs, then the paper scale) until ``deadline``; the files changed."""
    changed: list[Path] = []
    for job in ladder_jobs(device) + paper_jobs(device) if jobs is None else jobs:
        if time.time() > deadline - 60:
            break
        if job.finished():
            continue
        tic = time.time()
        try:
            runs.restore_state(job.state, job.run)
            first_step = resumes_from(job)
            result = job.train(deadline)
        except Exception:  # report it and go on: one broken run must not cost the window
            traceback.print_exc()
            print(f"gpu_queue: {job.name} failed (traceback above); trying the next run", flush=True)
            continue
        if (job.run / "checkpoint.pt").exists():
            changed += runs.save_state(job.run, job.state)
            changed.append(record_window(job, first_step, time.time() - tic, device))
        if result is None:
            print(f"gpu_queue: {job.name} saved, unfinished", flush=True)
            break
        changed += job.outputs()
        print(f"gpu_queue: {job.name} finished at {result['val_accuracy']:.2f}%", flush=True)
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
