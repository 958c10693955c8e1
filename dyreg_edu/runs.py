"""The plumbing of a training run, shared by both trainers (:mod:`dyreg_edu.train`, MultiSyncMNIST,
and :mod:`dyreg_edu.train_ssv2`, Something-Something), so that each trainer reads as its method.

A run directory holds ``log.jsonl`` (one JSON record a step), ``checkpoint.pt`` (everything needed
to resume) and ``result.json`` (the numbers, with the command, commit, device, date and wall time
that made them). This module writes and reads them:

- **provenance**: :func:`git_commit`, :func:`describe_device`, :func:`provenance_fields`;
- **checkpoints**: :func:`save_checkpoint` (written whole or not at all), :func:`load_checkpoint`
  (one clear error for a file that is not one), :func:`export_checkpoint` (a small fp16 copy);
- **the log**: :class:`StepLog` (records written in groups), :func:`read_log` (``.jsonl`` or
  ``.jsonl.gz``), :func:`truncate_log`, :func:`write_gzip` (a log's committed copy);
- **random state**: :func:`rng_state`, :func:`set_rng_state`;
- **processes** (``torchrun``): :class:`Dist`, :func:`init_distributed`, :func:`process_device`,
  :func:`all_sum`;
- **settings**: :class:`Settings` (a dataclass saved as a dict), :func:`check_settings`;
- the CLI: :func:`keyword_values` (``KEY=VALUE`` arguments for a class's keywords);
- **mixed precision**: :func:`resolve_amp` (``auto``, ``bf16``, ``fp16``, ``off``), :func:`autocast`,
  :class:`Precision` (with fp16's gradient scaler);
- :func:`progress_bar`, :func:`rounded`.

Nothing here knows a model or a data set.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import datetime as dt
import gzip
import inspect
import json
import os
import platform
import subprocess
import time
import types
import typing
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from .files import load_torch_file

REPO_ROOT = Path(__file__).resolve().parent.parent
#: The folders whose changes make a commit ``-dirty`` in :func:`git_commit`.
CODE_DIRS = ("dyreg_edu", "data_gen", "tools")
#: What a training checkpoint of this library holds (the error for another file says so).
CHECKPOINT_KEYS = ("model", "config")


# --------------------------------------------------------------------------- provenance


def git_commit() -> str:
    """The repository's current commit, or ``"unknown"`` outside a git checkout; with ``-dirty``
    appended when the code (``dyreg_edu/``, ``data_gen/``, ``tools/``) differs from that commit,
    so that a result never names a commit whose code is not the code that ran.

    ``DYREG_COMMIT`` names it where the code travels without its ``.git`` (a GPU machine
    that receives a copy of the working tree; the GPU queue's command sets it).
    """
    if os.environ.get("DYREG_COMMIT"):
        return os.environ["DYREG_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_DIRS],
                                 cwd=REPO_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = out.stdout.strip()
    if not commit:
        return "unknown"
    return commit + "-dirty" if changed.returncode == 0 and changed.stdout.strip() else commit


def cpu_name() -> str:
    """The CPU model and core count, in words."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"CPU: {line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"CPU: {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def describe_device(device: str | None = None) -> str:
    """The GPU's name for a CUDA ``device`` (default: whichever torch sees), else the CPU's, in words."""
    cuda = torch.cuda.is_available() if device is None else str(device).startswith("cuda")
    return torch.cuda.get_device_name(0) if cuda else cpu_name()


def provenance_fields(command: str, wall_seconds: float, device: str) -> dict:
    """What a result file records of the run that made it: command, commit, device, date, wall time."""
    return {"command": command, "commit": git_commit(), "device": describe_device(device),
            "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "wall_seconds": round(wall_seconds, 1)}


# --------------------------------------------------------------------------- random state


def rng_state(device: str) -> dict:
    """torch's random state (and the GPU's, on CUDA), for a checkpoint."""
    state = {"torch": torch.get_rng_state()}
    if str(device).startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


# --------------------------------------------------------------------------- checkpoints


def save_checkpoint(path, model, optimizer, cfg, state: dict, **extra) -> None:
    """Model, optimiser, config, progress and random state: everything needed to resume.
    Written to a temporary file first, so a kill never leaves half a file."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "config": cfg.to_dict(),
                "state": state, "rng": rng_state(cfg.device), **extra}, tmp)
    tmp.replace(path)


def load_checkpoint(path, *, keys: tuple[str, ...] = CHECKPOINT_KEYS,
                    expected: str = "a dyreg_edu checkpoint (a dict with 'model' and 'config', written by "
                                    "dyreg_edu.train or export_checkpoint)") -> dict:
    """A checkpoint on the CPU (``weights_only``). A missing file is a ``FileNotFoundError``; a file that
    is not such a checkpoint (text, random bytes, cut short, or a dict without ``keys``) one ``ValueError``
    that names it and says what was expected."""
    return load_torch_file(path, expected=expected, keys=keys)


def load_weights(model: torch.nn.Module, state: dict, source) -> torch.nn.Module:
    """``model`` with the state dict ``state`` (half-precision copies back in fp32), or one ``ValueError``
    naming ``source`` when the weights do not fit it (a checkpoint of another model)."""
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as error:
        raise ValueError(f"{source}: its weights do not fit the model its config describes "
                         f"({str(error).splitlines()[0]})") from None
    return model


def export_checkpoint(run_dir, path, *, half: bool = True) -> Path:
    """A compact copy of a run for the book: the model (fp16 by default), its config and result."""
    run_dir = Path(run_dir)
    ckpt = load_checkpoint(run_dir / "checkpoint.pt")
    model = {k: v.half() if half and v.is_floating_point() else v for k, v in ckpt["model"].items()}
    result = json.loads((run_dir / "result.json").read_text())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model, "config": ckpt["config"], "result": result}, path)
    return path


# --------------------------------------------------------------------------- states kept between sessions


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

    The model goes to fp16 (more mantissa than bf16); the optimiser to bf16, whose range keeps Adam's tiny
    second moments (fp16 would flush them to zero, and the first resumed step would divide by ``eps`` alone).
    """
    return map_tensors(tree, lambda t: t.to(dtype) if t.is_floating_point() and t.numel() > 1 else t)


def float32(tree):
    """Half-precision tensors of a (nested) state back to fp32; the rest unchanged."""
    return map_tensors(tree, lambda t: t.float() if t.dtype in (torch.float16, torch.bfloat16) else t)


def without_sgd_momentum(optimizer: dict) -> dict:
    """An optimiser state dict with SGD's momentum buffers left out (Adam's moments kept).

    A committed state is repository history, and the momentum buffer is as large as the model. With momentum
    0.9 it remembers about the last ten steps' gradients; a resumed SGD rebuilds it from its first gradient on
    (PyTorch starts a missing buffer as that gradient), so leaving it out halves a commit and costs the run a
    few steps' worth of momentum, like the half-precision rounding does.
    """
    state = {k: {n: v for n, v in s.items() if n != "momentum_buffer"} for k, s in optimizer["state"].items()}
    return {**optimizer, "state": {k: s for k, s in state.items() if s}}


def save_state(run: Path, folder: Path) -> list[Path]:
    """A run's checkpoint, made small enough to commit, so that a later session (or GPU window) resumes it:
    ``run/checkpoint.pt`` -> ``folder/model.pt`` (fp16; with the config, step and random state) and
    ``folder/optimizer.pt`` (bf16, without SGD's momentum), and the log as ``folder/log.jsonl.gz``."""
    ckpt = load_checkpoint(Path(run) / "checkpoint.pt")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(compact({k: v for k, v in ckpt.items() if k != "optimizer"}, torch.float16), folder / "model.pt")
    torch.save(compact(without_sgd_momentum(ckpt["optimizer"]), torch.bfloat16), folder / "optimizer.pt")
    write_gzip(folder / "log.jsonl.gz", (Path(run) / "log.jsonl").read_text())  # (and the plain copy of older states removed)
    return [folder / "model.pt", folder / "optimizer.pt", folder / "log.jsonl.gz"]


def restore_state(folder: Path, run: Path) -> bool:
    """``folder``'s saved state back as ``run/checkpoint.pt`` (fp32 again) and its log, when ``run`` has no
    checkpoint of its own; whether it did. A continuation therefore starts from the rounded state: its
    losses are close to, not bit-equal with, an uninterrupted run's (within one session resume is exact)."""
    folder, run = Path(folder), Path(run)
    if not (folder / "model.pt").exists() or (run / "checkpoint.pt").exists():
        return False
    model = torch.load(folder / "model.pt", weights_only=True)
    optimizer = torch.load(folder / "optimizer.pt", weights_only=True)
    run.mkdir(parents=True, exist_ok=True)
    torch.save(float32(model) | {"optimizer": float32(optimizer)}, run / "checkpoint.pt")
    records = read_log(folder / "log.jsonl")
    (run / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    if (folder / "windows.jsonl").exists():
        (run / "windows.jsonl").write_text((folder / "windows.jsonl").read_text())
    return True


# --------------------------------------------------------------------------- the log


def read_log(path) -> list[dict]:
    """A run's JSON-line log, one dict a line: ``log.jsonl``, or its committed copy under ``results/``,
    which may be gzipped (``*.jsonl.gz``; either name finds the other). ``[]`` when there is none yet,
    so that a chapter leaves its curve out, as a table shows "–"."""
    path = Path(path)
    gz = path if path.suffix == ".gz" else path.with_name(path.name + ".gz")
    plain = path.with_suffix("") if path.suffix == ".gz" else path
    if plain.exists():
        text = plain.read_text()
    elif gz.exists():
        text = gzip.decompress(gz.read_bytes()).decode()
    else:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def write_gzip(path, text: str) -> Path:
    """Write ``text`` gzipped to ``path`` (``*.jsonl.gz``: a log committed under ``results/``), with the
    same bytes for the same text (no time stamp, no file name in the header), and remove the plain copy
    beside it (``*.jsonl``), which :func:`read_log` would otherwise read first."""
    path = Path(path)
    if path.suffix != ".gz":
        raise ValueError(f"write_gzip writes a .gz file, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode(), compresslevel=9, mtime=0))
    path.with_suffix("").unlink(missing_ok=True)
    return path


def truncate_log(path, step: int) -> None:
    """Drop log lines past a checkpoint's ``step`` (written after the last save of an interrupted run)."""
    path = Path(path)
    if path.exists():
        lines = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        path.write_text("".join(line + "\n" for line in lines))


def prepare_run_dir(out, resume: bool) -> tuple[Path, Path]:
    """``(checkpoint path, log path)`` of the run directory ``out``, checked against ``resume``: a new run
    refuses to overwrite a checkpoint, a resumed one needs it."""
    out = Path(out)
    ckpt_path, log_path = out / "checkpoint.pt", out / "log.jsonl"
    if not resume and ckpt_path.exists():
        raise ValueError(f"{ckpt_path} exists: pass resume=True (--resume) to continue it, or another out_dir")
    if resume and not ckpt_path.exists():
        raise FileNotFoundError(f"no checkpoint at {ckpt_path} to resume from")
    return ckpt_path, log_path


def restore(out, cfg, model, optimizer, state: dict, *, resume: bool, proc: "Dist", precision: "Precision | None" = None,
            **may_differ) -> dict:
    """Where a run starts: ``state`` (a new run's; its log, if any, removed), or with ``resume`` the checkpoint's,
    with the model, optimiser, gradient scaler (``precision``'s) and random state restored and the log cut to its
    step. The checkpoint must have been made with ``cfg``'s settings (``may_differ``: fields that may change,
    e.g. ``device=cfg.device``)."""
    ckpt_path, log_path = prepare_run_dir(out, resume)
    if resume:
        expected = f"a training checkpoint of this trainer ({type(cfg).__name__}), to resume"
        ckpt = load_checkpoint(ckpt_path, keys=("model", "optimizer", "config", "state", "rng"), expected=expected)
        try:
            saved = type(cfg).from_dict(ckpt["config"])
        except (ValueError, TypeError) as error:
            raise ValueError(f"{ckpt_path}: expected {expected}; found another config ({error})") from None
        check_resume(saved, cfg, ckpt_path, **may_differ)
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if precision is not None:
            precision.load_state_dict(ckpt.get("scaler"))
        state = ckpt["state"]
        set_rng_state(ckpt["rng"])
    if proc.main:
        Path(out).mkdir(parents=True, exist_ok=True)
        if resume:
            truncate_log(log_path, state["step"])
        else:
            log_path.unlink(missing_ok=True)
    return state


def out_of_time(deadline: float, proc: "Dist") -> bool:
    """Whether this call's time is up; under ``torchrun``, for every process if for any."""
    late = time.time() >= deadline
    return all_sum([float(late)], proc)[0] > 0 if proc.world > 1 and deadline < float("inf") else late


def result_provenance(cfg, state: dict, command: str, device) -> dict:
    """The provenance fields of a run's result file, and its config: ``commit`` is the code that trained it
    (``state["commit"]``); where another commit wrote the result file, that one is ``result_commit``."""
    fields = provenance_fields(command, state["seconds"], str(device))
    if state.get("commit") and state["commit"] != fields["commit"]:
        fields["result_commit"], fields["commit"] = fields["commit"], state["commit"]
    return {**fields, "config": cfg.to_dict()}


def python_call(cfg, default, call: str) -> str:
    """The Python call that makes a run of ``cfg``: ``call`` (e.g. ``"train(config('dyreg', 'mini'{}), out_dir)"``)
    with ``{}`` replaced by the fields that differ from ``default``'s."""
    changed = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
               if f.name not in ("variant", "scale", "recipe") and getattr(cfg, f.name) != getattr(default, f.name)}
    return call.format("".join(f", {k}={v!r}" for k, v in changed.items()))


@torch.no_grad()
def compile_model(model: torch.nn.Module) -> torch.nn.Module:
    """``torch.compile(model)``, with the GRUs over time traced as their written-out recurrence
    (:func:`dyreg_edu.layers.gru_steps`): Dynamo refuses an ``nn.GRU`` unless ``allow_rnn`` is set, and the
    model never calls the module's fused kernel while compiling. Sets that switch for this process."""
    torch._dynamo.config.allow_rnn = True
    return torch.compile(model)


def precise_batchnorm(model: torch.nn.Module, forward, batches: int) -> None:
    """Precise BatchNorm: the running statistics of every BatchNorm that trains, recomputed as the exact average
    over ``batches`` fixed batches (``forward(k)`` runs the model on the ``k``-th). The running averages describe
    the last few dozen steps, and where the weights move fast they lag so far that eval-mode accuracy falls to
    chance (3% against 33% on one paper-scale checkpoint). Frozen BatchNorms keep theirs; the model is left in
    eval mode."""
    norms = [m for m in model.modules()
             if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and (m.weight is None or m.weight.requires_grad)]
    model.eval()
    if not norms or batches <= 0:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
        m.train()
    for k in range(batches):
        forward(k)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.eval()


def check_resume(saved, cfg, path, **same) -> None:
    """A run resumes with the settings it started with (``same``: fields that may differ, e.g. the device)."""
    if dataclasses.replace(saved, **same) != dataclasses.replace(cfg, **same):
        changed = [f.name for f in dataclasses.fields(cfg) if f.name not in same
                   and getattr(saved, f.name) != getattr(cfg, f.name)]
        raise ValueError(f"{path} was made with another configuration ({', '.join(changed)} differ); resume with the same settings")


class StepLog:
    """A run's ``log.jsonl``, one JSON record a step. A step's numbers stay on the device until
    :meth:`flush` turns a group of records into JSON with one device sync (and one all-reduce under
    ``torchrun``); :meth:`write` appends them (process 0 only) and moves the progress bar. A step adds the
    sums over its process's videos of the loss and of the correct answers, and scalars of its own
    (``extras``, e.g. ``{"gamma/residual": ...}``, written as ``{"gamma": {"residual": ...}}``)."""

    def __init__(self, path, batch_size: int, proc: "Dist", bar=None):
        self.batch_size, self.proc, self.bar, self.pending = batch_size, proc, bar or _NoBar(()), []
        self.file = open(path, "a") if proc.main else None

    def add(self, step: int, sums: list, lr: float, tic: float, extras: dict | None = None) -> None:
        self.pending.append({"step": step, "sums": sums, "lr": lr, "tic": tic, "extras": extras or {}})

    def __len__(self) -> int:
        return len(self.pending)

    def flush(self) -> list[dict]:
        """The pending records as JSON records: ``step``, ``loss`` and ``accuracy`` over the global batch,
        ``lr``, ``videos_per_second`` (the group's rate) and the extras."""
        if not self.pending:
            return []
        seconds = time.time() - self.pending[0]["tic"]
        values = torch.stack([torch.stack([*r["sums"], *r["extras"].values()]).float() for r in self.pending]).tolist()
        if self.proc.world > 1:  # the sums over every process's videos (the extras are the same everywhere)
            summed = all_sum([v for row in values for v in row[:2]], self.proc)
            values = [summed[2 * i:2 * i + 2] + row[2:] for i, row in enumerate(values)]
        records = []
        for r, row in zip(self.pending, values):
            record = {"step": r["step"], "loss": round(row[0] / self.batch_size, 6),
                      "accuracy": round(100.0 * row[1] / self.batch_size, 2), "lr": r["lr"],
                      "videos_per_second": round(self.batch_size * len(self.pending) / seconds, 1)}
            records.append({**record, **nested({k: round(v, 5) for k, v in zip(r["extras"], row[2:])})})
        self.pending.clear()
        return records

    def write(self, records: list[dict]) -> None:
        if self.file is None or not records:
            return
        self.file.write("".join(json.dumps(record) + "\n" for record in records))
        self.file.flush()
        steps = [r for r in records if "loss" in r]  # a validation before the first step has none
        if steps:
            self.bar.update(len(steps))
            self.bar.set_postfix(loss=f"{steps[-1]['loss']:.3f}", acc=f"{steps[-1]['accuracy']:.0f}",
                                 vps=f"{steps[-1]['videos_per_second']:.0f}", val=steps[-1].get("val_accuracy", ""))

    def close(self) -> None:
        self.write(self.flush())
        self.bar.close()
        if self.file is not None:
            self.file.close()


def nested(flat: dict) -> dict:
    """``{"gamma/residual": 1}`` -> ``{"gamma": {"residual": 1}}``."""
    out: dict = {}
    for key, value in flat.items():
        group, _, name = key.partition("/")
        if name:
            out.setdefault(group, {})[name] = value
        else:
            out[key] = value
    return out


# --------------------------------------------------------------------------- settings


class Settings:
    """A dataclass of a run's settings, saved in every checkpoint and result file as a plain dict
    (tuples as lists). Subclasses may migrate older dicts in :meth:`migrate`."""

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def migrate(cls, d: dict) -> dict:
        """An older saved dict in today's form (default: as it is)."""
        return d

    @classmethod
    def from_dict(cls, d: dict):
        d = cls.migrate(dict(d))
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = set(d) - set(fields)
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}")
        tuples = {name for name, f in fields.items() if isinstance(f.default, tuple)}
        return cls(**{k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in d.items()})


def check_settings(cfg, checks: list[tuple[str, bool, str]]) -> None:
    """Raise a one-line ``ValueError`` for the first ``(name, ok, expected)`` that is not ok; and one
    when ``cfg.device`` is neither the CPU nor a CUDA GPU that torch sees."""
    checks = checks + [("device", cfg.device in ("cpu", "cuda") or cfg.device.startswith("cuda:"), "'cpu' or 'cuda'")]
    for name, ok, expected in checks:
        if not ok:
            raise ValueError(f"{name} must be {expected}, got {getattr(cfg, name)!r}")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {cfg.device!r} asked for, but torch sees no CUDA GPU (use --device cpu)")


def positive_int(value) -> bool:
    """Whether ``value`` is an int (not a bool) of at least 1."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def write_record(path, record: dict) -> Path:
    """A result (with its provenance) as indented JSON at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + "\n")
    return path


def rounded(d: dict) -> dict:
    """Floats rounded to 4 decimals, in nested dicts too (for result files)."""
    return {k: (round(v, 4) if isinstance(v, float) else rounded(v) if isinstance(v, dict) else v) for k, v in d.items()}


# --------------------------------------------------------------------------- mixed precision

#: A run's ``amp`` setting: ``auto`` (bf16 on a CUDA GPU that has it, fp16 with a gradient scaler on one that
#: does not, such as Colab's T4; fp32 on the CPU), or one of them named (``off``: fp32 everywhere).
AMP_MODES = ("auto", "bf16", "fp16", "off")
AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def has_bf16(device="cuda") -> bool:
    """Whether the CUDA GPU ``device`` computes in bf16 in hardware (Ampere and later; a T4 or V100 does not,
    and ``torch.cuda.is_bf16_supported()`` alone also counts emulation)."""
    try:
        return torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # an older torch, without emulation
        return torch.cuda.is_bf16_supported()


def resolve_amp(amp, device: str, bf16: bool | None = None) -> str:
    """The precision that ``amp`` (one of :data:`AMP_MODES`; ``True``/``False`` of older configs read as
    ``auto``/``off``) means on ``device``: ``"bf16"``, ``"fp16"`` or ``"off"``. ``bf16``: whether the GPU
    has bf16 (default: ask torch, :func:`has_bf16`). The CPU trains in fp32 unless ``bf16`` is asked for;
    ``fp16`` there is an error (its gradient scaler is for GPUs), as is ``bf16`` on a GPU without it."""
    amp = {True: "auto", False: "off"}.get(amp, amp) if isinstance(amp, bool) else amp
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {AMP_MODES}, got {amp!r}")
    if not str(device).startswith("cuda"):
        if amp == "fp16":
            raise ValueError("amp 'fp16' is for CUDA GPUs; on the CPU a run is fp32 (amp 'auto' or 'off') or bf16")
        return "bf16" if amp == "bf16" else "off"
    if amp in ("off", "fp16"):
        return amp
    bf16 = has_bf16(device) if bf16 is None else bf16
    if amp == "bf16" and not bf16:
        raise ValueError("amp 'bf16' asked for, but this GPU has no bf16 (a T4 or V100): use 'fp16' or 'auto'")
    return "bf16" if bf16 else "fp16"


def autocast(device: str, amp="auto"):
    """The autocast of ``amp`` on ``device`` (:func:`resolve_amp`): bf16 or fp16; nothing for ``off``."""
    mode = resolve_amp(amp, device)
    if mode == "off":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=AUTOCAST_DTYPES[mode])


class Precision:
    """A training step's precision: autocast, and for fp16 a gradient scaler (``torch.amp.GradScaler``): the
    loss is multiplied by a large factor before the backward pass so that small gradients do not flush to zero
    in fp16, the gradients are divided by it again before clipping, and a step whose gradients overflowed is
    skipped (the factor halves). bf16 has fp32's range and needs no scaler.

    ``with p.autocast(): loss = ...``; ``p.backward(loss)``; ``p.unscale(optimizer)`` (before clipping);
    ``p.step(optimizer)``. ``state_dict``/``load_state_dict``: the scaler's state, for a checkpoint."""

    def __init__(self, mode: str, device_type: str = "cuda"):
        if mode not in ("bf16", "fp16", "off"):
            raise ValueError(f"a Precision is 'bf16', 'fp16' or 'off', got {mode!r} (resolve_amp gives one)")
        self.mode, self.device_type = mode, device_type
        self.scaler = torch.amp.GradScaler(device_type) if mode == "fp16" else None

    def autocast(self):
        if self.mode == "off":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=AUTOCAST_DTYPES[self.mode])

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale(self, optimizer) -> None:
        """The gradients in their true size (before clipping their norm)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    def step(self, optimizer) -> None:
        """The optimiser's step (skipped by the scaler when a gradient is inf or nan), then the scale's update."""
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def state_dict(self) -> dict:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict | None) -> None:
        """The scaler's saved state (none in a bf16 or fp32 checkpoint: the scaler starts afresh)."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)


