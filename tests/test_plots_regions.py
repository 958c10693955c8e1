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
    assert len(axes) == 7  # 2 rows x 3 columns, the last one hidden, and the shared colour bar
    assert axes[6].get_ylabel() == "kernel weight"
    assert len(rp.plot_kernels(kernels, shared_scale=False).axes) == 10  # a colour bar per panel
    assert len(rp.plot_kernels(kernels, colorbar=False).axes) == 5
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


def _two_blobs():
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    a = torch.exp(-((xx - 12) ** 2 + (yy - 4) ** 2) / 8)
    b = torch.exp(-((xx - 3) ** 2 + (yy - 11) ** 2) / 8)
    return torch.stack([a, b])


def test_region_loss_gradient_points_to_the_target_blob():
    image = _two_blobs()
    loss, grad, pooled = rp.region_loss_gradient(image, (8.0, 8.0, 4.667, 4.667), (1.0, 0.0))
    assert pooled.shape == (2,) and loss == pytest.approx(((pooled - torch.tensor([1.0, 0.0])) ** 2).sum().item())
    assert grad[0] < 0 < grad[1]  # descent (-grad) moves right (+x) and up (-y): towards blob A at (12, 4)
    _, grad_b, _ = rp.region_loss_gradient(image, (8.0, 8.0, 4.667, 4.667), (0.0, 1.0))
    assert grad_b[0] > 0 > grad_b[1]  # towards blob B at (3, 11)
    with pytest.raises(ValueError, match="channels"):
        rp.region_loss_gradient(image, (8.0, 8.0, 2.0, 2.0), (1.0, 0.0, 0.0))


def test_plot_region_with_target_draws_the_descent_arrow():
    image = _two_blobs()
    fig = rp.plot_region(image, (8.0, 8.0, 4.667, 4.667), target=(1.0, 0.0))
    ax_map = fig.axes[0]
    (arrow,) = [t for t in ax_map.texts if getattr(t, "arrow_patch", None) is not None]
    (x0, y0), (x1, y1) = arrow.xyann, arrow.xy
    assert (x0, y0) == pytest.approx((8.0, 8.0)) and x1 > x0 and y1 < y0
    assert "dL/ds" in ax_map.get_xlabel() and "L = " in ax_map.get_xlabel()
    assert len(fig.axes) == 3  # map, kernel, the kernel's colour bar
    plain = rp.plot_region(image, (8.0, 8.0, 4.667, 4.667))
    assert not plain.axes[0].texts and plain.axes[0].get_xlabel() == "x (column)"


def test_no_arrow_where_the_centre_gradient_is_zero():
    fig, ax = plt.subplots()
    assert not rp.draw_descent_arrow(ax, (3.0, 3.0, 1.0, 1.0), torch.zeros(4))
    assert rp.draw_descent_arrow(ax, (3.0, 3.0, 1.0, 1.0), torch.tensor([1.0, 0.0, 0.0, 0.0]))


def test_plot_region_gradients_one_panel_per_region():
    regions = torch.tensor([[8.0, 8.0, 4.667, 4.667], [4.0, 10.0, 3.0, 3.0]])
    fig = rp.plot_region_gradients(_two_blobs(), regions, (0.0, 1.0))
    assert len(fig.axes) == 2
    assert all(len(_rectangles(ax)) == 1 and "dL/ds" in ax.get_xlabel() for ax in fig.axes)


def test_region_explorer_with_target_redraws_the_arrow():
    import ipywidgets as widgets

    explorer = rp.region_explorer(_two_blobs(), target=(1.0, 0.0))
    sliders = [w for w in explorer.children if isinstance(w, widgets.FloatSlider)]
    first = explorer.result
    assert "dL/ds" in first.axes[0].get_xlabel()
    sliders[0].value = 3.0
    sliders[1].value = 11.0
    second = explorer.result
    assert second is not first and first.axes[0].get_xlabel() != second.axes[0].get_xlabel()


def test_plot_alpha_point_marks_the_current_offsets():
    fig = rp.plot_alpha_point((1.0, -0.5, 0.5, -0.5), gamma=0.0, length=16)
    ax_center, ax_size, ax_map = fig.axes[:3]
    # gamma = 0: every offset is zero, the region is the anchor with the code's initial size
    assert "c=(8.00, 8.00), s=(4.67, 4.67)" in ax_map.get_title()
    fig = rp.plot_alpha_point((1.0, -0.5, 0.5, -0.5), gamma=2.0, length=16, form="paper")
    ax_center, ax_size, ax_map = fig.axes[:3]
    marker_x = ax_center.lines[1]
    assert list(marker_x.get_xdata()) == pytest.approx([2.0])  # gamma * (W_o z)_x
    assert marker_x.get_ydata()[0] == pytest.approx(8 * (1 + torch.tanh(torch.tensor(2.0)).item()), rel=1e-5)
    marker_w = ax_size.lines[1]
    assert marker_w.get_ydata()[0] == pytest.approx(torch.e * 16 / 6, rel=1e-5)  # paper: e^1 * L/6
    assert len(_rectangles(ax_map)) >= 1 and ax_map.images
    assert any(ax.get_ylabel() == "kernel weight" for ax in fig.axes)  # colour bar
    with pytest.raises(ValueError, match="form"):
        rp.plot_alpha_point((0, 0, 0, 0), form="both")


def test_alpha_explorer_redraws_on_slider_and_form():
    import ipywidgets as widgets

    explorer = rp.alpha_explorer()
    sliders = {w.description: w for w in explorer.children if isinstance(w, widgets.FloatSlider)}
    assert set(sliders) == {"(W_o z)_x", "(W_o z)_y", "(W_o z)_w", "(W_o z)_h", "gamma"}
    first = explorer.result
    sliders["gamma"].value = 0.0
    second = explorer.result
    assert second is not first and "c=(8.00, 8.00), s=(4.67, 4.67)" in second.axes[2].get_title()
    (form,) = [w for w in explorer.children if isinstance(w, widgets.ToggleButtons)]
    form.value = "paper"
    assert "paper: c=(8.00, 8.00), s=(2.67, 2.67)" in explorer.result.axes[2].get_title()
