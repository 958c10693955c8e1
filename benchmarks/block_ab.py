"""Benchmark: the DyReg block of an earlier commit against today's, side by side (a refactor's check).

Both blocks are built with the same seed, their zero-initialised scales opened alike, and run forward and
backward on the same input, alternately (so that a busy machine slows both alike). It prints each one's
median time, the number of aten calls of one step, and whether the outputs are bitwise equal.

    python benchmarks/block_ab.py --before 289c803 [--batch 32] [--repeats 16] [--out results/benchmarks/block_ab_cpu.json]
"""
from __future__ import annotations

import argparse
import importlib
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def block_class(root: str):
    """``DyRegBlock`` of the ``dyreg_edu`` package found under ``root``."""
    for name in [m for m in sys.modules if m == "dyreg_edu" or m.startswith("dyreg_edu.")]:
        del sys.modules[name]
    sys.path.insert(0, root)
    try:
        return importlib.import_module("dyreg_edu.dyreg").DyRegBlock
    finally:
        sys.path.pop(0)


def checkout(commit: str) -> str:
    """``dyreg_edu/`` of ``commit`` in a temporary folder (``git archive``)."""
    folder = tempfile.mkdtemp()
    data = subprocess.run(["git", "archive", commit, "dyreg_edu"], cwd=REPO, capture_output=True, check=True).stdout
    tarfile.open(fileobj=io.BytesIO(data)).extractall(folder)
    return folder


def opened(cls, batch: int):
    torch.manual_seed(0)
    block = cls(32, 16, 16, node_dim=32, region_dim=32)  # the mini scale's block
    with torch.no_grad():
        block.residual_norm.scale.normal_()
        block.region_generator.gamma.fill_(0.3)
    return block


def aten_calls(block, x) -> int:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        y, _ = block(x)
        y.mean().backward()
    return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before", required=True, help="the earlier commit")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=16)
    p.add_argument("--out", help="write the figures as JSON with their provenance")
    args = p.parse_args(argv)
    tic = time.time()
    blocks = {"before": opened(block_class(checkout(args.before)), args.batch), "after": opened(block_class(REPO), args.batch)}
    torch.manual_seed(1)
    x = torch.randn(args.batch, 8, 32, 16, 16)
    equal = torch.equal(blocks["before"](x)[0], blocks["after"](x)[0])
    times = {name: [] for name in blocks}
    for _ in range(args.repeats):
        for name, block in blocks.items():
            start = time.perf_counter()
            y, _ = block(x)
            y.mean().backward()
            times[name].append(time.perf_counter() - start)
    rows = {name: {"median_ms": round(1000 * statistics.median(t[2:]), 1), "aten_calls": aten_calls(blocks[name], x)}
            for name, t in times.items()}
    for name, row in rows.items():
        print(f"{name:6s} forward + backward {row['median_ms']:8.1f} ms   {row['aten_calls']} aten calls")
    print(f"outputs bitwise equal: {equal}")
    if args.out:
        sys.path.insert(0, REPO)
        from dyreg_edu.runs import provenance_fields, write_record

        command = "python benchmarks/block_ab.py " + " ".join(sys.argv[1:] if argv is None else argv)
        write_record(args.out, {**provenance_fields(command, time.time() - tic, "cpu"), "before": args.before,
                                "batch": args.batch, "threads": torch.get_num_threads(), "rows": rows,
                                "outputs_equal": equal})
    return 0


if __name__ == "__main__":
    sys.exit(main())
