"""dyreg_edu.plots.regions: figures of kernels and regions, and the region explorer widget."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from dyreg_edu.kernels import region_kernels  # noqa: E402
from dyreg_edu.plots import regions as rp  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _rectangles(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_draw_regions_places_rectangles_at_c_plus_minus_s():
    fig, ax = plt.subplots()
    regions = torch.tensor([[5.0, 6.0, 2.0, 3.0], [1.0, 1.0, 1.0, 0.5]])
    patches = rp.draw_regions(ax, regions, labels=True)
    assert len(patches) == 2 and _rectangles(ax) == patches
    assert patches[0].get_xy() == (3.0, 3.0)
    assert (patches[0].get_width(), patches[0].get_height()) == (4.0, 6.0)
    assert len(ax.texts) == 2  # node labels
    assert len(ax.lines) == 2  # centres


def test_plot_kernels_one_image_per_kernel():
    regions = torch.tensor([[3.0, 3.0, 2.0, 2.0]] * 5)
    kernels = region_kernels(regions, 8, 8)
    fig = rp.plot_kernels(kernels, ncols=3, regions=regions)
    axes = fig.axes
    assert len(axes) == 6  # 2 rows x 3 columns, the last one hidden
    assert all(len(ax.images) == 1 for ax in axes[:5])
    assert not axes[5].images and not axes[5].axison
    assert all(len(_rectangles(ax)) == 1 for ax in axes[:5])
    assert axes[0].images[0].get_array().shape == (8, 8)


def test_plot_region_shows_map_kernel_and_pooled_value():
    image = torch.zeros(10, 12)
    image[4, 7] = 1.0
    fig = rp.plot_region(image, (7.0, 4.0, 1.0, 1.0))
    ax_map, ax_kernel = fig.axes[:2]
    assert len(ax_map.images) == 1 and len(_rectangles(ax_map)) == 1
    assert ax_kernel.images[0].get_array().shape == (10, 12)
    # size 1 at an integer centre: the kernel is one pixel, the pooled value is that pixel
    assert "1.000" in ax_kernel.get_title()
    fig2 = rp.plot_region(image, (2.0, 2.0, 1.0, 1.0))
    assert "0.000" in fig2.axes[1].get_title()


def test_plot_region_rgb_and_raw():
    image = torch.rand(3, 8, 8)
    fig = rp.plot_region(image, torch.tensor([3.5, 3.5, 2.0, 2.0]), normalize=False)
    assert fig.axes[0].images[0].get_array().shape == (8, 8, 3)
    assert "raw" in fig.axes[1].get_title()


def test_region_explorer_has_four_sliders_that_redraw():
    import ipywidgets as widgets

    image = torch.rand(12, 12)
    explorer = rp.region_explorer(image)
    sliders = [w for w in explorer.children if isinstance(w, widgets.FloatSlider)]
    assert [s.description for s in sliders] == ["cx", "cy", "w (sx)", "h (sy)"]
    first = explorer.result
    assert first is not None and "c=(6.00, 6.00)" in first.axes[0].get_title()
    sliders[0].value = 2.5
    sliders[3].value = 1.25
    second = explorer.result
    assert second is not first
    assert "c=(2.50, 6.00)" in second.axes[0].get_title()
    assert "s=(4.00, 1.25)" in second.axes[0].get_title()


def test_draw_trajectory_path_and_boxes():
    fig, ax = plt.subplots()
    steps = torch.stack([torch.tensor([2.0 + k, 3.0, 2.0, 2.0]) for k in range(10)])
    rp.draw_trajectory(ax, steps, boxes=3)
    path = ax.lines[0]
    assert list(path.get_xdata()) == [2.0 + k for k in range(10)]
    assert len(_rectangles(ax)) == 3


def test_plot_alpha_constraints_curves():
    fig = rp.plot_alpha_constraints(16, 3, anchors=(8.0,))
    ax_size, ax_center = fig.axes
    paper, code = ax_size.lines[:2]
    x = list(paper.get_xdata())
    i0 = min(range(len(x)), key=lambda i: abs(x[i]))  # offset 0
    assert paper.get_ydata()[i0] == pytest.approx(16 / 6)
    assert code.get_ydata()[i0] == pytest.approx(16 / 6 + 2)
    unclamped, clamped = ax_center.lines[:2]
    assert max(unclamped.get_ydata()) > 15.0  # the paper's tanh reaches towards L = 16
    assert max(clamped.get_ydata()) == pytest.approx(15.0)  # the code clamps to L - 1
    assert clamped.get_ydata()[i0] == pytest.approx(8.0)  # zero offset: the anchor
