"""The ablation runner and its tables (dyreg_edu.ablations)."""

import dataclasses
import json

import pytest

from dyreg_edu import ablations, train
from dyreg_edu.train import config


def test_ablation_runs_and_tables(tmp_path, monkeypatch):
    assert [r.name for r in ablations.table_runs("5", "paper")] == ["resnet18", "fixed", "static", "constant_time", "pos_only",
                                                                   "dyreg", "oracle"]
    assert [r.name for r in ablations.table_runs("5")][:4] == ["resnet18", "resnet18_continued", "resnet18_tsm", "fixed"]
    control = ablations.run_of("resnet18_continued").config("mini")
    assert (control.variant, control.head_init, control.epochs) == ("resnet18", "resnet18", config("dyreg", "mini").epochs)
    assert not control.temporal_shift
    motion = ablations.run_of("resnet18_tsm").config("mini")
    assert motion.temporal_shift and dataclasses.replace(motion, temporal_shift=False) == control
    assert ablations.run_of("dyreg_nodes16").overrides == {"num_nodes": 16}
    assert ablations.run_of("pos_only_size1").overrides == {"block": {"fixed_size": 1.0}}
    assert ablations.run_of("pos_only_size2.67").overrides["block"]["fixed_size"] == pytest.approx(16 / 6)
    with pytest.raises(ValueError, match="table must be one of"):
        ablations.table_runs("8")
    monkeypatch.setattr(ablations, "results_dir", lambda scale, **design: tmp_path)
    (tmp_path / "dyreg.json").write_text(json.dumps({"val_accuracy": 61.5, "train_videos": 100, "wall_seconds": 60.0,
                                                      "object_centric": {"score": 0.1}}))
    text = ablations.write_table("9", "mini").read_text()
    assert "| DyReg-GNN | 95.09 | 61.50 | – | 0.100 | 100 | 1.0 |" in text
    assert "| DyReg-GNN without GRU | 91.91 | – |" in text


def test_a_design_run_records_a_command_that_names_the_design(tmp_path, monkeypatch):
    seen = {}

    def fake_train(cfg, out, **kwargs):
        seen.update(cfg=cfg, out=out, command=kwargs["command"])
        return {"finished": False}

    monkeypatch.setattr(ablations, "train", fake_train)
    monkeypatch.setattr(ablations, "results_dir", lambda scale, **design: tmp_path / "results")  # no finished run there
    common = {"device": "cpu", "digit_size": 14, "max_step": 5.0}
    ablations.run_one(ablations.run_of("oracle"), "mini", tmp_path / "runs", deadline=float("inf"), common=common,
                      progress=False)
    assert seen["command"].startswith("python -m dyreg_edu.train --variant oracle --scale mini --digit-size 14 --max-step 5 --out ")
    assert (seen["cfg"].digit_size, seen["cfg"].max_step, seen["cfg"].num_nodes) == (14, 5.0, 3)
    argv = seen["command"].split(" (via")[0].split()[3:]  # the command trains the same configuration
    assert train.parser().parse_args(argv).digit_size == 14


def test_show_table_displays_a_table_from_the_result_files_or_says_there_is_none(tmp_path, monkeypatch, capsys):
    from dyreg_edu import notebook

    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj.data))
    monkeypatch.setattr(ablations, "results_dir", lambda scale, **design: tmp_path / "none")
    notebook.show_table("9")
    assert "no results for table 9 at the mini scale yet" in capsys.readouterr().out and not shown
    monkeypatch.setattr(ablations, "results_dir", lambda scale, **design: tmp_path)
    (tmp_path / "dyreg.json").write_text(json.dumps({"val_accuracy": 61.5, "train_videos": 100, "wall_seconds": 60.0}))
    notebook.show_table("9")
    assert shown[0].startswith("**Table 9") and "| DyReg-GNN | 95.09 | 61.50 |" in shown[0]


def test_table_7_sits_beside_the_papers_column_for_its_own_digits(tmp_path, monkeypatch):
    """The mini scale has three digits, so its Table 7 is set beside the paper's D = 3 column,
    the paper scale (five digits) beside the D = 5 one."""
    monkeypatch.setattr(ablations, "results_dir", lambda scale, **design: tmp_path / scale)
    for scale, digits, nodes5 in (("mini", 3, 98.2), ("paper", 5, 89.6)):
        path = ablations.write_table("7", scale)
        rows = json.loads(path.with_suffix(".json").read_text())["rows"]
        assert [row["paper"] for row in rows if row["name"] == "dyreg_nodes5"] == [nodes5]
        assert f"the paper's column for {digits} digits" in path.read_text().splitlines()[0]


def test_a_tables_standard_error_follows_its_validation_size():
    assert round(ablations.standard_error(2_000), 2) == 1.12
    assert ablations.standard_error(10_000) == pytest.approx(0.5)




def test_a_kept_log_is_thinned_gzipped_and_the_same_bytes_each_time(tmp_path):
    from dyreg_edu import runs

    source = tmp_path / "log.jsonl"
    source.write_text("".join(json.dumps({"step": s, "loss": 1.0 / s, **({"val_accuracy": 50.0} if s == 7 else {})}) + "\n"
                              for s in range(1, 31)))
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "run.jsonl").write_text("stale\n")  # an older plain copy goes
    kept = ablations.keep_log(source, tmp_path / "logs" / "run.jsonl")
    assert kept == tmp_path / "logs" / "run.jsonl.gz" and not (tmp_path / "logs" / "run.jsonl").exists()
    assert [r["step"] for r in runs.read_log(tmp_path / "logs" / "run.jsonl")] == [7, 10, 20, 30]
    first = kept.read_bytes()
    assert ablations.keep_log(source, kept).read_bytes() == first  # no time stamp in the gzip header
    assert ablations.kept_log_path("mini", "dyreg") == ablations.results_dir("mini") / "logs" / "dyreg.jsonl.gz"
