"""The block's backward equals the authors' module's, checked without their code.

``tools/gradient_parity.py`` ran the authors' module and ours in float64 on every golden file and
compared every gradient in full (``results/fidelity/gradients.json``). For the bundled golden file it
also stored a random sketch of the authors' gradients (``dyreg_edu/fixtures/synthetic_block_small_grads.pt``:
each gradient flattened times a fixed seeded Gaussian matrix of 16 columns, and the input's gradient
likewise). Here our block's gradients, for the same loss, are sketched the same way and must agree to
1e-10 relative; a block whose gamma is changed by 0.1% must not.
"""

import pytest
import torch

from dyreg_edu.dyreg import DyRegBlock
from dyreg_edu.notebook import bundled_fixture
from dyreg_edu.official_gradients import INPUT, our_gradients, relative_differences, sketch

SKETCH_FILE = bundled_fixture().with_name("synthetic_block_small_grads.pt")


@pytest.fixture(scope="module")
def fixture():
    return torch.load(bundled_fixture(), weights_only=True)


@pytest.fixture(scope="module")
def recorded():
    return torch.load(SKETCH_FILE, weights_only=True)


def sketched(fixture, recorded, block=None):
    loss, _, grads = our_gradients(fixture["state_dict"], fixture["config"], fixture["input"],
                                   recorded["loss_seed"], block=block)
    return loss, sketch(grads, recorded["sketch_seed"], recorded["columns"])


def test_the_record_is_small_and_covers_every_parameter(fixture, recorded):
    assert SKETCH_FILE.stat().st_size < 200_000
    assert recorded["fixture"] == bundled_fixture().name
    block = DyRegBlock.from_official(fixture["state_dict"], fixture["config"])
    assert len(recorded["sketches"]) == len(list(block.parameters())) + 1 == 65  # and the input's
    assert INPUT in recorded["sketches"]
    assert all(s.dtype == torch.float64 and s.shape == (recorded["columns"],) for s in recorded["sketches"].values())


def test_gradients_match_the_authors(fixture, recorded):
    loss, ours = sketched(fixture, recorded)
    assert abs(loss - recorded["loss"]) <= 1e-10 * abs(recorded["loss"])
    diffs = relative_differences(ours, recorded["sketches"])
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] < 1e-10, (worst, diffs[worst])


def test_a_perturbed_block_fails_the_comparison(fixture, recorded):
    """The comparison can fail: gamma changed by 0.1% moves the gradients far beyond the tolerance."""
    block = DyRegBlock.from_official(fixture["state_dict"], fixture["config"])
    with torch.no_grad():
        block.region_generator.gamma.mul_(1.001)
    _, ours = sketched(fixture, recorded, block=block)
    diffs = relative_differences(ours, recorded["sketches"])
    assert max(diffs.values()) > 1e-6
    assert diffs[INPUT] > 1e-8  # the input's gradient moves too
