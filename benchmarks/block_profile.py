"""Where one DyReg block's time goes: torch.profiler, stage by stage, at the TSM res4 size.

Paper Table 12 puts DyReg r4's cost at 2.5% of TSM-ResNet-50 (r3-4-5: 8.4%); on an H100
``tsm_overhead.py`` measured 34.5% (64.4%) in the forward pass. This script profiles one block
at the res4 configuration (``tsm_stage_config("res4")``: C = 256, 14 x 14, D = 128), forward and
forward + backward, and splits the time into the block's stages:

    projection (1x1 convs; none at res4) | region generation (f, g_i, GRU, W_o and gamma, alpha)
    | kernels (Eq. 5-6) | nodes: pooling + position (Eq. 7) | graph (Eq. 8-9) | remap (Eq. 10)
    | residual norm

The library's forward is not instrumented: :func:`staged_forward` calls the block's own
methods in the order of ``DyRegBlock.forward``, each stage inside a
``torch.profiler.record_function`` range, and the script first checks that its output equals
``block(x)[0]`` exactly. Backward time goes to the stage whose forward op it differentiates
(the profiler's autograd sequence numbers). Per stage it reports the wall time (the device
synchronised at each stage's ends, forward only), the profiler's time (CPU: the range's CPU
time; CUDA: the sum of its kernels' device time), the number of ops (CPU) or kernels launched
(CUDA; many small kernels and a device time far below the wall time mean the stage is bound by
launches, not by arithmetic) and its top kernels; then the top kernels of the whole pass.

    python benchmarks/block_profile.py --device cpu --batch 1 --frames 4
    python benchmarks/block_profile.py --device cuda --out results/benchmarks/block_profile_cuda.json

Defaults: CPU batch 1 x 8 frames, float32; CUDA batch 8 x 16 frames, bfloat16 autocast (as
``tsm_overhead.py``'s CUDA rows). The block starts away from the identity (residual scale 1,
gamma 0.3), so every part does real work. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile, record_function

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dyreg_edu.dyreg import DyRegBlock  # noqa: E402
from dyreg_edu.kernels import pool_nodes, region_kernels, remap_nodes  # noqa: E402
from dyreg_edu.models import tsm_stage_config  # noqa: E402
from dyreg_edu.notebook import cpu_name, describe_device, git_commit  # noqa: E402
from dyreg_edu.regions import regions_from_offsets  # noqa: E402

STAGES = ("projection", "region generation", "kernels (Eq. 5-6)", "nodes: pool + position (Eq. 7)",
          "graph (Eq. 8-9)", "remap (Eq. 10)", "residual norm")
#: The parts of "region generation", each its own (nested) range.
REGION_PARTS = ("f, g_i (Eq. 1-2)", "GRU + LNs (Eq. 3)", "W_o, gamma (Eq. 4, 11)", "alpha (Eq. 12-14)")
#: Where backward work that differentiates no stage's op goes (the loss, gradient accumulation).
OUTSIDE = "outside the stages (loss, AccumulateGrad)"
DEFAULTS = {"cpu": dict(batch=1, frames=8, dtype="float32"), "cuda": dict(batch=8, frames=16, dtype="bfloat16")}


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_block(device: torch.device) -> DyRegBlock:
    """The res4 block of TSM-ResNet-50, away from the identity start."""
    torch.manual_seed(0)
    block = DyRegBlock(**tsm_stage_config("res4"))
    with torch.no_grad():
        block.residual_norm.scale.fill_(1.0)
        block.region_generator.gamma.fill_(0.3)
    return block.to(device)


def regions_by_parts(block: DyRegBlock, features: torch.Tensor, stage) -> torch.Tensor:
    """``RegionGenerator.forward`` part by part: ``[B, T, C, H, W] -> regions [B, T, N, 4]``."""
    generator = block.region_generator
    with stage(REGION_PARTS[0]):
        m_hat = generator.node_latents(features)
    with stage(REGION_PARTS[1]):
        z = generator.region_latents(m_hat)
    with stage(REGION_PARTS[2]):
        offsets = generator.offsets(z)
    with stage(REGION_PARTS[3]):
        return regions_from_offsets(offsets, generator.anchors, generator.height, generator.width,
                                    size_plus_one=generator.size_plus_one, clamp_centers=generator.clamp_centers,
                                    fixed_size=generator.fixed_size)


def staged_forward(block: DyRegBlock, x: torch.Tensor, stage=record_function) -> torch.Tensor:
    """``DyRegBlock.forward``'s lines in its order, each stage inside ``stage(name)``:
    ``[B, T, C_in, H, W] -> [B, T, C_in, H, W]`` (its output without ``aux``)."""
    with stage(STAGES[0]):
        features = block.project(x)
    with stage(STAGES[1]):
        regions = regions_by_parts(block, features, stage)
    with stage(STAGES[2]):
        kernels = region_kernels(regions, block.height, block.width, block.normalize_kernels, block.kernel_eps,
                                 check=False)
    with stage(STAGES[3]):
        nodes = pool_nodes(features, kernels) + block.position(kernels)
    with stage(STAGES[4]):
        updated, _ = block.graph(nodes)
    with stage(STAGES[5]):
        remapped = remap_nodes(updated, kernels)
    with stage(STAGES[0]):
        y = block.project_back(remapped)
    with stage(STAGES[6]):
        return x + block.residual_norm(y)


def check_stages(block: DyRegBlock, x: torch.Tensor, autocast) -> None:
    """Exit unless :func:`staged_forward` gives exactly ``block(x)[0]`` (the forward it reproduces)."""
    if block.properties.kernels != "regions" or block.full_res or getattr(block, "node_motion", False):
        raise SystemExit("block_profile: staged_forward covers generated regions at the training size only")
    with torch.no_grad(), autocast():
        expected, staged = block(x)[0], staged_forward(block, x, contextlib.nullcontext)
    if not torch.equal(expected, staged):
        diff = (expected.float() - staged.float()).abs().max().item()
        raise SystemExit(f"block_profile: the stage-by-stage forward differs from block(x)[0] (max |diff| {diff:.3g}): "
                         "DyRegBlock.forward changed, update staged_forward")


def one_pass(block: DyRegBlock, x: torch.Tensor, mode: str, autocast, stage=record_function) -> None:
    """A forward (``"forward"``: eval, no gradients) or forward + backward (``"train"``) pass."""
    if mode == "forward":
        with torch.no_grad(), autocast():
            staged_forward(block.eval(), x, stage)
        return
    block.train().zero_grad(set_to_none=True)
    with autocast():
        loss = staged_forward(block, x, stage).float().square().mean()
    loss.backward()


def wall_times(block, x, autocast, repeats: int) -> dict[str, float]:
    """Median milliseconds of each forward stage, the device synchronised at each stage's ends, and
    of whole ``"forward"`` and ``"forward+backward"`` passes (no ranges, not synchronised inside)."""
    samples = []

    @contextlib.contextmanager
    def clocked(name):
        synchronise(x.device)
        start = time.perf_counter()
        yield
        synchronise(x.device)
        spent[name] = spent.get(name, 0.0) + time.perf_counter() - start

    def timed(run) -> float:
        synchronise(x.device)
        start = time.perf_counter()
        run()
        synchronise(x.device)
        return time.perf_counter() - start

    for _ in range(repeats):
        spent: dict[str, float] = {}
        one_pass(block, x, "forward", autocast, clocked)
        spent["forward"] = timed(lambda: one_pass(block, x, "forward", autocast, contextlib.nullcontext))
        spent["forward+backward"] = timed(lambda: one_pass(block, x, "train", autocast, contextlib.nullcontext))
        samples.append(spent)
    return {key: 1e3 * median([s[key] for s in samples]) for key in samples[0]}


def descendants(event):
    stack = [event]
    while stack:
        event = stack.pop()
        yield event
        stack.extend(event.cpu_children)


def costs(event, cuda: bool):
    """``(name, microseconds)`` of the work under a profiler event: its CUDA kernels, or on the
    CPU each op's self CPU time."""
    for child in descendants(event):
        if cuda:
            yield from ((kernel.name, kernel.duration) for kernel in child.kernels)
        elif child.self_cpu_time_total > 0 and not child.name.startswith(("autograd::", *STAGES, *REGION_PARTS)):
            yield child.name, child.self_cpu_time_total


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def stage_table(events, cuda: bool, top: int) -> tuple[list[dict], list[dict]]:
    """Per stage (and region part): profiler milliseconds and op/kernel count (medians over the
    passes, each a ``"pass"`` range) and top kernels, forward and backward; and the top kernels of
    the whole pass (means over the passes)."""
    events = [e for e in events if e.device_type == DeviceType.CPU]  # CUDA kernels hang on CPU ops
    passes = sorted((e.time_range for e in events if e.name == "pass"), key=lambda span: span.start)
    owners: dict[int, set[str]] = defaultdict(set)  # a forward op's sequence number -> its ranges
    spent: dict[tuple[str, str, int], list] = defaultdict(list)  # (range, direction, pass) -> costs
    for event in events:
        if event.name in STAGES + REGION_PARTS:
            for child in descendants(event):
                if child.sequence_nr >= 0:
                    owners[child.sequence_nr].add(event.name)
    for event in events:
        index = next((i for i, span in enumerate(passes) if span.start <= event.time_range.start <= span.end), None)
        if event.name in STAGES + REGION_PARTS:
            spent[event.name, "forward", index] += list(costs(event, cuda))
            spent[event.name, "host", index].append(("host", event.cpu_time_total))
        elif event.name.startswith("autograd::engine::evaluate_function"):
            for name in owners.get(event.sequence_nr) or [OUTSIDE]:
                spent[name, "backward", index] += list(costs(event, cuda))
    rows = []
    for name in (*STAGES, *REGION_PARTS, OUTSIDE):
        row = {"stage": name, "part_of": "region generation" if name in REGION_PARTS else None}
        host = [sum(us for _, us in spent.get((name, "host", i), [])) for i in range(len(passes))]
        row["forward_host_ms"] = round(median(host) / 1e3, 3)  # CUDA: launching, not waiting
        for direction in ("forward", "backward"):
            per_pass = [spent.get((name, direction, i), []) for i in range(len(passes))]
            row[f"{direction}_ms"] = round(median([sum(us for _, us in items) for items in per_pass]) / 1e3, 3)
            row[f"{direction}_{'kernels' if cuda else 'ops'}"] = median([len(items) for items in per_pass])
            row[f"{direction}_top"] = top_names([item for items in per_pass for item in items], len(passes), 3)
        rows.append(row)
    everything = [item for (name, kind, _), items in spent.items() if name not in REGION_PARTS and kind != "host"
                  for item in items]
    return rows, top_names(everything, len(passes), top)


