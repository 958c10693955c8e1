"""The sliders that work without a kernel (dyreg_edu.plots.static_sliders): what their HTML carries
is what the library computes, every setting differs, bad arguments are refused; and, in headless
Chromium, moving a slider redraws the figure (the same check tests/test_book.py makes on the book)."""
from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from dyreg_edu.kernels import pool_nodes, region_kernels, tent
from dyreg_edu.plots import static_sliders as ss
from dyreg_edu.regions import region_center, region_size

REPO_ROOT = Path(__file__).resolve().parents[1]
H = W = 8


def spec_of(widget) -> dict:
    found = re.findall(r'<script type="application/json" class="dyreg-data">(.*?)</script>', widget.html, re.S)
    assert len(found) == 1
    return json.loads(found[0].replace("<\\/", "</"))


def unpack(p) -> np.ndarray:
    dtype = {"u8": np.uint8, "f16": "<f2", "f32": "<f4"}[p["dtype"]]
    return np.frombuffer(base64.b64decode(p["b64"]), dtype=dtype).astype(np.float64).reshape(p["shape"]) * p["scale"]


def sliders_of(html: str) -> dict:
    return {name: int(top) + 1 for name, top in re.findall(r'data-name="(\w+)" min="0" max="(\d+)"', html)}


@pytest.fixture(scope="module")
def blobs():
    yy, xx = torch.meshgrid(torch.arange(H, dtype=torch.float32), torch.arange(W, dtype=torch.float32), indexing="ij")
    blob = lambda x, y: torch.exp(-((xx - x) ** 2 + (yy - y) ** 2) / 4)  # noqa: E731
    return torch.stack([blob(6, 2), torch.zeros(H, W), blob(1, 5)])


@pytest.fixture(scope="module")
def region_widget(blobs):
    return ss.static_region_explorer(blobs, target=[1.0, 0.0, 0.0], sizes=(0.5, 1.0, 2.0, 3.0))


def test_region_explorer_carries_the_library_values(region_widget, blobs):
    w = region_widget
    assert sliders_of(w.html) == {"cx": W, "cy": H, "w": 4, "h": 4}
    assert w.num_settings == W * H * 4 * 4
    spec = spec_of(w)
    d = spec["data"]
    pooled, grad, loss = unpack(d["pooled"]), unpack(d["grad"]), unpack(d["loss"])
    assert pooled.shape == (W, H, 4, 4, 3) and grad.shape == (W, H, 4, 4, 4) and loss.shape == (W, H, 4, 4)
    centers = spec["sliders"][0]["values"]
    sizes = spec["sliders"][2]["values"]
    for i, j, m, n in [(0, 0, 0, 0), (6, 2, 1, 1), (3, 5, 3, 2), (7, 1, 2, 0)]:
        region = torch.tensor([[centers[i], centers[j], sizes[m], sizes[n]]], requires_grad=True)
        v = pool_nodes(blobs, region_kernels(region, H, W))[0]
        L = ((v - torch.tensor([1.0, 0, 0])) ** 2).sum()
        L.backward()
        np.testing.assert_allclose(pooled[i, j, m, n], v.detach().numpy(), rtol=2e-3, atol=1e-4)
        np.testing.assert_allclose(loss[i, j, m, n], L.item(), rtol=2e-3, atol=1e-4)
        np.testing.assert_allclose(grad[i, j, m, n], region.grad[0].numpy(), rtol=2e-3, atol=1e-4)
    # the page draws the kernel as the outer product of these tents (Eq. 5)
    tx = unpack(d["tx"])
    np.testing.assert_allclose(tx[3, 2], tent(float(centers[3]), float(sizes[2]), W).numpy(), rtol=1e-6)
    kernel = np.outer(unpack(d["ty"])[5, 1], tx[3, 2])
    np.testing.assert_allclose(kernel / kernel.sum(), region_kernels(
        torch.tensor([[centers[3], centers[5], sizes[2], sizes[1]]]), H, W)[0].numpy(), atol=1e-6)


def test_region_explorer_settings_differ(region_widget):
    d = spec_of(region_widget)["data"]
    # sizes 0.5 and 1 both pool the one pixel under an integer centre (Eq. 6); from size 1 up,
    # nearly every region pools a value of its own, and most have a gradient of their own
    pooled = unpack(d["pooled"])[:, :, 1:, 1:].reshape(-1, 3)
    grad = unpack(d["grad"])[:, :, 1:, 1:].reshape(-1, 4)
    assert len(np.unique(pooled.round(5), axis=0)) > 0.9 * len(pooled)
    assert len(np.unique(grad.round(5), axis=0)) > 0.8 * len(grad)  # zero far from both blobs
    assert np.array_equal(unpack(d["pooled"])[:, :, 0, 0], unpack(d["pooled"])[:, :, 1, 1])


