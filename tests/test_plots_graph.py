"""The graph figures draw what they are given (dyreg_edu.plots.graph)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402

from dyreg_edu.plots import graph as pg  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _attention(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, n, generator=g).softmax(-1)


def test_plot_attention_shows_the_matrix():
    a = _attention(5)
    image = pg.plot_attention(a, annotate=True)
    np.testing.assert_allclose(image.get_array(), a.numpy())
    ax = image.axes
    assert len(ax.texts) == 25  # one value per cell
    assert ax.get_xlabel() == "sender j" and ax.get_ylabel() == "receiver i"


def test_plot_attention_accepts_grad_tensors_and_large_n():
    a = _attention(16).requires_grad_()
    image = pg.plot_attention(a)
    assert image.get_array().shape == (16, 16)
    assert not image.axes.texts  # no annotation above 9 nodes by default


@pytest.mark.parametrize("shape", [(3, 4), (2, 3, 3), (5,)])
def test_plot_attention_rejects_non_square(shape):
    with pytest.raises(ValueError, match="square"):
        pg.plot_attention(torch.rand(shape))


def test_plot_attention_iterations_one_panel_per_iteration():
    a = torch.stack([_attention(9, s) for s in range(3)])
    fig = pg.plot_attention_iterations(a)
    heatmaps = [ax for ax in fig.axes if ax.get_title().startswith("iteration")]
    assert len(heatmaps) == 3
    for k, ax in enumerate(heatmaps):
        np.testing.assert_allclose(ax.images[0].get_array(), a[k].numpy())
        assert ax.images[0].norm.vmax == pytest.approx(a.max().item())  # common scale
    with pytest.raises(ValueError):
        pg.plot_attention_iterations(a[0])


def test_arrows_follow_the_threshold_and_direction():
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    a = torch.tensor([[0.2, 0.7, 0.1],
                      [0.1, 0.1, 0.8],
                      [0.3, 0.3, 0.4]])
    fig, ax = plt.subplots()
    pairs = pg.plot_attention_arrows(ax, centers, a, threshold=0.25)
    assert pairs == [(1, 2), (0, 1), (2, 0), (2, 1)]  # strongest first, no self loops
    arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch)]
    assert len(arrows) == 4
    # the arrow for a[0, 1] goes from sender 1 to receiver 0, width proportional to the weight
    widths = sorted(p.get_linewidth() for p in arrows)
    assert widths[-1] == pytest.approx(6.0 * 0.8)


def test_arrows_default_threshold_is_uniform_share():
    n = 4
    uniform = torch.full((n, n), 1 / n)
    fig, ax = plt.subplots()
    assert pg.plot_attention_arrows(ax, torch.rand(n, 2) * 10, uniform) == []


def test_arrows_reject_mismatched_shapes():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="centers"):
        pg.plot_attention_arrows(ax, torch.rand(3, 3), _attention(3))
    with pytest.raises(ValueError, match="attention"):
        pg.plot_attention_arrows(ax, torch.rand(3, 2), _attention(4))


def test_plot_regions_draws_each_box_where_it_is():
    regions = torch.tensor([[5.0, 6.0, 2.0, 3.0], [10.0, 3.0, 1.0, 1.5]])  # (cx, cy, sx, sy)
    kernels = torch.rand(2, 16, 20)
    fig, ax = plt.subplots()
    rects = pg.plot_regions(ax, regions, kernels=kernels)
    assert all(isinstance(r, Rectangle) for r in rects) and len(rects) == 2
    assert rects[0].get_xy() == pytest.approx((3.0, 3.0))
    assert (rects[0].get_width(), rects[0].get_height()) == pytest.approx((4.0, 6.0))
    np.testing.assert_allclose(ax.images[0].get_array(), kernels.sum(0).numpy(), rtol=1e-6)
    assert ax.get_xlim() == pytest.approx((-0.5, 19.5))
    with pytest.raises(ValueError):
        pg.plot_regions(ax, regions[:, :3])
    with pytest.raises(ValueError):
        pg.plot_regions(ax, regions, kernels=torch.rand(3, 16, 20))


def test_block_diagram_has_every_step():
    fig = pg.plot_block_diagram()
    texts = [t.get_text() for t in fig.axes[0].texts]
    for name, shape in pg.BLOCK_STEPS:
        assert name in texts and shape in texts
    assert "identity (residual)" in texts and "same kernels K" in texts
