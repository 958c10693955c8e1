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


def _attention_stack(steps, n, seed=0):
    return torch.stack([_attention(n, seed + s) * (s + 1) for s in range(steps)]).softmax(-1)


def test_plot_attention_step_heat_map_and_arrows():
    a = _attention(4)
    centers = torch.tensor([[2.0, 2.0], [12.0, 2.0], [2.0, 12.0], [12.0, 12.0]])
    image = torch.rand(16, 16)
    fig = pg.plot_attention_step(a, centers, image=image, threshold=0.2, title="hello")
    heat, arrows = fig.axes[:2]
    np.testing.assert_allclose(heat.images[0].get_array(), a.numpy(), rtol=1e-6)
    drawn = [p for p in arrows.patches if isinstance(p, FancyArrowPatch)]
    assert len(drawn) == int(((a > 0.2) & ~torch.eye(4, dtype=torch.bool)).sum())
    assert arrows.get_xlim() == pytest.approx((-0.5, 15.5))
    assert len(fig.axes) == 4  # two colour bars: attention and the map under the arrows
    assert fig._suptitle.get_text() == "hello"
    with pytest.raises(ValueError):
        pg.plot_attention_step(a, centers, axes=[heat])


def test_plot_attention_steps_one_column_per_step_common_scale():
    a = _attention_stack(6, 3)
    fig = pg.plot_attention_steps(a, torch.rand(3, 2) * 10, [0, 2, 5], label="step")
    heat = [ax for ax in fig.axes if ax.get_title().startswith("step")]
    assert [ax.get_title().split(":")[0] for ax in heat] == ["step 0", "step 2", "step 5"]
    assert [ax.images[0].norm.vmax for ax in heat] == pytest.approx([a[[0, 2, 5]].max().item()] * 3)
    with pytest.raises(ValueError):
        pg.plot_attention_steps(a[0], torch.rand(3, 2), [0])


def test_attention_explorer_slider_redraws():
    import ipywidgets as widgets

    a = _attention_stack(5, 3)
    explorer = pg.attention_explorer(a, torch.rand(5, 3, 2) * 10, label="step")
    (slider,) = [w for w in explorer.children if isinstance(w, widgets.IntSlider)]
    assert (slider.description, slider.min, slider.max) == ("step", 0, 4)
    first = explorer.result
    np.testing.assert_allclose(first.axes[0].images[0].get_array(), a[0].numpy(), rtol=1e-6)
    slider.value = 3
    second = explorer.result
    assert second is not first
    np.testing.assert_allclose(second.axes[0].images[0].get_array(), a[3].numpy(), rtol=1e-6)
    assert "step 3" in second._suptitle.get_text()


def _variant_outputs():
    from dyreg_edu.dyreg import DyRegBlock

    x = torch.randn(1, 3, 8, 12, 12, generator=torch.Generator().manual_seed(0))
    outputs, params = {}, {}
    for variant in ("dyreg", "fixed", "semantic"):
        torch.manual_seed(0)
        block = DyRegBlock(8, 12, 12, region_dim=8, variant=variant).eval()
        with torch.no_grad():
            outputs[variant] = block(x)[1]
        params[variant] = sum(p.numel() for p in block.parameters())
    return outputs, params


def test_plot_variant_frames_and_figure():
    from dyreg_edu.plots import variants as pv

    outputs, params = _variant_outputs()
    fig, axes = plt.subplots(1, 2)
    image = pv.plot_variant_frames(axes, outputs["fixed"], [0, 2])
    np.testing.assert_allclose(axes[1].images[0].get_array(), outputs["fixed"]["kernels"][0, 2].sum(0).numpy(), rtol=1e-6)
    assert len([p for p in axes[0].patches if isinstance(p, Rectangle)]) == 9
    assert image.norm.vmin == 0.0
    fig = pv.plot_variant(outputs["semantic"], "semantic", [0, 1], parameters=params["semantic"])
    assert not [p for p in fig.axes[0].patches if isinstance(p, Rectangle)]  # no regions to draw
    title = fig._suptitle.get_text()
    assert f"{params['semantic']:,d} parameters" in title and pv.VARIANT_NOTES["semantic"][0] in title
    assert any(ax.get_label() == "<colorbar>" for ax in fig.axes)
    with pytest.raises(ValueError):
        pv.plot_variant_frames(axes, outputs["dyreg"], [0])


def test_variant_notes_cover_every_variant():
    from dyreg_edu.dyreg import VARIANTS
    from dyreg_edu.plots import variants as pv

    assert set(VARIANTS) <= set(pv.VARIANT_NOTES)


def test_variant_explorer_dropdown_redraws():
    import ipywidgets as widgets

    from dyreg_edu.plots import variants as pv

    outputs, params = _variant_outputs()
    explorer = pv.variant_explorer(outputs, [0, 1], parameters=params)
    (dropdown,) = [w for w in explorer.children if isinstance(w, widgets.Dropdown)]
    assert list(dropdown.options) == ["dyreg", "fixed", "semantic"] and dropdown.value == "dyreg"
    first = explorer.result
    assert first._suptitle.get_text().startswith("dyreg")
    dropdown.value = "fixed"
    second = explorer.result
    assert second is not first and second._suptitle.get_text().startswith("fixed")
    np.testing.assert_allclose(second.axes[0].images[0].get_array(),
                               outputs["fixed"]["kernels"][0, 0].sum(0).numpy(), rtol=1e-6)
    with pytest.raises(ValueError):
        pv.variant_explorer({}, [0])


def test_arrows_without_labels_and_node_legend():
    fig, ax = plt.subplots()
    pg.plot_attention_arrows(ax, torch.rand(4, 2) * 10, _attention(4), labels=False)
    assert not ax.texts
    legend = pg.node_legend(ax, 4)
    assert [t.get_text() for t in legend.get_texts()] == ["0", "1", "2", "3"]
    fig = pg.plot_attention_step(_attention(4), torch.rand(4, 2) * 10, labels=False)
    assert fig.axes[1].get_legend() is not None


def test_plot_kernel_owners_colours_each_pixel_by_its_node():
    from dyreg_edu.kernels import grid_kernels
    from dyreg_edu.plots import variants as pv
    from dyreg_edu.plots.style import node_color

    kernels = grid_kernels(6, 6)          # a 3 x 3 grid of 2 x 2 cells: each pixel belongs to one node
    fig, ax = plt.subplots()
    image = pv.plot_kernel_owners(ax, kernels, regions=torch.tensor([[0.5, 0.5, 1.0, 1.0]] * 9))
    np.testing.assert_allclose(image[0, 0], node_color(0)[:3])
    np.testing.assert_allclose(image[5, 5], node_color(8)[:3])
    assert len([p for p in ax.patches if isinstance(p, Rectangle)]) == 9
    assert ax.get_legend() is not None
    with pytest.raises(ValueError):
        pv.plot_kernel_owners(ax, kernels[0])