def test_alpha_explorer_carries_the_library_values():
    w = ss.static_alpha_explorer(raw_values=(-1.0, 0.0, 2.0), gammas=(0.0, 0.5, 2.0))
    assert sliders_of(w.html) == {"x": 3, "y": 3, "w": 3, "h": 3, "gamma": 3, "form": 2}
    d = spec_of(w)["data"]
    for f, code in enumerate((True, False)):
        cx, sx = unpack(d["cx"][f]), unpack(d["sx"][f])  # [raw, gamma]
        assert cx.shape == (3, 3)
        np.testing.assert_allclose(cx[2, 1], region_center(torch.tensor(1.0), torch.tensor(8.0), 16, clamp=code).item(),
                                   rtol=1e-6)
        np.testing.assert_allclose(sx[0, 2], region_size(torch.tensor(-2.0), 16, 3, plus_one=code).item(), rtol=1e-6)
        assert np.allclose(cx[:, 0], 8.0)  # gamma = 0: every raw output gives the anchor
        assert len(np.unique(cx[:, 1:].round(5))) == 5 and len(np.unique(sx[:, 1:].round(5))) == 5  # raw 0: twice
        # the kernel's factor along x for (raw x = 2, raw w = -1, gamma = 2): a tent over its sum
        # (the paper's form puts the centre at 15.99 with a half-extent 0.36: no pixel, an empty kernel)
        t = tent(cx[2, 2], sx[0, 2], 16).numpy()
        factor = unpack(d["tx"][f])[2, 0, 2] / 255 * unpack(d["txmax"][f])[2, 0, 2]
        expected = t / t.sum() if t.sum() > 0 else t
        assert (t.sum() > 0) == code
        np.testing.assert_allclose(factor, expected, atol=3e-3 * max(expected.max(), 1e-9))
    assert not np.allclose(unpack(d["cx"][0]), unpack(d["cx"][1]))  # the two forms differ


def test_frame_player_frames_differ():
    torch.manual_seed(0)
    videos = (torch.rand(2, 3, 16, 16) * 255).to(torch.uint8)
    regions = torch.rand(2, 3, 4, 4) * 3 + 1
    boxes = torch.rand(2, 3, 2, 4) * 8
    w = ss.static_frame_player(videos, regions, boxes, torch.tensor([[True, False], [False, False]]), stride=4)
    assert sliders_of(w.html) == {"video": 2, "frame": 3}
    d = spec_of(w)["data"]
    frames = [f for row in d["frames"] for f in row]
    assert len(frames) == 6 and len(set(frames)) == 6 and all(f.startswith("data:image/png;base64,") for f in frames)
    assert unpack(d["regions"]).shape == (2, 3, 4, 4) and d["boxcolors"][0] == ["#00ff00", "#ff0000"]


@pytest.mark.slow
def test_region_player_on_a_committed_checkpoint():
    path = REPO_ROOT / "checkpoints" / "ladder" / "where_dyreg.pt"
    if not path.exists():
        pytest.skip(f"{path} is not committed")
    w = ss.static_region_player(path, videos=(0, 3))
    d = spec_of(w)["data"]
    assert sliders_of(w.html)["video"] == 2 and len(d["titles"]) == 2 and "validation video 3" in d["titles"][1]
    assert unpack(d["regions"]).shape[-1] == 4


def test_widgets_have_their_own_ids(blobs):
    a, b = ss.static_alpha_explorer(raw_values=(0.0, 1.0)), ss.static_alpha_explorer(raw_values=(0.0, 1.0))
    ids = [re.search(r'class="dyreg-sliders" id="([\w-]+)"', w.html).group(1) for w in (a, b)]
    assert ids[0] != ids[1]
    assert f'getElementById("{ids[0]}")' in a.html and "http" not in a.html.lower()  # nothing fetched
    assert a._repr_html_() == a.html and "settings" in repr(a)


@pytest.mark.parametrize("call, message", [
    (lambda img: ss.static_region_explorer(img, sizes=(0.0, 1.0)), "sizes must be positive"),
    (lambda img: ss.static_region_explorer(img, target=[1.0, 0.0]), "target has 2 values"),
    (lambda img: ss.static_region_explorer(img[None]), "image must be"),
    (lambda img: ss.static_region_explorer(img, max_bytes=10_000), "max_bytes"),
    (lambda img: ss.static_alpha_explorer(gammas=()), "at least one value"),
    (lambda img: ss.static_frame_player(torch.zeros(2, 3, 8, 8), torch.zeros(2, 4, 5, 4)), "regions must be"),
    (lambda img: ss.static_frame_player(torch.zeros(2, 3, 8, 8), titles=["one"]), "1 titles for 2 videos"),
])
def test_bad_arguments_say_what_is_wrong(blobs, call, message):
    with pytest.raises(ValueError, match=message):
        call(blobs)


@pytest.mark.browser
def test_sliders_move_in_chromium(tmp_path, region_widget):
    """The three kinds of widget, on one page opened from a file: each slider redraws its figure."""
    from test_book import CHROMIUM, CHROMIUM_ARGS, check_sliders_move

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} not found")
    playwright = pytest.importorskip("playwright.sync_api")
    torch.manual_seed(0)
    player = ss.static_frame_player((torch.rand(2, 3, 16, 16) * 255).to(torch.uint8), torch.rand(2, 3, 2, 4) + 1,
                                    stride=4)
    widgets = [region_widget, ss.static_alpha_explorer(), player]
    page_file = tmp_path / "widgets.html"
    page_file.write_text("<!doctype html><html><body>" + "".join(w.html for w in widgets) + "</body></html>")
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(page_file.as_uri(), wait_until="load")
        moved = [check_sliders_move(page, "widgets.html", i) for i in range(len(widgets))]
        browser.close()
    assert moved == [["cx", "cy", "w", "h"], ["x", "y", "w", "h", "gamma", "form"], ["video", "frame"]]
    assert not errors, errors