def top_names(items, repeats: int, k: int) -> list[dict]:
    """The ``k`` names with the most time among ``(name, microseconds)`` items, ms per pass."""
    total = defaultdict(float)
    for name, us in items:
        total[name] += us
    best = sorted(total.items(), key=lambda kv: -kv[1])[:k]
    return [{"name": name[:100], "ms": round(us / repeats / 1e3, 3)} for name, us in best]


def profile_mode(block, x, mode: str, autocast, repeats: int, top: int) -> dict:
    cuda = x.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    for _ in range(2):  # warm-up: allocator, cuDNN's choice of algorithms
        one_pass(block, x, mode, autocast)
    synchronise(x.device)
    with profile(activities=activities) as prof:
        for _ in range(repeats):
            with record_function("pass"):
                one_pass(block, x, mode, autocast)
                synchronise(x.device)
    rows, top_kernels = stage_table(prof.events(), cuda, top)
    return {"stages": rows, "top_kernels": top_kernels}


def measure(device: torch.device, batch: int, frames: int, dtype: str, repeats: int, top: int) -> dict:
    block = build_block(device)
    config = tsm_stage_config("res4")
    torch.manual_seed(1)
    x = torch.randn(batch, frames, config["in_channels"], config["height"], config["width"], device=device)
    if dtype == "float32":
        autocast = contextlib.nullcontext
    else:
        autocast = lambda: torch.autocast(device.type, dtype=getattr(torch, dtype))  # noqa: E731
    check_stages(block, x, autocast)
    for mode in ("forward", "train"):  # warm-up before the clocks
        one_pass(block, x, mode, autocast)
    wall = wall_times(block, x, autocast, repeats)
    result = {"forward": profile_mode(block, x, "forward", autocast, repeats, top),
              "forward+backward": profile_mode(block, x, "train", autocast, repeats, top)}
    for mode in result:
        result[mode]["wall_ms"] = round(wall.pop(mode), 3)
    for row in result["forward"]["stages"]:
        row["wall_ms"] = round(wall.get(row["stage"], 0.0), 3)
    return result


