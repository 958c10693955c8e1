"""Our DyReg block's backward against the authors' module's, on their golden files, in float64.

    python tools/gradient_parity.py --authors-code /tmp/authors

``--authors-code`` is a folder that holds the authors' ``ops/dyreg.py``, ``ops/rstg.py``,
``ops/models_utils.py`` (``bit-ml/DyReg-GNN``, Apache-2.0) and an ``opts.py`` (theirs, or a shim
with the arguments those files read): their code is imported from there at run time and is never
part of this repository. For each golden file present (``dyreg_edu/fixtures`` and
``../shared/fixtures/official``) both modules are built from the file's parameters, in float64 and
eval mode; the loss ``(output * w).sum()`` (``w`` seeded, :mod:`dyreg_edu.official_gradients`)
is differentiated; every parameter's gradient (ours renamed to theirs, as the converter renames the
parameters) and the input's are compared. It writes

- ``results/fidelity/gradients.json``: per golden file, the largest absolute and relative
  difference (relative: to the largest entry of that gradient), with the run's provenance;
- with ``--sketch``, ``dyreg_edu/fixtures/synthetic_block_small_grads.pt``: a random sketch of the
  authors' gradients on the bundled golden file, which ``tests/test_gradients_official.py``
  compares with ours where the authors' code is absent.
"""
from __future__ import annotations

import argparse
import copy
import hashlib
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from dyreg_edu.dyreg import DyRegBlock  # noqa: E402
from dyreg_edu.notebook import bundled_fixture, fixtures_dir  # noqa: E402
from dyreg_edu.official_gradients import (  # noqa: E402
    FLOOR, INPUT, LOSS_SEED, SKETCH_COLUMNS, SKETCH_SEED, loss_weights, our_gradients, sketch)
from dyreg_edu.runs import provenance_fields, write_record  # noqa: E402

FIXTURES = ("synthetic_block_small", "synthetic_block", "synthetic_block_lite", "tsm_layer3_block",
            "tsm_layer4_block", "tsm_layer3_fullres")
OUT = REPO / "results/fidelity/gradients.json"
SKETCH_OUT = REPO / "dyreg_edu/fixtures/synthetic_block_small_grads.pt"
#: The authors' commit the golden files were recorded from, and the one of the files read here.
FIXTURES_COMMIT = "2c47704"
DEFAULT_CODE_COMMIT = "f9686e2d75e25dd89002213889c1e978ceae1788"
#: The files of the authors' code that run (their hashes are recorded; opts.py may be a shim).
AUTHORS_FILES = ("ops/dyreg.py", "ops/rstg.py", "ops/models_utils.py", "opts.py")
#: The Lite generator's fixed sinusoidal position map in the authors' state dict.
POSITIONS = "dynamic_graph.glore.pos_emb_buf"


def import_authors(code: Path):
    """The authors' ``ops.dyreg`` and ``ops.models_utils`` from ``code``. Their modules parse the
    command line when imported (their ``opts.py``); the GRU is chosen there, so it is set here."""
    if not (code / "ops" / "dyreg.py").is_file():
        raise SystemExit(f"{code}/ops/dyreg.py not found: --authors-code must hold the authors' ops/ and opts.py")
    argv = sys.argv
    sys.argv = [argv[0], "--rnn_type", "GRU", "--init_regions", "center"]
    sys.path.insert(0, str(code))
    try:
        from ops import dyreg, models_utils  # noqa: PLC0415  (their code, found only at run time)
    finally:
        sys.argv = argv
    return dyreg, models_utils


def authors_block(dyreg, models_utils, config: dict):
    """Their ``DynamicGraphWrapper`` with the golden file's settings (the paper's: GRU, dot attention,
    one send layer, summed messages, additive residual)."""
    params = dyreg.dyregParams()  # their defaults: rstg_combine 'plus', 'dyreg' regions, send 1, update 0
    params.full_res = bool(config.get("full_res", False))
    params.offset_generator = config["offset_generator"]
    params.offset_lstm_dim = int(config["region_dim"])
    params.init_regions = config.get("anchors", "center")
    models_utils.args.offset_lstm_dim = int(config["region_dim"])  # their GloRe reads the global args
    assert config.get("num_nodes", 9) == 9 and config.get("graph_iterations", 3) == 3  # fixed in their code
    return dyreg.DynamicGraphWrapper(
        params, H=int(config["height"]), W=int(config["width"]),
        iH=config.get("train_height"), iW=config.get("train_width"),
        node_dim=int(config["node_dim"]), in_channels=int(config["in_channels"]),
        project_i3d=bool(config["projection"]))


