"""What a MultiSyncMNIST run costs on your GPU, and what it should reach: for a
:class:`~dyreg_edu.train.TrainConfig`,

- :func:`epoch_time`: the seconds an epoch takes, from the rates that the repository's runs measured
  (``results/``: a result file's training videos over its training seconds, validation included). On the GPU
  that measured it, the rate is a measurement; on another GPU it is **an estimate**, the measured rate scaled
  by the two GPUs' dense fp16/bf16 tensor FLOP rates (:data:`GPU_TFLOPS`);
- :func:`expected_accuracy`: the validation accuracy of the repository's finished runs of the same setting,
  or a plain statement that there is none yet.

Nothing here trains or times anything; both read the committed result files.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .runs import REPO_ROOT, describe_device
from .train import TrainConfig

RESULTS_DIR = REPO_ROOT / "results"

#: Dense (no sparsity) fp16/bf16 tensor-core TFLOP/s from the vendor's datasheets, for scaling a measured
#: rate to another GPU: ``(words in torch.cuda.get_device_name(), TFLOP/s, bf16)``, the first match wins.
#: NVIDIA datasheets: H100 and H200 SXM, BF16/FP16 Tensor Core 1,979 TFLOPS *with sparsity* -> 989;
#: H100 PCIe 1,513 with sparsity -> 756; A100 (SXM and PCIe) BF16 Tensor Core 312; L4 FP16/BF16 Tensor Core
#: 242 with sparsity -> 121; V100 SXM2 Tensor Performance 125 (PCIe 112); T4 Mixed Precision (FP16/FP32) 65.
#: V100 and T4 have no bf16 (``--amp auto`` trains them in fp16 with a gradient scaler).
GPU_TFLOPS = [
    (("H100", "PCIe"), 756.0, True),
    (("H100",), 989.0, True),
    (("H200",), 989.0, True),
    (("A100",), 312.0, True),
    (("L4",), 121.0, True),
    (("V100", "PCIe"), 112.0, False),
    (("V100",), 125.0, False),
    (("T4",), 65.0, False),
]
#: The fields that make two runs the same setting (the rest: where and how it ran, and its seed).
NOT_THE_SETTING = ("device", "seed", "amp", "compile", "channels_last", "checkpoint_minutes", "log_every")


def gpu_tflops(name: str) -> float | None:
    """The dense fp16/bf16 tensor TFLOP/s of the GPU called ``name`` (:data:`GPU_TFLOPS`), or ``None``."""
    for words, tflops, _ in GPU_TFLOPS:
        if all(word.lower() in name.lower() for word in words):
            return tflops
    return None


def is_gpu(name: str) -> bool:
    return not name.startswith("CPU")


def setting(config: dict) -> dict:
    """A saved config without :data:`NOT_THE_SETTING`: what two runs must share to be the same setting."""
    return {k: v for k, v in config.items() if k not in NOT_THE_SETTING}


def same_rate_setting(config: dict, cfg) -> bool:
    """Whether a saved run's config trains the model and data of ``cfg`` (its speed: scale, task, variant)."""
    return all(config.get(k) == getattr(cfg, k) for k in ("scale", "task", "variant"))


def committed_runs(results_dir=RESULTS_DIR) -> list[dict]:
    """Every result file under ``results_dir`` that records a training run: ``{"path", "config", "device",
    "videos", "seconds", "finished", "val_accuracy"}``. The device is the one that trained it (``trained_on``
    when another machine wrote the file)."""
    results_dir, runs = Path(results_dir), []
    for path in sorted(results_dir.rglob("*.json")):
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not (isinstance(saved, dict) and isinstance(saved.get("config"), dict) and "variant" in saved["config"]):
            continue
        seconds = saved.get("training_seconds") or saved.get("wall_seconds")
        if not seconds or not saved.get("train_videos"):
            continue
        try:  # the trainer's migration reads older configs
            config = TrainConfig.from_dict(saved["config"]).to_dict()
        except (TypeError, ValueError):
            continue
        runs.append({"path": str(path.relative_to(results_dir.parent)),
                     "config": config, "device": saved.get("trained_on") or saved.get("device", "unknown"),
                     "videos": saved["train_videos"], "seconds": float(seconds), "finished": saved.get("finished") is True,
                     "val_accuracy": saved.get("val_accuracy"), "date": saved.get("date")})
    return runs


def measured_rate(cfg, *, gpu: bool = True, results_dir=RESULTS_DIR) -> dict | None:
    """The fastest measured rate of ``cfg``'s setting (scale, task, variant) on a GPU (``gpu``) or a CPU: the run's
    ``{"videos_per_second", "device", "batch_size", "path"}``, or ``None`` when no run measured one."""
    rows = [r for r in committed_runs(results_dir)
            if same_rate_setting(r["config"], cfg) and is_gpu(r["device"]) == gpu and (not gpu or gpu_tflops(r["device"]))]
    if not rows:
        return None
    best = max(rows, key=lambda r: r["videos"] / r["seconds"])
    return {"videos_per_second": best["videos"] / best["seconds"], "device": best["device"].split(" (")[0],
            "batch_size": best["config"]["batch_size"], "path": best["path"]}


