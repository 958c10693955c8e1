"""The block equals the authors' module on their golden tensors.

``synthetic_block_small`` ships inside ``dyreg_edu/fixtures`` and is always tested; the
larger files live in ``../shared/fixtures/official`` and are skipped on a machine without
it (they fail instead under ``DYREG_REQUIRE_SHARED=1``, as ``.ci/run`` sets).
"""

import pytest
import torch

from dyreg_edu.dyreg import DyRegBlock
from dyreg_edu.notebook import bundled_fixture, fixtures_dir
from dyreg_edu.official import convert_state_dict
from dyreg_edu.layers import count_parameters

FIXTURES = [
    "synthetic_block_small", "synthetic_block", "synthetic_block_lite", "tsm_layer3_block", "tsm_layer4_block",
    "tsm_layer3_fullres",  # trained at 14 x 14, run on 16 x 16 (the authors' --full_res)
]
AUTHORS_REGION_ORDER = [3, 2, 1, 0]  # ours (cx, cy, sx, sy) -> theirs (size_h, size_w, centre_y, centre_x)


def load_fixture(name):
    if f"{name}.pt" == bundled_fixture().name:
        return torch.load(bundled_fixture(), weights_only=True)
    folder = fixtures_dir()
    if folder is None:
        from conftest import _missing

        _missing(f"fixtures/official/{name}.pt (shared/ beside the repository)")
    return torch.load(folder / f"{name}.pt", weights_only=True)


def test_bundled_fixture_is_the_shared_one():
    """The copy in dyreg_edu/fixtures is byte for byte the shared file (when shared/ is here)."""
    folder = fixtures_dir()
    if folder is None:
        pytest.skip("shared/ not here")
    assert (folder / bundled_fixture().name).read_bytes() == bundled_fixture().read_bytes()


@pytest.fixture(scope="module", params=FIXTURES)
def run(request):
    fixture = load_fixture(request.param)
    block = DyRegBlock.from_official(fixture["state_dict"], fixture["config"]).eval()
    with torch.no_grad():
        output, aux = block(fixture["input"])
    return fixture, block, output, aux


def max_diff(a, b):
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def test_regions_match(run):
    fixture, _, _, aux = run
    assert max_diff(aux["regions"][..., AUTHORS_REGION_ORDER], fixture["regions"]) < 1e-4


def test_kernels_match(run):
    fixture, _, _, aux = run
    assert max_diff(aux["kernels"], fixture["kernels"]) < 1e-5


def test_nodes_match(run):
    fixture, _, _, aux = run
    assert max_diff(aux["nodes_in"], fixture["nodes_in"]) < 1e-4
    assert max_diff(aux["nodes_out"], fixture["nodes_out"]) < 1e-4


def test_output_matches(run):
    fixture, _, output, _ = run
    assert max_diff(output, fixture["output"]) < 1e-4
    # the fixtures randomise the residual LayerNorm, so the branch really contributes
    assert max_diff(output, fixture["input"]) > 1e-2


def test_fixture_regions_moved_away_from_anchor(run):
    fixture, block, _, aux = run
    anchor = torch.tensor([block.width / 2, block.height / 2])
    assert (aux["regions"][..., :2] - anchor).abs().max() > 0.5


def test_every_learned_parameter_is_loaded():
    fixture = load_fixture("synthetic_block_small")
    converted = convert_state_dict(fixture["state_dict"])
    block = DyRegBlock.from_official(fixture["state_dict"], fixture["config"])
    assert set(converted) == set(block.state_dict())
    assert count_parameters(block) == 290_088


def test_lite_counts_all_but_the_unused_norm():
    fixture = load_fixture("synthetic_block_lite")
    block = DyRegBlock.from_official(fixture["state_dict"], fixture["config"])
    unused = sum(v.numel() for k, v in fixture["state_dict"].items() if "offset_location_emb" in k)
    assert unused == 64
    assert count_parameters(block) + unused == 42_033


def test_converter_rejects_unknown_names():
    fixture = load_fixture("synthetic_block_small")
    state = dict(fixture["state_dict"])
    state["dynamic_graph.mystery.weight"] = torch.zeros(1)
    with pytest.raises(KeyError, match="mystery"):
        DyRegBlock.from_official(state, fixture["config"])
    with pytest.raises(KeyError, match="region_dim"):
        DyRegBlock.from_official(fixture["state_dict"], {k: v for k, v in fixture["config"].items() if k != "region_dim"})


def test_full_resolution_block_keeps_the_trained_parameters():
    """At full resolution the parameters are those of the 14 x 14 block: same names, same shapes."""
    fixture = load_fixture("tsm_layer3_fullres")
    full = DyRegBlock.from_official(fixture["state_dict"], fixture["config"])
    trained = DyRegBlock(256, 14, 14, node_dim=256, region_dim=128)
    assert {k: v.shape for k, v in full.state_dict().items()} == {k: v.shape for k, v in trained.state_dict().items()}
    assert full.full_res and (full.train_height, full.height) == (14, 16)
    with pytest.raises(KeyError, match="train_height"):
        DyRegBlock.from_official(fixture["state_dict"], {k: v for k, v in fixture["config"].items() if k != "train_height"})
