"""dyreg_edu.gpu_estimate: the time an epoch takes (measured on the GPU that ran it, scaled by FLOP rate on
another, labelled as an estimate) and the accuracy that finished runs of the same setting reached."""

import json

import pytest

from dyreg_edu import gpu_estimate
from dyreg_edu.train import config


def write_result(folder, name, cfg, *, device, videos, seconds, finished=True, val_accuracy=None, trained_on=None,
                 saved_as=None):
    record = {"variant": cfg.variant, "train_videos": videos, "wall_seconds": seconds, "finished": finished,
              "val_accuracy": val_accuracy, "device": device, "config": {**cfg.to_dict(), **(saved_as or {})}}
    if trained_on:
        record["trained_on"] = trained_on
    path = folder / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


@pytest.fixture
def results(tmp_path):
    paper = config("dyreg", "paper")
    write_result(tmp_path, "paper_h100", paper, device="CPU: AMD EPYC (2 cores)", videos=1_000_000, seconds=1000.0,
                 finished=False, trained_on="NVIDIA H100 80GB HBM3 (two calls)")
    where = config("dyreg", "mini", task="where", padding="circular", full_curve=True)
    write_result(tmp_path, "where/dyreg", where, device="CPU: Intel Xeon (2 cores)", videos=72_000, seconds=1600.0,
                 val_accuracy=96.3)
    write_result(tmp_path, "where/dyreg_seed1", config("dyreg", "mini", task="where", padding="circular",
                                                       full_curve=True, seed=1),
                 device="CPU: Intel Xeon (2 cores)", videos=72_000, seconds=2900.0, val_accuracy=95.95,
                 saved_as={"amp": True})  # an older config
    write_result(tmp_path, "where/fixed", config("fixed", "mini", task="where", padding="circular", full_curve=True),
                 device="CPU: Intel Xeon (2 cores)", videos=72_000, seconds=1200.0, val_accuracy=96.15)
    return tmp_path / "results"


def test_the_gpu_that_measured_a_rate_gets_it_as_a_measurement(results):
    out = gpu_estimate.epoch_time(config("dyreg", "paper"), "NVIDIA H100 80GB HBM3", results_dir=results)
    assert out["kind"] == "measured" and out["videos_per_second"] == pytest.approx(1000.0)
    assert out["seconds_per_epoch"] == pytest.approx(600.0) and out["run_seconds"] == pytest.approx(6000.0)
    assert out["text"].startswith("Measured on NVIDIA H100 80GB HBM3: 1000 videos/s")


@pytest.mark.parametrize("name, tflops", [("Tesla T4", 65.0), ("NVIDIA L4", 121.0), ("NVIDIA A100-SXM4-40GB", 312.0),
                                          ("Tesla V100-SXM2-16GB", 125.0), ("NVIDIA H100 PCIe", 756.0)])
def test_another_gpu_gets_the_rate_scaled_by_flops_and_labelled_an_estimate(results, name, tflops):
    out = gpu_estimate.epoch_time(config("dyreg", "paper"), name, results_dir=results)
    assert out["kind"] == "estimate" and out["videos_per_second"] == pytest.approx(1000.0 * tflops / 989.0)
    assert out["text"].startswith(f"An estimate for {name}") and "tensor FLOP rates" in out["text"]


def test_no_measurement_no_known_gpu_or_a_cpu_is_said_plainly(results):
    where = config("dyreg", "mini", task="where", padding="circular", full_curve=True)
    out = gpu_estimate.epoch_time(where, "Tesla T4", results_dir=results)
    assert out["kind"] == "none" and out["seconds_per_epoch"] is None and "No GPU run of dyreg" in out["text"]
    out = gpu_estimate.epoch_time(config("dyreg", "paper"), "NVIDIA GeForce RTX 4090", results_dir=results)
    assert out["kind"] == "none" and "not in the table" in out["text"]
    out = gpu_estimate.epoch_time(where, "CPU: AMD EPYC (2 cores)", results_dir=results)
    assert out["kind"] == "none" and out["text"].startswith("No GPU here") and "45 videos/s" in out["text"]
    assert "No GPU run of dyreg on the where task" in out["text"]
    out = gpu_estimate.epoch_time(config("dyreg", "paper"), "CPU: AMD EPYC (2 cores)", results_dir=results)
    assert out["kind"] == "none" and "Measured on NVIDIA H100 80GB HBM3: 1000 videos/s, 10 min an epoch" in out["text"]


def test_expected_accuracy_gathers_the_finished_runs_of_the_setting_every_seed(results):
    where = config("dyreg", "mini", task="where", padding="circular", full_curve=True, device="cpu")
    out = gpu_estimate.expected_accuracy(where, results_dir=results)
    assert sorted(r["val_accuracy"] for r in out["runs"]) == [95.95, 96.3]  # not Fixed's, not another task's
    assert "96.3% (seed 0), 96.0% (seed 1)" in out["text"]
    out = gpu_estimate.expected_accuracy(config("dyreg", "paper"), results_dir=results)  # only an unfinished run
    assert out["runs"] == [] and out["text"].startswith("No finished run of dyreg on the paper task")


def test_the_gpu_table_matches_device_names():
    assert gpu_estimate.gpu_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu_estimate.gpu_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu_estimate.gpu_tflops("Tesla T4") == 65.0
    assert gpu_estimate.gpu_tflops("NVIDIA RTX A6000") is None


def test_the_committed_results_give_the_h100_rate_of_the_paper_scale():
    runs = gpu_estimate.committed_runs()
    assert any("H100" in r["device"] and r["config"]["scale"] == "paper" for r in runs)
    assert gpu_estimate.epoch_time(config("dyreg", "paper"), "NVIDIA H100 80GB HBM3")["kind"] == "measured"
