"""The ladder of tasks: the trainer's ``task`` presets, circular padding, the whole curve, the rungs."""

import dataclasses
import json

import pytest
import torch

from dyreg_edu import ladder, mini, train
from dyreg_edu.models import SyncMNISTModel
from dyreg_edu.runs import read_log

from test_train import tiny


def test_a_task_sets_the_data_and_the_number_of_classes():
    cfg = train.config("dyreg", "mini", task="where")
    assert (cfg.task, cfg.num_digits, cfg.digit_size, cfg.layout, cfg.label) == ("where", 2, 20, "halves", "upper")
    assert train.build_model(cfg).classifier.out_features == 10
    batch = train.build_data(cfg, "val").batch(range(4))
    assert batch["label"].max() < 10 and batch["video"].shape[1:] == (8, 64, 64)
    assert train.build_model(train.config("dyreg", "mini", task="sync2")).classifier.out_features == 2
    assert train.config("dyreg", "mini").task == "mini" and train.config("dyreg", "paper").task == "paper"
    assert train.config("dyreg", "mini") == train.config("dyreg", "mini", task="mini")
    with pytest.raises(ValueError, match="task must be one of"):
        train.config("dyreg", "mini", task="hard")


def test_configs_saved_before_tasks_take_their_scales():
    old = train.config("dyreg", "paper").to_dict()
    del old["task"], old["layout"], old["label"], old["p_no_sync"], old["padding"], old["full_curve"]
    assert train.TrainConfig.from_dict(old) == train.config("dyreg", "paper")


def test_a_task_has_its_own_cached_backbone_and_plain_model():
    where = train.config("dyreg", "mini", task="where", padding="circular")
    assert mini.design_tag(where) == "_where_circular"
    assert mini.digit_backbone_path(where).name == "multisync_mini_where_circular_digits.pt"
    assert mini.backbone_config(where)["padding"] == "circular" and mini.backbone_config(where)["layout"] == "halves"
    assert mini.design_tag(train.config("dyreg", "mini")) == ""  # the committed mini design keeps its files


def test_circular_padding_hides_where_the_digits_are_from_the_plain_model():
    """With circular padding the plain model's logits do not change when the whole video wraps around by a
    multiple of its total stride (8 pixels); with zero padding they do."""
    torch.manual_seed(0)
    video = torch.rand(2, 3, 1, 32, 32)
    moved = torch.roll(video, shifts=(8, 16), dims=(-2, -1))
    for padding, same in (("circular", True), ("zeros", False)):
        torch.manual_seed(0)
        model = SyncMNISTModel("resnet18", input_size=32, widths=(8, 16, 32), blocks=(1, 1, 1), stem="small",
                               padding=padding).eval()
        with torch.no_grad():
            assert torch.allclose(model(video), model(moved), atol=1e-5) is same, padding
    with pytest.raises(ValueError, match="padding must be 'zeros' or 'circular'"):
        SyncMNISTModel("resnet18", padding="reflect")


def test_the_whole_curve_starts_before_the_first_step(tmp_path):
    cfg = tiny("dyreg", task="where", size=64, num_frames=3, full_curve=True, train_videos=16, eval_every=2)
    result = train.train(cfg, tmp_path, max_steps=2, progress=False)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1, 2] and "loss" not in records[0]
    assert {"val_accuracy", "still_val_accuracy", "object_centric", "regions"} <= set(records[0]) <= set(records[2])
    assert result["object_centric_distance_at_start"] == records[0]["object_centric"]["score"]
    train.train(cfg, tmp_path, max_steps=3, resume=True, progress=False)  # a resumed run does not start again
    assert [json.loads(line)["step"] for line in (tmp_path / "log.jsonl").read_text().splitlines()] == [0, 1, 2, 3]


def test_the_ladder_runs_the_papers_model_on_each_rung():
    rungs = ladder.ladder_json()["rungs"]
    assert [r["name"] for r in rungs] == ["where", "sync2", "pair2", "mini", "paper"]
    assert [r["needs_relation"] for r in rungs] == [False, True, True, True, True]
    assert all(r["description"] and r["design"] and r["settings"]["task"] for r in rungs)
    for name, _, _ in ladder.RUNGS:
        for variant in ladder.VARIANTS:
            cfg = ladder.rung_config(name, variant)
            assert cfg.experiments == {} and cfg.block == {} and cfg.full_curve  # no research switch
    assert ladder.rung_config("where", "dyreg").padding == "circular"
    with pytest.raises(ValueError, match="rung must be one of"):
        ladder.rung_config("harder", "dyreg")
    assert json.loads((ladder.LADDER_DIR / "ladder.json").read_text()) == ladder.ladder_json()


