"""Forward + backward time of DyRegBlock next to a plain 3x3 convolution on the same input.

Sizes: the MultiSyncMNIST block (B=32, T=10, C=128, 16x16, node dim 32, D=32) and the
TSM res4 block (B=2, T=16, C=256, 14x14, D=128). Runs on the CPU and, when present,
on CUDA. Each row also splits the block's forward pass into its stages (region
generator, graph, the 1x1 projections and norms, and the rest: kernels, pooling,
positional embedding and re-mapping), so a regression shows where it is. It prints its
figures (and writes them as JSON with ``--out``); it is a benchmark, not a test.

    python benchmarks/block.py [--repeats 5] [--device cpu cuda] [--out results/benchmarks/block.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dyreg_edu.dyreg import DyRegBlock  # noqa: E402
from dyreg_edu.notebook import cpu_name, describe_device, git_commit  # noqa: E402

SETTINGS = {
    "multisync (B=32, T=10, C=128, 16x16)": dict(batch=32, frames=10, channels=128, size=16, node_dim=32, region_dim=32),
    "tsm res4 (B=2, T=16, C=256, 14x14)": dict(batch=2, frames=16, channels=256, size=14, node_dim=256, region_dim=128),
}


class Conv3x3(nn.Module):
    """The reference: one 3x3 convolution C -> C applied to every frame."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x):
        y = self.conv(rearrange(x, "b t c h w -> (b t) c h w"))
        return rearrange(y, "(b t) c h w -> b t c h w", b=x.shape[0]), {}


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_forward_backward(module: nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Median seconds of one forward + backward pass (after one warm-up pass)."""
    times = []
    for i in range(repeats + 1):
        module.zero_grad(set_to_none=True)
        synchronise(x.device)
        start = time.perf_counter()
        y, _ = module(x)
        y.square().mean().backward()
        synchronise(x.device)
        if i:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


#: The block's stages that are modules, timed by forward hooks; the rest is what is left.
STAGES = {
    "region generator (Eq. 1-4, 11-14)": ("region_generator", "semantic"),
    "graph (Eq. 8-9)": ("graph",),
    "projections and norms": ("project_in", "project_norm", "project_out", "residual_norm"),
}


def stage_times(block: DyRegBlock, x: torch.Tensor, repeats: int) -> dict[str, float]:
    """Median forward milliseconds of each stage in :data:`STAGES`, and of the rest."""
    spent: dict[str, float] = {}
    handles = []
    for stage, names in STAGES.items():
        for name in names:
            module = getattr(block, name, None)
            if module is None:
                continue

            def before(_module, _inputs, stage=stage):
                synchronise(x.device)
                spent[stage + " start"] = time.perf_counter()

            def after(_module, _inputs, _output, stage=stage):
                synchronise(x.device)
                spent[stage] = spent.get(stage, 0.0) + time.perf_counter() - spent.pop(stage + " start")

            handles += [module.register_forward_pre_hook(before), module.register_forward_hook(after)]
    samples = []
    try:
        with torch.no_grad():
            for i in range(repeats + 1):
                spent.clear()
                synchronise(x.device)
                start = time.perf_counter()
                block(x)
                synchronise(x.device)
                total = time.perf_counter() - start
                if i:
                    rest = total - sum(spent.values())
                    samples.append({**spent, "kernels, pooling, positions, re-mapping": rest, "total forward": total})
    finally:
        for handle in handles:
            handle.remove()
    return {key: round(1e3 * sorted(s[key] for s in samples)[len(samples) // 2], 2) for key in samples[0]}


def measure(name: str, setting: dict, device: torch.device, repeats: int) -> dict:
    torch.manual_seed(0)
    size = setting["size"]
    x = torch.randn(setting["batch"], setting["frames"], setting["channels"], size, size, device=device, requires_grad=True)
    block = DyRegBlock(setting["channels"], size, size, node_dim=setting["node_dim"], region_dim=setting["region_dim"]).to(device)
    with torch.no_grad():  # away from the identity start, so every part does real work
        block.residual_norm.scale.fill_(1.0)
        block.region_generator.gamma.fill_(0.3)
    conv = Conv3x3(setting["channels"]).to(device)
    stages = stage_times(block, x.detach(), repeats)
    block_s = time_forward_backward(block, x, repeats)
    conv_s = time_forward_backward(conv, x, repeats)
    return {
        "setting": name,
        "device": str(device),
        "dyreg_ms": round(block_s * 1e3, 2),
        "conv3x3_ms": round(conv_s * 1e3, 2),
        "ratio": round(block_s / conv_s, 2),
        "forward_stages_ms": stages,
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", nargs="+", default=["cpu", "cuda"], help="devices to try (cuda is skipped when absent)")
    parser.add_argument("--out", type=Path, help="write the figures and their provenance here (JSON)")
    args = parser.parse_args(argv)
    started = time.time()
    rows = []
    for device_name in args.device:
        if device_name == "cuda" and not torch.cuda.is_available():
            print("cuda: not available, skipped")
            continue
        for name, setting in SETTINGS.items():
            row = measure(name, setting, torch.device(device_name), args.repeats)
            rows.append(row)
            print(f"{row['device']:5s} {name:38s} DyReg {row['dyreg_ms']:9.2f} ms   3x3 conv {row['conv3x3_ms']:8.2f} ms   ratio {row['ratio']:6.2f}")
            for stage, ms in row["forward_stages_ms"].items():
                print(f"        forward: {stage:42s} {ms:9.2f} ms")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "command": "python " + " ".join([sys.argv[0], *(argv or sys.argv[1:])]),
            "commit": git_commit(),
            "device": describe_device(),
            "cpu": cpu_name(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "wall_seconds": round(time.time() - started, 1),
            "rows": rows,
        }
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