def their_gradients(module, x: torch.Tensor, seed: int):
    """``(loss, output, {name: gradient} + input's)`` of their module, as :func:`our_gradients`."""
    module = module.double().eval()
    x = x.detach().to(torch.float64).requires_grad_(True)
    output = module(x).view(x.shape)  # theirs returns [B*T, C, H, W]
    loss = (output * loss_weights(output.shape, seed)).sum()
    params = dict(module.named_parameters())
    grads = torch.autograd.grad(loss, [x, *params.values()], allow_unused=True)
    named = {name: g for name, g in zip(params, grads[1:]) if g is not None}
    unused = sorted(name for name, g in zip(params, grads[1:]) if g is None)
    return loss.item(), output.detach(), {**named, INPUT: grads[0]}, unused


def load_fixture(name: str):
    if f"{name}.pt" == bundled_fixture().name:
        return torch.load(bundled_fixture(), weights_only=True)
    folder = fixtures_dir()
    path = None if folder is None else folder / f"{name}.pt"
    return torch.load(path, weights_only=True) if path is not None and path.is_file() else None


def max_rel(ours: dict, theirs: dict) -> float:
    """The largest relative difference over the gradients (as in :func:`compare`)."""
    largest = max(g.abs().max().item() for g in theirs.values())
    return max((ours[k] - g).abs().max().item() / max(g.abs().max().item(), FLOOR * largest) for k, g in theirs.items())