def test_a_finished_rung_run_saved_with_an_older_config_counts_as_done(tmp_path, monkeypatch):
    """A result whose config was saved with ``amp: true`` (before amp named a precision) is the same run: the
    ladder returns it instead of training it again (deadline 0: it would return None)."""
    saved = {"val_accuracy": 96.3, "config": {**ladder.rung_config("where", "dyreg").to_dict(), "amp": True}}
    (tmp_path / "where").mkdir()
    (tmp_path / "where" / "dyreg.json").write_text(json.dumps(saved))
    monkeypatch.setattr(ladder, "LADDER_DIR", tmp_path)
    assert ladder.run_one("where", "dyreg", seed=0, runs_root=tmp_path, deadline=0.0, progress=False) == saved
    saved["config"]["lr"] = 0.5  # another setting is another run
    (tmp_path / "where" / "dyreg.json").write_text(json.dumps(saved))
    assert ladder.run_one("where", "dyreg", seed=0, runs_root=tmp_path, deadline=0.0, progress=False) is None


def test_how_a_run_ran_is_not_what_it_is():
    """A result trained compiled, or on a GPU, is the rung's run all the same; another setting is not."""
    cfg = ladder.rung_config("sync2", "dyreg")
    assert ladder.same_run(dataclasses.replace(cfg, compile=True, device="cuda"), cfg)
    assert not ladder.same_run(dataclasses.replace(cfg, compile=True, lr=0.5), cfg)


def test_a_run_resumes_compiled_or_not(tmp_path, monkeypatch):
    """``compile`` may change between calls of one run (the ladder's --compile), unlike its settings: the
    resumed run's losses equal an uninterrupted one's (compilation itself is left out here: it changes how
    the steps run, and a CPU compile takes a minute)."""
    monkeypatch.setattr(train, "compile_model", lambda model: model)
    cfg = tiny("dyreg")
    train.train(cfg, tmp_path / "straight", max_steps=4, progress=False)
    train.train(cfg, tmp_path / "split", max_steps=2, progress=False)
    train.train(dataclasses.replace(cfg, compile=True), tmp_path / "split", max_steps=4, resume=True, progress=False)
    read = lambda run: [r["loss"] for r in read_log(tmp_path / run / "log.jsonl") if "loss" in r]
    assert read("split") == read("straight")
    with pytest.raises(ValueError, match="lr differ"):
        train.train(dataclasses.replace(cfg, lr=0.5), tmp_path / "split", max_steps=6, resume=True, progress=False)


def test_milestones_of_a_run_that_clears_the_ceiling_and_of_one_that_never_does():
    margin = 2 * 100 * (0.25 / 2_000) ** 0.5  # two standard errors at 50% on 2,000 videos: 2.24 points
    rows = lambda accuracies: [{"step": 250 * i, "val_accuracy": a} for i, a in enumerate(accuracies)]  # noqa: E731
    above = 50.0 + margin + 0.1
    learns = ladder.milestones(rows([50.0, 51.0, above, above + 1, 70.0, 80.0]), 50.0, 2_000)
    assert learns == {"left_ceiling": 500, "to_90_percent": 1250, "final": 80.0, "steps": 1250}
    # at chance all along, one evaluation above by luck: not cleared; and 90% of a last value at chance
    # was "reached" at step 0, which no milestone says
    flat = ladder.milestones(rows([50.0, above, 49.0, above, above, 50.5]), 50.0, 2_000)
    assert flat["left_ceiling"] is None and flat["to_90_percent"] is None and flat["steps"] == 1250
    assert ladder.milestones(rows([50.0, 49.0, above, above]), 50.0, 2_000)["left_ceiling"] is None  # not yet
    assert ladder.milestones(rows([50.0, above]), 50.0, 2_000, streak=1)["left_ceiling"] == 250
    # just left the ceiling: 90% of its last is below the ceiling, so the mark is where it left, not step 0
    assert ladder.milestones(rows([50.0, 51.0, above, above, above]), 50.0, 2_000)["to_90_percent"] == 500
    assert ladder.milestones([{"step": 3, "loss": 0.7}], 50.0, 2_000)["steps"] == 0


def test_a_rung_s_seed_changes_only_the_graph_s_starting_weights():
    """Chapter 6 and Project 4: seeds 0 and 1 of a rung see the same videos in the same order (the order follows
    the data's seed) and load the same digit layers and plain model; only the weights drawn at random differ."""
    from dyreg_edu.inputs import build_data

    cfg0, cfg1 = (ladder.rung_config("sync2", "dyreg", seed) for seed in (0, 1))
    assert dataclasses.replace(cfg1, seed=0) == cfg0
    loaders = [build_data(cfg, "train", "cpu").iter_batches(cfg.batch_size, shuffle=True) for cfg in (cfg0, cfg1)]
    for step in (0, 1, cfg0.total_steps - 1):
        assert torch.equal(loaders[0].step_indices(step), loaders[1].step_indices(step))
    small = [dataclasses.replace(cfg, backbone="scratch", head_init="none", freeze_backbone=False)
             for cfg in (cfg0, cfg1)]  # no committed weights needed: the random draws alone
    first, second = (train.starting_model(cfg, progress=False)[0].graph.state_dict() for cfg in small)
    assert any(not torch.equal(first[k], second[k]) for k in first)