def print_table(result: dict, cuda: bool) -> None:
    unit, what = ("kernels", "kernel time") if cuda else ("ops", "CPU time")
    forward, train = result["forward"]["stages"], result["forward+backward"]["stages"]
    print(f"one block, ms a pass (wall, median): forward {result['forward']['wall_ms']:.2f}, "
          f"forward+backward {result['forward+backward']['wall_ms']:.2f}")
    host = f" {'host ms':>8s}" if cuda else ""
    print(f"{'stage':42s} {'wall ms':>8s}{host} {'fwd ms':>8s} {unit:>7s} {'bwd ms':>8s} {unit:>7s}  top (forward)")
    for fwd, trn in zip(forward, train):
        name = ("  " + fwd["stage"]) if fwd["part_of"] else fwd["stage"]
        wall = f"{fwd['wall_ms']:8.2f}" if fwd["stage"] != OUTSIDE else f"{'':8s}"
        host = f" {fwd['forward_host_ms']:8.2f}" if cuda else ""
        first = fwd["forward_top"][0]["name"][:40] if fwd["forward_top"] else ""
        print(f"{name:42s} {wall}{host} {fwd['forward_ms']:8.2f} {fwd['forward_' + unit]:7d} "
              f"{trn['backward_ms']:8.2f} {trn['backward_' + unit]:7d}  {first}")
    print(f"wall: the device synchronised at each stage's ends; {'host: launching; ' if cuda else ''}fwd / bwd: the "
          f"profiler's {what}\n(forward of the forward pass, backward of the forward+backward pass); the region "
          "parts are inside region generation")
    for mode in ("forward", "forward+backward"):
        print(f"top {what} of the {mode} pass, ms a pass:")
        for item in result[mode]["top_kernels"]:
            print(f"  {item['ms']:8.3f}  {item['name']}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--batch", type=int, help="videos per pass (CPU 1, CUDA 8)")
    p.add_argument("--frames", type=int, help="frames per video (CPU 8, CUDA 16; the paper 16)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="CPU float32, CUDA bfloat16 (autocast)")
    p.add_argument("--repeats", type=int, default=5, help="profiled passes (and timed passes) per mode")
    p.add_argument("--top", type=int, default=15, help="how many kernels of the whole pass to list")
    p.add_argument("--out", type=Path, help="write the tables and their provenance here (JSON)")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.exit(2, "block_profile: no CUDA device here\n")
    settings = DEFAULTS[args.device] | {k: v for k, v in (("batch", args.batch), ("frames", args.frames),
                                                          ("dtype", args.dtype)) if v is not None}
    device = torch.device(args.device)
    start = time.time()
    result = measure(device, settings["batch"], settings["frames"], settings["dtype"], args.repeats, args.top)
    print_table(result, device.type == "cuda")
    if args.out:
        record = {
            "command": "python benchmarks/block_profile.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "commit": git_commit(),
            "device": describe_device() if device.type == "cuda" else cpu_name(),
            "cpu": cpu_name(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "setting": {"stage": "res4", "block": tsm_stage_config("res4"), **settings, "repeats": args.repeats},
            "stages_equal_block_forward": True,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "wall_seconds": round(time.time() - start, 1),
            **result,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
