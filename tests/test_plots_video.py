"""dyreg_edu.plots.video: frame strips, animations, trajectories and tables of clips with boxes."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.animation import FuncAnimation  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from dyreg_edu.plots import video as vp  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _clip(T=4, D=3, S=32, seed=0):
    """A random uint8 clip [T, S, S] and boxes [T, D, 4] moving one pixel right per frame."""
    g = torch.Generator().manual_seed(seed)
    video = torch.randint(0, 256, (T, S, S), dtype=torch.uint8, generator=g)
    start = torch.tensor([[2.0, 3.0], [10.5, 4.0], [5.0, 15.5]])[:D]
    tl = start[None] + torch.arange(T, dtype=torch.float32)[:, None, None] * torch.tensor([1.0, 0.0])
    boxes = torch.cat([tl, tl + 7.0], -1)
    return video, boxes


def _rects(ax):
    return [p for p in ax.patches if isinstance(p, Rectangle)]


def test_draw_boxes_half_pixel_shift_and_colors():
    fig, ax = plt.subplots()
    boxes = torch.tensor([[2.0, 3.0, 16.0, 17.0], [10.5, 4.0, 24.5, 18.0]])
    rects = vp.draw_boxes(ax, boxes, sync=torch.tensor([True, False]), numbers=True)
    assert _rects(ax) == rects and len(ax.texts) == 2
    assert rects[0].get_xy() == (1.5, 2.5)
    assert (rects[0].get_width(), rects[0].get_height()) == (14.0, 14.0)
    assert matplotlib.colors.same_color(rects[0].get_edgecolor(), vp.SYNC_COLOR)
    assert matplotlib.colors.same_color(rects[1].get_edgecolor(), vp.OTHER_COLOR)


def test_draw_boxes_rejects_bad_shapes():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match=r"\[D, 4\]"):
        vp.draw_boxes(ax, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="sync"):
        vp.draw_boxes(ax, torch.zeros(2, 4), sync=torch.tensor([True]))


def test_show_clip_frames_one_axes_per_frame_with_boxes():
    video, boxes = _clip(T=5)
    fig = vp.show_clip_frames(video, boxes, torch.tensor([True, True, False]), title="clip")
    axes = fig.axes
    assert len(axes) == 5
    assert all(len(_rects(ax)) == 3 for ax in axes)
    # frame 3: the first box has moved 3 pixels right
    assert _rects(axes[3])[0].get_xy() == (2.0 + 3 - 0.5, 3.0 - 0.5)
    np.testing.assert_array_equal(axes[2].images[0].get_array(), video[2].numpy())


def test_show_clip_frames_subset_and_given_axes():
    video, boxes = _clip(T=6)
    fig, axes = plt.subplots(1, 2)
    out = vp.show_clip_frames(video, boxes, frames=[0, 5], axes=axes)
    assert out is fig and [a.get_title() for a in axes] == ["t = 0", "t = 5"]
    with pytest.raises(ValueError, match="axes"):
        vp.show_clip_frames(video, boxes, frames=[0, 1, 2], axes=axes)
    with pytest.raises(ValueError, match="boxes"):
        vp.show_clip_frames(video, boxes[:3])


def test_animate_clips_updates_images_and_boxes():
    v1, b1 = _clip(T=4, seed=1)
    v2, b2 = _clip(T=4, seed=2)
    videos, boxes = torch.stack([v1, v2]), torch.stack([b1, b2])
    sync = torch.tensor([[True, True, False], [False, False, False]])
    anim = vp.animate_clips(videos, boxes, sync, titles=["a", "b"], dpi=40)
    assert isinstance(anim, FuncAnimation)
    fig = anim._fig
    axes = fig.axes
    assert [a.get_title() for a in axes] == ["a", "b"]
    anim._func(2)  # draw frame 2
    np.testing.assert_array_equal(axes[1].images[0].get_array(), v2[2].numpy())
    assert _rects(axes[0])[0].get_xy() == (2.0 + 2 - 0.5, 3.0 - 0.5)
    html = anim.to_jshtml()
    assert "<img" in html or "data:image" in html


def test_animate_clips_single_clip_without_boxes_and_bad_titles():
    video, _ = _clip(T=3)
    anim = vp.animate_clips(video, dpi=30)
    assert len(anim._fig.axes) == 1 and not _rects(anim._fig.axes[0])
    assert "frame" in anim.to_jshtml()
    with pytest.raises(ValueError, match="titles"):
        vp.animate_clips(video, titles=["a", "b"])
    with pytest.raises(ValueError, match="boxes"):
        vp.animate_clips(torch.stack([video, video]), boxes=torch.zeros(3, 3, 2, 4))


def test_box_centers_and_trajectories():
    _, boxes = _clip(T=4)
    c = vp.box_centers(boxes)
    assert c.shape == (4, 3, 2)
    np.testing.assert_allclose(c[0, 0], [5.5, 6.5])
    ax = vp.plot_trajectories(boxes, torch.tensor([True, False, True]), digits=[1, 2, 3], size=32)
    lines = ax.get_lines()
    assert len(lines) == 3 * 3  # path, start and end marker per digit
    np.testing.assert_allclose(lines[0].get_xdata(), c[:, 0, 0] - 0.5)
    assert ax.get_ylim()[0] > ax.get_ylim()[1]  # image orientation: y grows downwards


def test_plot_displacements_values():
    _, boxes = _clip(T=4)
    fig = vp.plot_displacements(boxes, torch.tensor([True, True, False]))
    ax_x, ax_y = fig.axes[:2]
    assert len(ax_x.get_lines()) == 3 + 1  # one per digit and the zero line
    np.testing.assert_allclose(ax_x.get_lines()[0].get_ydata(), [1.0, 1.0, 1.0])
    np.testing.assert_allclose(ax_y.get_lines()[2].get_ydata(), [0.0, 0.0, 0.0])


def test_plot_pair_table_blank_negative_cells_and_highlight():
    table = np.array([[-1, 0], [1, 2]])
    ax = vp.plot_pair_table(table, highlight=[(1, 0)], title="t")
    assert sorted(t.get_text() for t in ax.texts) == ["0", "1", "2"]
    assert len(_rects(ax)) == 1 and _rects(ax)[0].get_xy() == (-0.5, 0.5)
    with pytest.raises(ValueError):
        vp.plot_pair_table(np.zeros(3))
    fig, ax = plt.subplots()
    vp.plot_pair_table(table, ax=ax, colorbar="label")
    assert len(fig.axes) == 2 and fig.axes[1].get_ylabel() == "label"


def test_regions_to_video_map_pixel_centres():
    regions = torch.tensor([[0.0, 1.0, 0.5, 1.0], [15.0, 15.0, 2.0, 2.0]])
    out = vp.regions_to_video(regions, 4.0)
    # map pixel 0 covers video [0, 4): its centre is drawn at 1.5; half-extents scale by 4
    np.testing.assert_allclose(out[0], [1.5, 5.5, 2.0, 4.0])
    np.testing.assert_allclose(out[1], [61.5, 61.5, 8.0, 8.0])
    np.testing.assert_allclose(vp.regions_to_video(regions, (2.0, 4.0))[0], [0.5, 5.5, 1.0, 4.0])
    with pytest.raises(ValueError, match="regions"):
        vp.regions_to_video(torch.zeros(3, 3), 1.0)


def test_draw_frame_regions_one_colour_per_node():
    from dyreg_edu.plots.style import node_color

    video, boxes = _clip(T=2, D=2)
    regions = torch.tensor([[2.0, 2.0, 1.0, 1.0], [5.0, 6.0, 2.0, 1.0], [1.0, 7.0, 0.5, 0.5]])
    fig, ax = plt.subplots()
    region_rects, box_rects = vp.draw_frame_regions(ax, video[0], regions, boxes[0], torch.tensor([True, False]),
                                                    stride=4.0)
    assert len(region_rects) == 3 and len(box_rects) == 2
    for i, rect in enumerate(region_rects):
        assert matplotlib.colors.same_color(rect.get_edgecolor(), node_color(i))
    assert region_rects[1].get_xy() == pytest.approx((21.5 - 8.0, 25.5 - 4.0))
    assert matplotlib.colors.same_color(box_rects[0].get_edgecolor(), vp.SYNC_COLOR)
    assert ax.get_xlim() == (-0.5, 31.5)


def test_region_player_sliders_redraw():
    import ipywidgets as widgets

    v1, b1 = _clip(T=3, D=2, seed=1)
    v2, b2 = _clip(T=3, D=2, seed=2)
    videos, boxes = torch.stack([v1, v2]), torch.stack([b1, b2])
    regions = torch.rand(2, 3, 4, 4) * 7
    player = vp.region_player(videos, regions, boxes, torch.tensor([[True, True], [False, False]]),
                              stride=4.0, titles=["first", "second"])
    sliders = {w.description: w for w in player.children if isinstance(w, widgets.IntSlider)}
    assert set(sliders) == {"video", "frame"} and sliders["frame"].max == 2 and sliders["video"].max == 1
    first = player.result
    assert "first, frame 0 of 2" in first.axes[0].get_title()
    sliders["frame"].value = 2
    sliders["video"].value = 1
    second = player.result
    assert second is not first and "second, frame 2 of 2" in second.axes[0].get_title()
    ax = second.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), v2[2].numpy())
    assert len(_rects(ax)) == 4 + 2
    with pytest.raises(ValueError, match="regions"):
        vp.region_player(videos, regions[:, :2], boxes)


def test_variant_player_switches_variant_video_and_frame():
    import ipywidgets as widgets

    v1, b1 = _clip(T=3, D=2, seed=1)
    v2, b2 = _clip(T=3, D=2, seed=2)
    videos, boxes = torch.stack([v1, v2]), torch.stack([b1, b2])
    runs = {"fixed": torch.rand(2, 3, 9, 4) * 7, "dyreg": torch.rand(2, 3, 9, 4) * 7}
    player = vp.variant_player(runs, videos, boxes, stride=4.0)
    controls = {w.description: w for w in player.children if isinstance(w, (widgets.IntSlider, widgets.Dropdown))}
    assert set(controls) == {"variant", "video", "frame"} and list(controls["variant"].options) == ["fixed", "dyreg"]
    assert "fixed: video 0, frame 0 of 2" in player.result.axes[0].get_title()
    controls["variant"].value = "dyreg"
    controls["frame"].value = 1
    assert "dyreg: video 0, frame 1 of 2" in player.result.axes[0].get_title()
    with pytest.raises(ValueError, match="'dyreg' must be"):
        vp.variant_player({"dyreg": runs["dyreg"][:, :2]}, videos)
    with pytest.raises(ValueError, match="empty"):
        vp.variant_player({}, videos)


def test_clip_player_steps_through_frames_without_regions():
    import ipywidgets as widgets

    v1, b1 = _clip(T=3, D=2, seed=1)
    player = vp.clip_player(v1[None], b1[None], titles=["guess"])
    sliders = {w.description: w for w in player.children if isinstance(w, widgets.IntSlider)}
    assert set(sliders) == {"video", "frame"} and sliders["frame"].max == 2
    sliders["frame"].value = 2
    ax = player.result.axes[0]
    assert "guess, frame 2 of 2" in ax.get_title() and ax.get_legend() is None
    np.testing.assert_array_equal(ax.images[0].get_array(), v1[2].numpy())
    assert len(_rects(ax)) == 2  # the two boxes, no regions