# --------------------------------------------------------------------------- processes


@dataclass
class Dist:
    """This process in a ``torchrun`` job (``rank 0 of 1`` without one)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> Dist:
    """Join the ``torchrun`` job described by the environment (NCCL on CUDA, gloo on CPU), if any."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if world == 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if str(device).startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def process_device(device: str, proc: Dist) -> torch.device:
    """This process's device: with several processes on CUDA, the GPU of its local rank (made current)."""
    device = torch.device(f"cuda:{proc.local_rank}" if device == "cuda" and proc.world > 1 else device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


def all_sum(values: list[float], proc: Dist) -> list[float]:
    """``values`` summed over the processes (on the current GPU under NCCL, which has no CPU tensors)."""
    if proc.world == 1:
        return values
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


# --------------------------------------------------------------------------- the CLI


def keyword_values(pairs: list[str], target, flag: str, *, exclude=()) -> dict:
    """``["anchors=grid", "fixed_size=2"]`` -> ``{"anchors": "grid", "fixed_size": 2}``: each ``KEY`` a
    keyword of ``target`` (a class or function; not one of ``exclude``), each ``VALUE`` a Python literal
    (or else the word itself) of the type its annotation accepts; a one-line ``ValueError`` otherwise."""
    known = set(inspect.signature(target).parameters) - set(exclude)
    hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    values = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or key not in known:
            raise ValueError(f"{flag} wants KEY=VALUE with KEY one of {sorted(known)}, got {pair!r}")
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
        expected = accepted_types(hints[key]) if key in hints else (object,)
        if not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected):
            names = " or ".join("None" if t is type(None) else t.__name__ for t in expected)
            raise ValueError(f"{flag} {key} wants {names}, got {text!r}" + (" (True or False)" if bool in expected else ""))
        values[key] = value
    return values


def accepted_types(hint) -> tuple[type, ...]:
    """The Python types an annotation accepts: ``float | None`` -> ``(float, NoneType, int)``."""
    kinds = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    kinds = tuple(typing.get_origin(kind) or kind for kind in kinds)  # tuple[int, int] -> tuple
    return kinds + ((int,) if float in kinds else ())


# --------------------------------------------------------------------------- progress


def progress_bar(iterable, enabled: bool, desc: str, **kwargs):
    """A tqdm bar over ``iterable`` when ``enabled``, else the iterable with the bar's methods doing nothing."""
    if not enabled:
        return _NoBar(iterable)
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, dynamic_ncols=True, **kwargs)


class _NoBar:
    def __init__(self, iterable):
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)

    def update(self, n=1):
        pass

    def set_postfix(self, **kwargs):
        pass

    def close(self):
        pass