def compare(name: str, fixture: dict, dyreg, models_utils, seed: int) -> tuple[dict, dict]:
    config = fixture["config"]
    theirs_module = authors_block(dyreg, models_utils, config)
    theirs_module.load_state_dict(fixture["state_dict"], strict=True)
    with torch.no_grad():  # first: this is the recorded module (float32, as the golden file)
        recorded = (theirs_module.eval()(fixture["input"]).view(fixture["output"].shape) - fixture["output"]).abs().max().item()
    loss_t, out_t, theirs, unused = their_gradients(theirs_module, fixture["input"], seed)
    block = DyRegBlock.from_official(fixture["state_dict"], config)
    own_positions = None
    if POSITIONS in fixture["state_dict"]:
        # Lite: the sinusoid is a fixed buffer that both modules compute in float32, each rounding its
        # own way (6e-8 apart); compare with theirs, and report ours apart
        _, _, own = our_gradients(fixture["state_dict"], config, fixture["input"], seed, block=copy.deepcopy(block))
        own_positions = max_rel(own, theirs)
        sinusoid_gap = (block.region_generator.g.positions - fixture["state_dict"][POSITIONS]).abs().max().item()
        block.region_generator.g.positions.copy_(fixture["state_dict"][POSITIONS])
    loss_o, out_o, ours = our_gradients(fixture["state_dict"], config, fixture["input"], seed, block=block)
    if set(ours) != set(theirs):
        raise KeyError(f"{name}: gradients of different parameters: only ours {sorted(set(ours) - set(theirs))}, "
                       f"only theirs {sorted(set(theirs) - set(ours))}")
    largest = max(g.abs().max().item() for g in theirs.values())
    per = {}
    for key, g in theirs.items():
        diff = (ours[key] - g).abs().max().item()
        scale = g.abs().max().item()
        per[key] = {"abs": diff, "rel": diff / max(scale, FLOOR * largest), "max": scale}
    params = {k: v for k, v in per.items() if k != INPUT}
    worst = max(params, key=lambda k: params[k]["rel"])
    row = {
        "config": config,
        "authors_float32_output_vs_golden": recorded,
        "golden_output_largest": fixture["output"].abs().max().item(),
        "float64_output_max_abs_difference": (out_o - out_t).abs().max().item(),
        "loss": {"ours": loss_o, "theirs": loss_t},
        "parameter_tensors": len(params),
        "parameters": sum(g.numel() for k, g in theirs.items() if k != INPUT),
        "authors_parameters_without_gradient": unused,
        "largest_gradient_entry": largest,
        "vanishing_gradients": {k: v["max"] for k, v in per.items() if v["max"] < 1e-10 * largest},
        "max_abs_difference": max(v["abs"] for v in per.values()),
        "max_rel_difference": max(v["rel"] for v in per.values()),
        "worst_parameter": {"name": worst, **params[worst]},
        "max_rel_difference_without_vanishing": max(v["rel"] for k, v in per.items() if v["max"] >= 1e-10 * largest),
        "input": per[INPUT],
    }
    if own_positions is not None:
        row["with_our_own_sinusoid"] = {
            "max_rel_difference": own_positions,
            "note": ("our Lite block's fixed sinusoidal position map, computed in float32 by our code, is up to "
                     f"{sinusoid_gap:.1e} "
                     "from theirs; the rows above give ours their map (a constant, not a parameter)")}
    return row, theirs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--authors-code", type=Path, required=True,
                   help="folder with the authors' ops/dyreg.py, ops/rstg.py, ops/models_utils.py, opts.py")
    p.add_argument("--authors-commit", default=DEFAULT_CODE_COMMIT,
                   help="the commit of bit-ml/DyReg-GNN those files were read from (recorded)")
    p.add_argument("--fixtures", nargs="+", default=list(FIXTURES))
    p.add_argument("--seed", type=int, default=LOSS_SEED)
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--sketch", action="store_true", help=f"also write {SKETCH_OUT.relative_to(REPO)}")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    tic = time.time()
    dyreg, models_utils = import_authors(args.authors_code.resolve())
    rows, skipped = {}, []
    for name in args.fixtures:
        fixture = load_fixture(name)
        if fixture is None:
            skipped.append(name)
            print(f"{name}: golden file not found, skipped")
            continue
        t0 = time.time()
        row, theirs = compare(name, fixture, dyreg, models_utils, args.seed)
        row["seconds"] = round(time.time() - t0, 1)
        rows[name] = row
        print(f"{name}: max abs {row['max_abs_difference']:.2e}  max rel {row['max_rel_difference']:.2e}  "
              f"input rel {row['input']['rel']:.2e}  ({row['parameter_tensors']} tensors, "
              f"authors' float32 output vs golden {row['authors_float32_output_vs_golden']:.1e}, {row['seconds']} s)")
        if args.sketch and f"{name}.pt" == bundled_fixture().name:
            torch.save({"fixture": bundled_fixture().name, "loss_seed": args.seed, "sketch_seed": SKETCH_SEED,
                        "columns": SKETCH_COLUMNS, "loss": row["loss"]["theirs"],
                        "sketches": sketch(theirs, SKETCH_SEED, SKETCH_COLUMNS),
                        "norms": {k: g.norm().item() for k, g in theirs.items()},
                        "authors_commit": args.authors_commit, "torch": str(torch.__version__)}, SKETCH_OUT)
            print(f"wrote {SKETCH_OUT.relative_to(REPO)} ({SKETCH_OUT.stat().st_size} bytes)")
    command = "python tools/gradient_parity.py " + " ".join(sys.argv[1:] if argv is None else argv)
    record = {
        **provenance_fields(command, time.time() - tic, "cpu"),
        "torch": torch.__version__,
        "dtype": "float64",
        "authors_code_commit": args.authors_commit,
        "authors_code_sha256": {f: hashlib.sha256((args.authors_code / f).read_bytes()).hexdigest()
                                for f in AUTHORS_FILES if (args.authors_code / f).is_file()},
        "golden_files_commit": FIXTURES_COMMIT,
        "loss": f"(output * w).sum(), w standard normal from torch.Generator seed {args.seed}",
        "difference": ("largest |ours - theirs| over each gradient; relative: divided by the largest |theirs| of that "
                       f"gradient, or by {FLOOR:g} x the largest entry of all gradients when that is larger (a gradient "
                       "that is zero in exact arithmetic, listed under vanishing_gradients, holds only rounding noise)"),
        "fixtures": rows,
        "skipped": skipped,
        "max_abs_difference": max(r["max_abs_difference"] for r in rows.values()),
        "max_rel_difference": max(r["max_rel_difference"] for r in rows.values()),
    }
    write_record(args.out, record)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
