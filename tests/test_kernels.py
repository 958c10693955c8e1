"""Kernel pooling and re-mapping (Eq. 5-7, 10)."""

import pytest
import torch
import torch.nn.functional as F

from dyreg_edu.kernels import area_weights, grid_kernels, pool_nodes, region_kernels, remap_nodes, tent


def test_tent_matches_equation_6():
    weights = tent(torch.tensor(2.5), torch.tensor(2.0), 6)
    expected = torch.tensor([0.0, 0.5, 1.5, 1.5, 0.5, 0.0])
    torch.testing.assert_close(weights, expected)


def test_tent_broadcasts_center_and_size():
    weights = tent(torch.tensor([[1.0], [3.0]]), torch.tensor([1.0, 2.0]), 5)
    assert weights.shape == (2, 2, 5)
    torch.testing.assert_close(weights[1, 0], torch.tensor([0.0, 0.0, 0.0, 1.0, 0.0]))


def test_size_one_is_bilinear_interpolation():
    torch.manual_seed(0)
    features = torch.randn(3, 8, 10)
    cx, cy = 4.3, 2.6
    kernels = region_kernels(torch.tensor([[cx, cy, 1.0, 1.0]]), 8, 10, normalize=False)
    pooled = pool_nodes(features, kernels)[0]
    grid = torch.tensor([[[[2 * cx / 9 - 1, 2 * cy / 7 - 1]]]])
    bilinear = F.grid_sample(features[None], grid, align_corners=True)[0, :, 0, 0]
    torch.testing.assert_close(pooled, bilinear)


@pytest.mark.parametrize("size", [16, 14, 7, 28])
def test_normalised_kernels_sum_to_one(size):
    torch.manual_seed(1)
    regions = torch.rand(2, 5, 9, 4) * torch.tensor([size, size, size / 2, size / 2]) + torch.tensor([0, 0, 0.5, 0.5])
    kernels = region_kernels(regions, size, size)
    assert kernels.shape == (2, 5, 9, size, size)
    torch.testing.assert_close(kernels.sum((-2, -1)), torch.ones(2, 5, 9))


def test_authors_initial_kernel_peak():
    """H = 16 at init: size 16/6 + 2, centre 8: a 9 x 9 support with peak (4.667 / 22)^2."""
    size = 16 / 6 + 2
    kernel = region_kernels(torch.tensor([[8.0, 8.0, size, size]]), 16, 16)[0]
    assert int((kernel > 0).sum()) == 81
    one_axis_sum = size + 2 * sum(size - d for d in range(1, 5))  # = 22
    assert kernel.max().item() == pytest.approx((size / one_axis_sum) ** 2)


def test_pool_then_remap_shapes():
    features = torch.randn(2, 10, 32, 16, 16)
    kernels = region_kernels(torch.rand(2, 10, 9, 4) * 8 + 1, 16, 16)
    nodes = pool_nodes(features, kernels)
    assert nodes.shape == (2, 10, 9, 32)
    assert remap_nodes(nodes, kernels).shape == (2, 10, 32, 16, 16)


def test_one_map_pooled_by_a_batch_of_kernels_broadcasts():
    torch.manual_seed(3)
    features = torch.randn(4, 8, 8)
    kernels = region_kernels(torch.rand(5, 2, 4) * 4 + 1, 8, 8)  # five steps of two regions
    pooled = pool_nodes(features, kernels)
    assert pooled.shape == (5, 2, 4)
    torch.testing.assert_close(pooled[3], pool_nodes(features, kernels[3]))
    assert remap_nodes(pooled, kernels).shape == (5, 4, 8, 8)


def test_pooling_gradcheck_wrt_regions():
    torch.manual_seed(2)
    features = torch.randn(3, 6, 7, dtype=torch.float64)
    # away from the kinks of the tent (|c - p| = s or c = p), where it is not differentiable
    regions = torch.tensor([[2.3, 3.1, 1.45, 2.2], [4.4, 1.6, 2.35, 1.3]], dtype=torch.float64, requires_grad=True)

    def pooled(r):
        return pool_nodes(features, region_kernels(r, 6, 7))

    assert torch.autograd.gradcheck(pooled, (regions,))
    assert torch.autograd.gradcheck(lambda r: pool_nodes(features, region_kernels(r, 6, 7, normalize=False)), (regions,))


def test_area_kernels_partition_the_map():
    kernels = grid_kernels(16, 16)
    assert kernels.shape == (9, 16, 16)
    torch.testing.assert_close(kernels.sum((-2, -1)), torch.ones(9))
    # every pixel is shared out completely among the cells (times cell area / pixel area)
    torch.testing.assert_close(kernels.sum(0), torch.full((16, 16), 9 / 256))
    torch.testing.assert_close(area_weights(16, 3)[0, 5], torch.tensor(1 / 3 / (16 / 3)))


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: region_kernels(torch.rand(9, 3), 16, 16), r"\[\.\.\., N, 4\].*\(9, 3\)"),
        (lambda: region_kernels(torch.tensor([[8.0, 8.0, 0.0, 2.0]]), 16, 16), "positive"),
        (lambda: tent(torch.tensor(1.0), torch.tensor(-1.0), 4), "positive"),
        (lambda: pool_nodes(torch.randn(4, 16, 16), torch.rand(9, 14, 14)), r"\(4, 16, 16\).*\(9, 14, 14\)"),
        (lambda: pool_nodes(torch.randn(16, 16), torch.rand(9, 16, 16)), r"\[\.\.\., C, H, W\].*\(16, 16\)"),
        (lambda: pool_nodes(torch.randn(2, 4, 16, 16), torch.rand(3, 9, 16, 16)), "broadcastable leading"),
        (lambda: remap_nodes(torch.randn(8, 32), torch.rand(9, 16, 16)), r"\(8, 32\).*\(9, 16, 16\)"),
        (lambda: remap_nodes(torch.randn(2, 9, 32), torch.rand(3, 9, 16, 16)), "broadcastable leading"),
    ],
)
def test_bad_input_names_what_it_got(call, message):
    with pytest.raises(ValueError, match=message):
        call()
