"""Browser check of the built book (_build/html) in headless Debian Chromium.

For every page in _toc.yml: the page loads from a local server with no failed local
request, every <img> decoded (naturalWidth > 0), maths was typeset by the offline
MathJax (mjx-container elements, no MathJax error, no raw $$ or \\( left in the text),
and a screenshot is not blank.

Run after the build (`make test` does both). Standalone, it skips when _build/html is
absent; with DYREG_REQUIRE_BROWSER=1 (set by `make test`) a missing build or a missing
Chromium is a failure, not a skip.
"""
from __future__ import annotations

import functools
import http.server
import io
import os
import shutil
import tempfile
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tools.notebooks import toc_documents

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[1]
HTML = REPO_ROOT / "_build" / "html"
REQUIRE = os.environ.get("DYREG_REQUIRE_BROWSER") == "1"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
MIN_PIXEL_STD = 8.0  # grey levels; a blank or single-colour page is well below


def _unavailable(reason: str):
    if REQUIRE:
        pytest.fail(reason + " (DYREG_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    if not (HTML / "index.html").exists():
        _unavailable(f"{HTML} not built; run `make book` first")
    handler = functools.partial(_QuietHandler, directory=str(HTML))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        _unavailable(f"{CHROMIUM} not found; install Debian's chromium (make deps-browser)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (requirements-dev.txt)")
    profile = tempfile.mkdtemp(prefix="dyreg-chromium-")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900})
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


PAGES = toc_documents(REPO_ROOT)

# Visible text outside code, with typeset maths removed: raw TeX delimiters left in it
# mean MathJax did not run on them.
_JS_RAW_TEX = """() => {
  const body = document.querySelector('main') || document.body;
  const clone = body.cloneNode(true);
  clone.querySelectorAll('pre, code, script, style, mjx-container, .highlight, textarea')
       .forEach(e => e.remove());
  const text = clone.innerText || clone.textContent;
  return ['$$', '\\\\(', '\\\\)', '\\\\[', '\\\\begin{'].filter(d => text.includes(d));
}"""


def test_toc_has_pages():
    assert PAGES and PAGES[0] == "book/intro"


@pytest.mark.parametrize("doc", PAGES)
def test_page_renders(doc, server, browser):
    page = browser.new_page()
    failed = []
    origin = urlparse(server).netloc

    def route(r):  # the network is closed: nothing outside the local server is fetched
        if urlparse(r.request.url).netloc == origin or r.request.url.startswith("data:"):
            r.continue_()
        else:
            r.abort()

    page.route("**/*", route)
    page.on("response", lambda resp: failed.append(f"{resp.status} {resp.url}")
            if resp.status >= 400 and urlparse(resp.url).netloc == origin else None)
    try:
        response = page.goto(f"{server}/{doc}.html", wait_until="load", timeout=60_000)
        assert response is not None and response.ok, f"{doc}.html: HTTP {response and response.status}"

        # maths: wait for MathJax to finish typesetting, if the page has any
        n_math = page.evaluate("document.querySelectorAll('.math, span.math, div.math').length")
        if n_math:
            try:
                page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                                       timeout=20_000)
            except Exception:  # playwright TimeoutError
                pytest.fail(f"{doc}: the page has {n_math} maths elements but MathJax never loaded "
                            "(is _static/mathjax there? sphinx-mathjax-offline in _config.yml?)")
            page.evaluate("() => MathJax.startup.promise")
            n_mjx = page.evaluate("document.querySelectorAll('mjx-container').length")
            assert n_mjx >= n_math, f"{doc}: {n_math} maths elements but {n_mjx} typeset by MathJax"
            errors = page.evaluate("Array.from(document.querySelectorAll('mjx-merror'))"
                                   ".map(e => e.getAttribute('data-mjx-error') || e.textContent)")
            assert not errors, f"{doc}: MathJax errors {errors}"
        raw = page.evaluate(_JS_RAW_TEX)
        assert not raw, f"{doc}: raw TeX delimiters {raw} left in the page text (maths not rendered)"

        # images: every <img> from the book decoded (external ones cannot load here)
        page.wait_for_load_state("networkidle", timeout=30_000)
        images = page.evaluate("""() => Array.from(document.images).map(i => ({
            src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0}))""")
        local = [i for i in images if urlparse(i["src"]).netloc in (origin, "")]
        broken = [i["src"] for i in local if not i["ok"]]
        assert not broken, f"{doc}: broken images {broken}"
        assert not failed, f"{doc}: failed local requests {failed}"

        # not blank
        import numpy as np
        from PIL import Image
        shot = Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("L")
        std = float(np.asarray(shot, dtype=np.float32).std())
        assert std > MIN_PIXEL_STD, f"{doc}: screenshot looks blank (pixel std {std:.1f})"
    finally:
        page.close()


