"""dyreg_edu.regions: the alpha constraints (Eq. 11-14), anchors, and the latents (Eq. 1-4)."""
import math

import pytest
import torch

from dyreg_edu.layers import run_over_time
from dyreg_edu.regions import (SIZE_CELLS, RegionGenerator, center_anchors, grid_anchors, initial_size,
                               node_grid, region_center, region_size, regions_from_offsets)


def test_size_paper_and_code():  # Eq. 12
    offset = torch.tensor([-1.0, 0.0, 0.7])
    torch.testing.assert_close(region_size(offset, 16, 3, plus_one=False), offset.exp() * 16 / 6)
    torch.testing.assert_close(region_size(offset, 16, 3), offset.exp() * (16 / 6 + 1) + 1)
    assert region_size(torch.tensor(-50.0), 16, 3).item() >= 1  # never narrower than bilinear (code)
    assert initial_size(16, SIZE_CELLS) == pytest.approx(16 / 6 + 2)


def test_centre_is_anchor_plus_a_bounded_shift():  # Eq. 13-14
    anchor = torch.tensor(2.67)
    assert region_center(torch.tensor(0.0), anchor, 16).item() == pytest.approx(2.67, abs=1e-5)
    offsets = torch.linspace(-20, 20, 41)
    centers = region_center(offsets, anchor, 16, clamp=False)
    assert centers.min() >= 0 and centers.max() <= 16 and (centers.diff() >= 0).all()
    assert region_center(torch.tensor(20.0), anchor, 16).item() == 15  # the authors' clamp to L - 1


def test_anchors_and_node_grid():
    torch.testing.assert_close(center_anchors(3, 16, 16), torch.full((3, 2), 8.0))
    anchors = grid_anchors((3, 3), 16, 16)
    torch.testing.assert_close(anchors[:3, 0], torch.tensor([8 / 3, 8.0, 40 / 3]))  # row-major
    torch.testing.assert_close(anchors[::3, 1], torch.tensor([8 / 3, 8.0, 40 / 3]))
    assert node_grid(9) == (3, 3) and node_grid(16) == (4, 4) and node_grid(5) == (1, 5)


def test_fixed_size_ignores_the_size_offsets():  # Position-Only and Table 11
    offsets = torch.randn(2, 9, 4)
    regions = regions_from_offsets(offsets, center_anchors(9, 16, 16), 16, 16, fixed_size=2.0)
    assert (regions[..., 2:] == 2.0).all()


def _generator(variant):
    torch.manual_seed(0)
    return RegionGenerator(8, 16, 16, num_nodes=9, region_dim=6, variant=variant)


def test_latents_follow_eq_3():
    x = torch.randn(2, 4, 8, 16, 16)
    dyreg = _generator("dyreg")
    m_hat = dyreg.node_latents(x)
    assert m_hat.shape == (2, 4, 9, 6)
    z = run_over_time(dyreg.gru, dyreg.latent_norm(m_hat))
    torch.testing.assert_close(dyreg.latents(x), dyreg.output_norm(z))
    # a GRU over time: frame t does not see later frames
    x2 = x.clone()
    x2[:, -1] += 1
    torch.testing.assert_close(dyreg.latents(x2)[:, :-1], dyreg.latents(x)[:, :-1])

    no_gru = _generator("no_gru")
    torch.testing.assert_close(no_gru.latents(x), no_gru.output_norm(no_gru.latent_norm(no_gru.node_latents(x))))

    constant = _generator("constant_time")
    z = constant.latents(x)
    torch.testing.assert_close(z, z[:, -1:].expand_as(z))  # the last state for every frame

    static = _generator("static")
    z = static.latents(x)
    torch.testing.assert_close(z[0, 0], static.static_latents)
    torch.testing.assert_close(z, z[:1, :1].expand_as(z))


def test_run_over_time_is_a_gru_per_node():
    torch.manual_seed(1)
    gru = torch.nn.GRU(5, 5, batch_first=True)
    nodes = torch.randn(2, 3, 4, 5)
    out = run_over_time(gru, nodes)
    for b in range(2):
        for n in range(4):
            torch.testing.assert_close(out[b, :, n], gru(nodes[b, :, n][None])[0][0])
    assert math.prod(out.shape) == nodes.numel()


def test_regions_from_boxes_keep_the_centre_and_cover_the_box():
    from dyreg_edu.metrics import box_centers, region_centers
    from dyreg_edu.kernels import region_kernels
    from dyreg_edu.regions import regions_from_boxes

    boxes = torch.tensor([[[4.0, 8.0, 18.0, 22.0], [0.0, 50.0, 7.0, 64.0]]])  # [T=1, D=2, 4] on a 64-px video
    regions = regions_from_boxes(boxes, 64, 16, 16)
    assert regions.shape == (1, 2, 4)
    torch.testing.assert_close(region_centers(regions, 16, 16), box_centers(boxes, 64))
    torch.testing.assert_close(regions[0, 0], torch.tensor([2.25, 3.25, 14 / 8 + 0.5, 14 / 8 + 0.5]))
    torch.testing.assert_close(regions[0, 1, 2:], torch.tensor([7 / 8 + 0.5, 14 / 8 + 0.5]))
    kernel = region_kernels(regions, 16, 16)[0, 0]
    rows, cols = kernel.sum(1).nonzero().flatten(), kernel.sum(0).nonzero().flatten()
    assert rows.tolist() == list(range(2, 6)) and cols.tolist() == list(range(1, 5))  # the cells the box covers
    with pytest.raises(ValueError, match=r"x1, y1, x2, y2"):
        regions_from_boxes(torch.ones(2, 3), 64, 16, 16)
