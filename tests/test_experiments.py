"""dyreg_edu.experiments: research switches apart from the method, reached by the trainer through hooks."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from dyreg_edu import experiments, runs, train
from dyreg_edu.dyreg import DyRegBlock
from dyreg_edu.inputs import build_data
from dyreg_edu.experiments.boxes import region_box_loss
from dyreg_edu.experiments.motion import MotionBlock, kernel_centres
from dyreg_edu.experiments.warm_start import KERNEL_SOURCE_KEYS, load_trained_head
from dyreg_edu.kernels import pool_nodes, region_kernels

from test_train import losses, tiny

REPO = Path(__file__).resolve().parents[1]
MOTION = {"node_motion": True, "motion_from": "centre"}


from test_dyreg import randomise_zero_inits  # noqa: E402  (gamma and the residual scale opened)


# --------------------------------------------------------------------------- the registry and hooks


def test_experiments_are_registered_by_name_and_built_from_their_settings():
    assert list(experiments.EXPERIMENTS) == ["init", "motion", "warm_start", "oracle_jitter", "box_loss"]
    hooks = experiments.hooks(tiny("dyreg", experiments={"box_loss": {"weight": 2.0}, "init": {"gamma": 0.1}}))
    assert [e.name for e in hooks.experiments] == ["init", "box_loss"]  # the registry's order, not the config's
    assert hooks.experiments[1].settings() == {"weight": 2.0, "steps": 0}
    assert not experiments.hooks(tiny("dyreg"))
    assert experiments.parse_option("box_loss:weight=1,steps=500") == ("box_loss", {"weight": 1, "steps": 500})
    assert experiments.parse_option("warm_start:head=x.pt,freeze_head=True") == (
        "warm_start", {"head": "x.pt", "freeze_head": True})


@pytest.mark.parametrize("settings, message", [
    ({"boxes": {}}, "experiment must be one of"),
    ({"box_loss": {"wieght": 1}}, "experiment 'box_loss' has the settings ['weight', 'steps'], not ['wieght']"),
    ({"box_loss": {"weight": -1}}, "box_loss weight must be a positive number, got -1"),
    ({"oracle_jitter": {"spread": 1.0}}, "oracle_jitter's variant must be one of ('oracle',), got 'dyreg'"),
    ({"warm_start": {"freeze_head": True}}, "warm_start freeze_head must be False unless head is a checkpoint"),
    ({"warm_start": {"freeze_regions": True}}, "warm_start freeze_regions must be False unless regions names"),
    ({"warm_start": {"head": "model.pth"}}, "warm_start head must be None or the path of a trained checkpoint (.pt)"),
    ({"motion": {"motion_from": "box"}}, "motion_from must be one of ('kernel', 'centre'), got 'box'"),
    ({"motion": {"position_scale": 0}}, "position_scale must be a positive number, got 0"),
])
def test_bad_experiment_settings_are_one_line_errors(settings, message):
    with pytest.raises(ValueError) as error:
        train.build_model(tiny("dyreg", num_nodes=2, experiments=settings))
    assert message in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("argv, message", [
    (["--variant", "dyreg", "--experiment", "boxes"], "experiment must be one of"),
    (["--variant", "fixed", "--experiment", "box_loss:weight=1"], "box_loss's variant must be one that makes its regions"),
    (["--variant", "dyreg", "--num-nodes", "2", "--experiment", "box_loss"], "num_nodes >= num_digits (2 nodes, 3 digits)"),
    (["--variant", "dyreg", "--experiment", "box_loss:weight"], "--experiment wants NAME[:KEY=VALUE,...]"),
    (["--variant", "dyreg", "--experiment", "warm_start:head=missing.pt"], "head_init 'missing.pt': no such checkpoint"),
    (["--variant", "dyreg", "--experiment", "warm_start:regions=missing.pt"], "regions_init 'missing.pt': no such checkpoint"),
    (["--variant", "dyreg", "--head-init", "checkpoints/x.pt"], "head_init must be 'none' or 'resnet18'"),
])
def test_the_clis_experiment_errors_are_one_line(argv, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        train.main(argv + ["--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and message in err and "\n" not in err


def test_the_method_never_imports_the_experiments():
    """The layers: kernels, regions, graph, variants, baselines, dyreg, models know nothing of research."""
    import ast

    for name in ("kernels", "regions", "graph", "variants", "baselines", "layers", "dyreg", "models"):
        tree = ast.parse((REPO / "dyreg_edu" / f"{name}.py").read_text())
        imported = {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not any("experiments" in module for module in imported), name


# --------------------------------------------------------------------------- older configs


def committed_configs():
    """Every training config committed in a result file or checkpoint (other programs' configs aside)."""
    found = []
    for path in sorted((REPO / "results").rglob("*.json")):
        saved = json.loads(path.read_text())
        if isinstance(saved, dict) and isinstance(saved.get("config"), dict) and "variant" in saved["config"]:
            found.append((path, saved["config"]))
    return found


def test_every_committed_config_migrates_and_builds_its_model():
    configs = committed_configs()
    assert len(configs) > 90
    research = 0
    for path, saved in configs:
        cfg = train.TrainConfig.from_dict(saved)
        hooks = experiments.hooks(cfg)
        research += bool(hooks)
        assert not {"box_loss", "oracle_jitter", "freeze_head", "regions_init"} & set(cfg.to_dict()), path
        assert not {"node_motion", "position_scale", "gamma_init", "residual_scale_init"} & set(cfg.block), path
    assert research > 40  # chapter 11's runs keep their switches, now under experiments


def test_an_old_flat_config_moves_into_experiments():
    old = {"head_init": "checkpoints/oracle.pt", "freeze_head": True, "box_loss": 1.0, "box_loss_steps": 500,
           "oracle_jitter": 0.0, "regions_init": "none", "freeze_regions": False,
           "block": {"node_motion": True, "motion_from": "centre", "position_scale": 25, "anchors": "grid"}}
    new = experiments.migrate_config(old)
    assert new["head_init"] == "none" and new["block"] == {"anchors": "grid"}
    assert new["experiments"] == {"warm_start": {"freeze_head": True, "head": "checkpoints/oracle.pt"},
                                  "box_loss": {"weight": 1.0, "steps": 500},
                                  "motion": {"node_motion": True, "motion_from": "centre", "position_scale": 25}}
    assert experiments.migrate_config({"block": {"position_scale": 30}})["experiments"] == {
        "motion": {"position_scale": 30, "node_motion": False}}


@pytest.mark.slow
def test_every_committed_checkpoint_loads_and_rescores():
    """Every checkpoint the book loads, research ones included, rebuilds and scores its validation videos."""
    paths = [p for p in sorted((REPO / "checkpoints").glob("multisync_mini_*.pt")) if "digits" not in p.name]
    paths += sorted((REPO / "checkpoints" / "ladder").glob("*.pt"))
    assert len(paths) > 20
    for path in paths:
        model, _ = train.load_trained(path)
        cfg = dataclasses.replace(train.TrainConfig.from_dict(runs.load_checkpoint(path)["config"]),
                                  device="cpu", val_videos=16)
        accuracy = train.evaluate(model, build_data(cfg, "val", "cpu"), cfg=cfg)["val_accuracy"]
        assert 0 <= accuracy <= 100, path


# --------------------------------------------------------------------------- motion


def test_motion_block_off_computes_what_dyreg_block_does():
    torch.manual_seed(1)
    plain = randomise_zero_inits(DyRegBlock(32, 16, 16, num_nodes=3, variant="oracle"))
    off = MotionBlock(32, 16, 16, num_nodes=3, variant="oracle")
    off.load_state_dict(plain.state_dict())
    assert not hasattr(off, "motion_embedding")
    x, regions = torch.randn(2, 4, 32, 16, 16), torch.cat([torch.rand(2, 4, 3, 2) * 15, torch.full((2, 4, 3, 2), 1.5)], -1)
    torch.testing.assert_close(off(x, regions)[0], plain(x, regions)[0], rtol=0, atol=0)


@pytest.mark.parametrize("motion_from, motion_sum, query_sum", [("centre", 3.8756680488586426, 1.956377387046814),
                                                                  ("kernel", 4.174711227416992, -1.6926755905151367)])
def test_a_motion_block_starts_from_the_weights_of_the_runs_that_introduced_it(motion_from, motion_sum, query_sum):
    """Chapter 11's runs drew the motion embedding after the positional embedding and before the graph (the block
    of before e99f4d7, ``DyRegBlock(node_motion=True)``); the same seed must give the same initial weights, or a
    recorded command no longer trains its run. The sums pinned here are that block's, at seed 0."""
    torch.manual_seed(0)
    block = MotionBlock(32, 8, 8, node_dim=16, region_dim=16, num_nodes=3, node_motion=True, motion_from=motion_from,
                        position_scale=25)
    assert block.motion_embedding.weight.sum().item() == pytest.approx(motion_sum, abs=1e-6)
    assert block.graph.query.weight.sum().item() == pytest.approx(query_sum, abs=1e-6)
    torch.manual_seed(0)
    off = MotionBlock(32, 8, 8, node_dim=16, region_dim=16, num_nodes=3)
    torch.manual_seed(0)
    plain = DyRegBlock(32, 8, 8, node_dim=16, region_dim=16, num_nodes=3)
    assert all(torch.equal(a, b) for a, b in zip(off.state_dict().values(), plain.state_dict().values()))


def test_node_motion_adds_each_nodes_step():
    """Nodes also get a Linear of their kernel's change since the previous frame."""
    torch.manual_seed(4)
    block = randomise_zero_inits(MotionBlock(32, 16, 16, num_nodes=3, variant="oracle", node_motion=True))
    x = torch.randn(2, 4, 32, 16, 16)
    regions = torch.cat([torch.rand(2, 4, 3, 2) * 15, torch.full((2, 4, 3, 2), 1.5)], -1)
    _, aux = block(x, regions)
    kernels = region_kernels(regions, 16, 16)
    change = kernels[:, 1:] - kernels[:, :-1]
    motion = block.motion_embedding(change.flatten(-2))
    expected = pool_nodes(x, kernels) + block.position(kernels)
    torch.testing.assert_close(aux["nodes_in"][:, 1:], expected[:, 1:] + motion)
    torch.testing.assert_close(aux["nodes_in"][:, 0], expected[:, 0] + block.motion_embedding.bias)  # no step yet
    still = regions[:, :1].expand(-1, 4, -1, -1)  # regions that do not move: only the bias
    torch.testing.assert_close(block.motion(region_kernels(still, 16, 16)),
                               block.motion_embedding.bias.expand(2, 4, 3, -1))


def test_node_motion_from_the_centre_is_each_regions_step_in_map_widths():
    torch.manual_seed(6)
    block = randomise_zero_inits(MotionBlock(32, 16, 16, num_nodes=3, variant="oracle", node_motion=True,
                                             motion_from="centre", position_scale=25.0))
    assert block.motion_embedding.in_features == 2
    centres = 4 + torch.rand(2, 4, 3, 2) * 8  # tents of half-size 2 stay inside the 16 x 16 map
    regions = torch.cat([centres, torch.full((2, 4, 3, 2), 2.0)], -1)
    steps = torch.cat([torch.zeros(2, 1, 3, 2), centres[:, 1:] - centres[:, :-1]], 1) / 16
    expected = block.motion_embedding(25.0 * steps)
    torch.testing.assert_close(block.motion(region_kernels(regions, 16, 16)), expected, rtol=1e-4, atol=1e-4)


def test_position_scale_is_the_same_function_with_a_scaled_input():
    """A block with scale ``s`` equals one with scale 1 whose two Linears have ``s`` times the weights."""
    torch.manual_seed(5)
    scaled = randomise_zero_inits(MotionBlock(32, 16, 16, num_nodes=3, variant="oracle", node_motion=True,
                                              position_scale=40.0))
    plain = MotionBlock(32, 16, 16, num_nodes=3, variant="oracle", node_motion=True)
    plain.load_state_dict(scaled.state_dict())
    with torch.no_grad():
        plain.position_embedding.weight.mul_(40.0)
        plain.motion_embedding.weight.mul_(40.0)
    x = torch.randn(2, 4, 32, 16, 16)
    regions = torch.cat([torch.rand(2, 4, 3, 2) * 15, torch.full((2, 4, 3, 2), 1.5)], -1)
    (y_scaled, aux_scaled), (y_plain, aux_plain) = scaled(x, regions), plain(x, regions)
    torch.testing.assert_close(aux_scaled["nodes_in"], aux_plain["nodes_in"], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(y_scaled, y_plain, rtol=1e-4, atol=1e-4)


def test_kernel_centres_are_the_regions_centres_away_from_the_border():
    regions = torch.tensor([[[5.0, 9.0, 2.0, 3.0], [10.25, 4.5, 1.0, 2.0]]])
    torch.testing.assert_close(kernel_centres(region_kernels(regions, 16, 16)), regions[..., :2])
    pixel = torch.zeros(1, 4, 8)
    pixel[0, 1, 6] = 1.0
    torch.testing.assert_close(kernel_centres(pixel), torch.tensor([[6.0, 1.0]]))
    with pytest.raises(ValueError, match=r"\[\.\.\., N, H, W\].*\(16, 16\)"):
        kernel_centres(torch.rand(16, 16))


def test_the_motion_experiment_builds_a_motion_block():
    model = train.build_model(tiny("oracle", experiments={"motion": {"motion_from": "centre", "position_scale": 25}}))
    assert type(model.graph) is MotionBlock and model.graph.position_scale == 25 and model.graph.node_motion


# --------------------------------------------------------------------------- init


def test_init_opens_the_residual_branch_and_moves_the_regions():
    cfg = tiny("dyreg", experiments={"init": {"residual_scale": 1.0, "gamma": 0.3}})
    model, _ = train.starting_model(cfg, progress=False)
    assert torch.all(model.graph.residual_norm.scale == 1.0)
    assert torch.equal(model.graph.region_generator.gamma, torch.full((4,), 0.3))
    x = torch.randn(2, 3, 32, 8, 8)  # layer2's map of a 32-pixel video
    regions, _ = model.graph.region_generator(model.graph.project(x))
    assert (regions[..., :2] - model.graph.region_generator.anchors).abs().amax() > 0.1
    regions[..., :2].sum().backward()
    assert model.graph.region_generator.w_o.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="init gamma must be None for variant 'fixed'"):
        train.starting_model(tiny("fixed", experiments={"init": {"gamma": 0.3}}), progress=False)
    with pytest.raises(ValueError, match="init gamma must be None or a number, got 'small'"):
        tiny("dyreg", experiments={"init": {"gamma": "small"}})


# --------------------------------------------------------------------------- boxes


def test_region_box_loss_matches_each_digit_to_one_node_for_the_whole_video():
    torch.manual_seed(0)
    targets = torch.rand(2, 4, 3, 4) * 8                                   # [B, T, D, 4]
    free = torch.rand(2, 4, 2, 4) * 8
    regions = torch.cat([targets[:, :, [2, 0, 1]], free], dim=2)          # digits on nodes 1, 2, 0; nodes 3, 4 free
    assert region_box_loss(regions, targets) == 0
    moved = regions.clone()
    moved[..., 0] += 1.0                                                   # every centre 1 pixel to the right
    assert torch.isclose(region_box_loss(moved, targets), torch.tensor(0.5 / 4))  # smooth L1 of 1 in 1 of 4
    swapped = regions.clone()
    swapped[:, 2:, [0, 1]] = swapped[:, 2:, [1, 0]]                        # two nodes swap digits half-way
    assert region_box_loss(swapped, targets) > 0                           # one assignment for the whole video


@pytest.mark.slow
def test_box_loss_brings_the_regions_to_the_digits(tmp_path):
    cfg = tiny("dyreg", num_nodes=2, lr=1e-2, epochs=200, experiments={"box_loss": {"weight": 1.0}})
    model = train.build_model(cfg)
    batch = train.build_data(cfg, "train").batch(range(8))
    video, boxes = train.model_inputs(batch, "cpu")

    def gap():
        with torch.no_grad():
            regions = model(video, return_aux=True)[1]["regions"]
        return region_box_loss(regions, model.box_regions(boxes)).item()

    before = gap()
    train.train(cfg, tmp_path, max_steps=40, progress=False)
    model.load_state_dict(torch.load(tmp_path / "checkpoint.pt", weights_only=True)["model"])
    assert gap() < 0.5 * before, (before, gap())


def test_box_loss_steps_teaches_the_regions_for_the_first_steps_only(tmp_path):
    """Taught for the first 2 steps of 4 against taught at every step, from the same start: the same
    first two losses (the label's and the boxes'), then a lower third one, the label's alone."""
    briefly = tiny("dyreg", num_nodes=3, experiments={"box_loss": {"weight": 1.0, "steps": 2}})
    throughout = dataclasses.replace(briefly, experiments={"box_loss": {"weight": 1.0}})
    train.train(briefly, tmp_path / "briefly", max_steps=3, progress=False)
    train.train(throughout, tmp_path / "throughout", max_steps=3, progress=False)
    first, second = losses(tmp_path / "briefly"), losses(tmp_path / "throughout")
    assert first[:2] == pytest.approx(second[:2], rel=1e-6)
    assert first[2] < second[2]


def test_oracle_jitter_shifts_each_box_as_a_whole():
    cfg = tiny("oracle", experiments={"oracle_jitter": {"spread": 1.5}})
    model, hooks = train.build_model(cfg), experiments.hooks(cfg)
    boxes = train.build_data(cfg, "val").batch(range(4))["boxes"]
    truth = model.box_regions(boxes)
    torch.manual_seed(0)
    jittered = model.box_regions(hooks.boxes(boxes, training=True))
    gaps = (jittered - truth)[..., :2].norm(dim=-1)
    assert torch.allclose(jittered[..., 2:], truth[..., 2:])  # sizes kept: the whole box moves
    assert (gaps > 0).float().mean() > 0.95 and gaps.mean() < 1.5  # every box moved, by about a map pixel or less
    torch.manual_seed(0)
    assert torch.equal(model.box_regions(hooks.boxes(boxes, training=False)), jittered)  # torch's generator, both ways


# --------------------------------------------------------------------------- warm starts


def test_head_from_a_trained_checkpoint_and_freeze_head(tmp_path):
    motion = {"motion": MOTION}
    train.train(tiny("oracle", experiments=motion), tmp_path / "oracle", max_steps=2, progress=False)
    path = runs.export_checkpoint(tmp_path / "oracle", tmp_path / "oracle.pt", half=False)
    trained = torch.load(path, weights_only=True)["model"]
    cfg = tiny("dyreg", num_nodes=2, experiments={**motion, "warm_start": {"head": str(path), "freeze_head": True}})
    before = train.build_model(cfg).state_dict()
    result = train.train(cfg, tmp_path / "run", max_steps=3, progress=False)
    after = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    head = [k for k in after if k.split(".")[0] in ("layer3", "graph", "classifier") and ".region_generator." not in k]
    assert head and all(torch.equal(after[k], trained[k]) for k in head)  # loaded, then frozen
    regions = [k for k in after if ".region_generator." in k and after[k].is_floating_point()]
    assert any(not torch.equal(after[k], before[k]) for k in regions)  # only the regions learn
    assert result["head_init"]["variant"] == "oracle" and result["head_init"]["path"] == str(path)
    assert result["head_init"]["kernel_source"] == "initialised"  # the oracle has no region generator
    mine = runs.export_checkpoint(tmp_path / "run", tmp_path / "dyreg.pt", half=False)
    again = train.build_model(cfg)
    assert load_trained_head(mine, cfg, again)["kernel_source"] == "copied"  # a DyReg's generator fits a DyReg
    assert all(torch.equal(again.state_dict()[k], after[k]) for k in regions)
    with pytest.raises(ValueError, match="does not fit this model's head"):  # no motion embedding there
        train.train(tiny("dyreg", experiments={"warm_start": {"head": str(path)}}), tmp_path / "other", max_steps=1,
                    progress=False)


def test_regions_copies_and_freezes_only_the_region_generator(tmp_path):
    train.train(tiny("dyreg", num_nodes=2), tmp_path / "taught", max_steps=3, progress=False)
    path = runs.export_checkpoint(tmp_path / "taught", tmp_path / "taught.pt", half=False)
    taught = torch.load(path, weights_only=True)["model"]
    cfg = tiny("dyreg", num_nodes=2, experiments={"warm_start": {"regions": str(path), "freeze_regions": True}})
    model, reports = train.starting_model(cfg, progress=False)
    assert set(reports) == {"regions_init"} and reports["regions_init"]["frozen"] is True
    assert not any(p.requires_grad for p in model.graph.region_generator.parameters())
    result = train.train(cfg, tmp_path / "run", max_steps=3, progress=False)
    after = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"]
    regions = [k for k in after if k.startswith(KERNEL_SOURCE_KEYS)]
    assert regions and all(torch.equal(after[k], taught[k]) for k in regions)  # copied, then frozen
    graph = [k for k in after if k.startswith("graph.") and k not in regions and after[k].is_floating_point()]
    assert any(not torch.equal(after[k], taught[k]) for k in graph)  # the rest starts afresh
    assert result["regions_init"]["path"] == str(path) and result["regions_init"]["frozen"] is True
    with pytest.raises(ValueError, match="has no region generator that fits"):  # another node count
        train.train(tiny("dyreg", num_nodes=3, experiments={"warm_start": {"regions": str(path)}}), tmp_path / "misfit",
                    max_steps=1, progress=False)
    with pytest.raises(ValueError, match=r"and False with freeze_head \(nothing would learn\)"):
        tiny("dyreg", experiments={"warm_start": {"regions": str(path), "freeze_regions": True, "head": str(path),
                                                  "freeze_head": True}})


def test_starting_model_is_where_a_run_takes_its_first_step(tmp_path):
    cfg = tiny("dyreg", num_nodes=2, experiments={"init": {"gamma": 0.2}})
    model, _ = train.starting_model(cfg, progress=False)
    train.train(cfg, tmp_path / "run", max_steps=0, progress=False)  # saved before its first step
    after, state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"], model.state_dict()
    assert after.keys() == state.keys() and all(torch.equal(after[k], state[k]) for k in after)


def test_a_research_run_resumes_with_the_losses_of_a_straight_run(tmp_path):
    cfg = tiny("oracle", train_videos=16, experiments={"oracle_jitter": {"spread": 1.0}, "motion": MOTION})
    train.train(cfg, tmp_path / "straight", max_steps=4, progress=False)
    train.train(cfg, tmp_path / "split", max_steps=2, progress=False)
    train.train(cfg, tmp_path / "split", max_steps=4, resume=True, progress=False)
    assert losses(tmp_path / "split") == losses(tmp_path / "straight")
