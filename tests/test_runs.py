"""The plumbing of a run (dyreg_edu.runs): logs, provenance, checkpoints, settings, the CLI's KEY=VALUE."""

import gzip

import pytest

from dyreg_edu import runs


def test_read_log_gives_a_runs_records_and_nothing_for_a_run_without_a_log(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1, "loss": 2.5}\n\n{"step": 2, "loss": 2.0, "val_accuracy": 30.0}\n')
    assert runs.read_log(log) == [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.0, "val_accuracy": 30.0}]
    assert runs.read_log(tmp_path / "missing.jsonl") == []


def test_git_commit_says_when_the_code_differs_from_the_commit(monkeypatch):
    from types import SimpleNamespace

    def fake_git(changes):
        def run(args, **kwargs):
            out = "abc1234\n" if "rev-parse" in args else changes
            return SimpleNamespace(stdout=out, returncode=0)
        return run

    monkeypatch.delenv("DYREG_COMMIT", raising=False)
    monkeypatch.setattr(runs.subprocess, "run", fake_git(""))
    assert runs.git_commit() == "abc1234"
    monkeypatch.setattr(runs.subprocess, "run", fake_git(" M dyreg_edu/train.py\n"))
    assert runs.git_commit() == "abc1234-dirty"
    monkeypatch.setenv("DYREG_COMMIT", "def5678")  # a GPU machine's copy, named by the queue's command
    assert runs.git_commit() == "def5678"


def test_keyword_values_read_literals_and_words():
    from dyreg_edu.dyreg import DyRegBlock

    assert runs.keyword_values(["anchors=grid", "fixed_size=2", "grid=(3, 3)", "normalize_kernels=False"], DyRegBlock,
                               "--block") == {"anchors": "grid", "fixed_size": 2, "grid": (3, 3), "normalize_kernels": False}
    with pytest.raises(ValueError, match="--block normalize_kernels wants bool or None, got 'false' \\(True or False\\)"):
        runs.keyword_values(["normalize_kernels=false"], DyRegBlock, "--block")
    with pytest.raises(ValueError, match="--block wants KEY=VALUE with KEY one of"):
        runs.keyword_values(["variant=fixed"], DyRegBlock, "--block", exclude=("variant",))


def test_a_gzipped_log_reads_as_the_plain_one(tmp_path):
    text = '{"step": 1, "loss": 2.5}\n{"step": 2, "loss": 2.0}\n'
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "run.jsonl.gz").write_bytes(gzip.compress(text.encode()))
    expected = [{"step": 1, "loss": 2.5}, {"step": 2, "loss": 2.0}]
    assert runs.read_log(tmp_path / "logs" / "run.jsonl") == expected == runs.read_log(tmp_path / "logs" / "run.jsonl.gz")


def test_settings_round_trip_and_refuse_unknown_keys():
    from dyreg_edu.train import TrainConfig, config

    cfg = config("dyreg", "mini", experiments={"box_loss": {"weight": 1.0}})
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg and isinstance(TrainConfig.from_dict(cfg.to_dict()).widths, tuple)
    with pytest.raises(ValueError, match=r"unknown settings \['colour'\]"):
        TrainConfig.from_dict({**cfg.to_dict(), "colour": "red"})


def test_check_resume_names_the_settings_that_differ(tmp_path):
    from dyreg_edu.train import config

    with pytest.raises(ValueError, match=r"another configuration \(lr, seed differ\)"):
        runs.check_resume(config("dyreg", "mini"), config("dyreg", "mini", lr=0.1, seed=3), tmp_path / "c.pt")
    runs.check_resume(config("dyreg", "mini"), config("dyreg", "mini", device="cpu"), tmp_path / "c.pt", device="cuda")