# ---------------------------------------------------------------------------
# The static sliders (dyreg_edu.plots.static_sliders) work on the published pages:
# moving each slider, with no kernel behind the page, redraws the figure and its caption.

#: The pages with static slider widgets, and how many each has at least.
SLIDER_PAGES = {"book/01_kernel_pooling": 1, "book/02_region_generation": 1, "book/06_training": 2}

_JS_WIDGET_STATE = """(i) => {
  const w = document.querySelectorAll('.dyreg-sliders')[i];
  return {caption: w.querySelector('.dyreg-caption').textContent,
          canvases: Array.from(w.querySelectorAll('canvas')).map(c => c.toDataURL()),
          readouts: Array.from(w.querySelectorAll('output')).map(o => o.textContent),
          sliders: Array.from(w.querySelectorAll('input[type=range]')).map(s => s.dataset.name)};
}"""

# one step along the slider (back one at its end), as a reader's drag does: set value, fire 'input'
_JS_MOVE = """([i, name]) => {
  const input = document.querySelectorAll('.dyreg-sliders')[i].querySelector(`input[data-name="${name}"]`);
  const v = Number(input.value), top = Number(input.max);
  input.value = String(v < top ? v + 1 : v - 1);
  input.dispatchEvent(new Event('input', {bubbles: true}));
}"""


def widget_state(page, index: int) -> dict:
    return page.evaluate(_JS_WIDGET_STATE, index)


def check_sliders_move(page, label: str, index: int) -> list[str]:
    """Move every slider of widget ``index`` one step; each move must change its readout, its
    caption and at least one of its canvases. Returns the slider names moved."""
    names = widget_state(page, index)["sliders"]
    assert names, f"{label}: widget {index} has no sliders"
    for name in names:
        before = widget_state(page, index)
        assert page.evaluate("(i) => document.querySelectorAll('.dyreg-sliders')[i].getAttribute('data-ready')",
                             index), f"{label}: the script of widget {index} did not run"
        assert "failed" not in before["caption"] and "needs JavaScript" not in before["caption"], \
            f"{label}: widget {index} did not draw: {before['caption']!r}"
        page.evaluate(_JS_MOVE, [index, name])
        try:  # frames that are images decode asynchronously
            page.wait_for_function(f"(old) => ({_JS_WIDGET_STATE})({index}).canvases.join() !== old",
                                   arg=",".join(before["canvases"]), timeout=5_000)
        except Exception:  # playwright TimeoutError: the assertion below says what did not change
            pass
        after = widget_state(page, index)
        assert after["readouts"] != before["readouts"], f"{label}: slider {name} moved, its readout did not change"
        assert after["caption"] != before["caption"], f"{label}: slider {name} moved, the caption stayed"
        assert after["canvases"] != before["canvases"], f"{label}: slider {name} moved, the figure stayed"
    return names


@pytest.mark.parametrize("doc", sorted(SLIDER_PAGES))
def test_static_sliders_move(doc, server, browser):
    page = browser.new_page()
    origin = urlparse(server).netloc
    page.route("**/*", lambda r: r.continue_() if urlparse(r.request.url).netloc == origin
               or r.request.url.startswith("data:") else r.abort())
    try:
        page.goto(f"{server}/{doc}.html", wait_until="load", timeout=60_000)
        count = page.evaluate("document.querySelectorAll('.dyreg-sliders').length")
        assert count >= SLIDER_PAGES[doc], f"{doc}: {count} static slider widgets, expected {SLIDER_PAGES[doc]}"
        for i in range(count):  # (a widget whose script failed still says "needs JavaScript": caught there)
            check_sliders_move(page, doc, i)
    finally:
        page.close()