def minutes(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds > 3600 else f"{seconds / 60:.0f} min" if seconds > 60 else f"{seconds:.0f} s"


def durations(cfg, rate: float) -> str:
    """``"<epoch> an epoch of N videos; the run's E epochs: <run>"`` at ``rate`` videos/s."""
    epoch = cfg.train_videos / rate
    return (f"{minutes(epoch)} an epoch of {cfg.train_videos:,} videos; the run's {cfg.epochs:g} epochs "
            f"({round(cfg.epochs * cfg.train_videos):,} videos): about {minutes(epoch * cfg.epochs)}")


def epoch_time(cfg, device_name: str | None = None, *, results_dir=RESULTS_DIR) -> dict:
    """The expected seconds per epoch (``cfg.train_videos`` videos) of ``cfg`` on the GPU ``device_name``
    (default: the one torch sees, else the CPU). Returns ``{"device", "kind", "videos_per_second",
    "seconds_per_epoch", "run_seconds", "text"}`` with ``kind``:

    - ``"measured"``: a run of this setting measured the rate on this GPU;
    - ``"estimate"``: measured on another GPU, scaled by the two tensor FLOP rates (:data:`GPU_TFLOPS`);
    - ``"none"``: no GPU run of this setting, or a GPU that the table does not know, or a CPU (the text then
      gives the measured GPU rate and a CPU run's, where there are).
    """
    device = device_name or describe_device()
    base = {"device": device, "kind": "none", "videos_per_second": None, "seconds_per_epoch": None, "run_seconds": None}
    name = f"{cfg.variant} on the {cfg.task} task ({cfg.scale} scale)"
    if not is_gpu(device):
        cpu = measured_rate(cfg, gpu=False, results_dir=results_dir)
        where = (f" A run on {cpu['device']} trained {cpu['videos_per_second']:.0f} videos/s: "
                 f"{durations(cfg, cpu['videos_per_second'])}." if cpu else "")
        gpu = measured_rate(cfg, results_dir=results_dir)
        there = (f" Measured on {gpu['device']}: {gpu['videos_per_second']:.0f} videos/s, "
                 f"{durations(cfg, gpu['videos_per_second'])}." if gpu else "")
        return {**base, "text": f"No GPU here ({device}).{there or ' No GPU run of ' + name + ' has been measured yet.'}{where}"}
    measured = measured_rate(cfg, results_dir=results_dir)
    tflops = gpu_tflops(device)
    if measured is None:
        return {**base, "text": f"No GPU run of {name} has been measured yet, so there is no time to expect on {device}."}
    if tflops is None:
        return {**base, "text": f"{device} is not in the table of GPU FLOP rates: no estimate. Measured on "
                                f"{measured['device']}: {measured['videos_per_second']:.0f} videos/s."}
    same = measured["device"] == device
    rate = measured["videos_per_second"] * (1 if same else tflops / gpu_tflops(measured["device"]))
    seconds = cfg.train_videos / rate
    if same:
        text = (f"Measured on {measured['device']}: {rate:.0f} videos/s (batch {measured['batch_size']}, validation "
                f"included), {durations(cfg, rate)}.")
    else:
        text = (f"An estimate for {device}: {rate:.0f} videos/s, {durations(cfg, rate)}. It is the rate measured on "
                f"{measured['device']} ({measured['videos_per_second']:.0f} videos/s, batch {measured['batch_size']}) "
                f"scaled by the GPUs' tensor FLOP rates ({tflops:g} / {gpu_tflops(measured['device']):g} TFLOP/s); "
                f"memory bandwidth and the data pipeline are not in it, so take it to within a factor of two.")
    return {**base, "kind": "measured" if same else "estimate", "videos_per_second": rate, "seconds_per_epoch": seconds,
            "run_seconds": seconds * cfg.epochs, "text": text}


def expected_accuracy(cfg, *, results_dir=RESULTS_DIR) -> dict:
    """The validation accuracy of the repository's finished runs of ``cfg``'s setting (the same config but for
    :data:`NOT_THE_SETTING`, every seed): ``{"runs": [{"path", "seed", "val_accuracy", "device"}], "text"}``;
    ``runs`` is empty and the text says so when there is none."""
    want = setting(dataclasses.replace(cfg, device="cpu").to_dict())
    runs = [{"path": r["path"], "seed": r["config"]["seed"], "val_accuracy": r["val_accuracy"], "device": r["device"]}
            for r in committed_runs(results_dir)
            if r["finished"] and r["val_accuracy"] is not None and setting(r["config"]) == want]
    name = f"{cfg.variant} on the {cfg.task} task ({cfg.scale} scale)"
    if not runs:
        return {"runs": [], "text": f"No finished run of {name} in this repository yet: there is no accuracy to expect."}
    scores = ", ".join(f"{r['val_accuracy']:.1f}% (seed {r['seed']})" for r in runs)
    return {"runs": runs, "text": f"Our finished runs of {name} reached {scores} on {cfg.val_videos:,} validation videos."}
