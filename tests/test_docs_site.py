"""The documentation site: the generator (docs/sitegen, run by the mkdocs hook docs/gen_site.py) documents every registered module, fails
loudly on one it cannot document, reads the deployment matrix when it exists; the committed bench data covers
the registry; and, with ``ATTNZOO_DOCS_SITE=site`` (CI sets it after ``mkdocs build --strict``), the built gallery
opens in headless Chromium with one loaded image per card and a working filter.

Locally the browser tests skip when ATTNZOO_DOCS_SITE is unset; when it is set, a missing site, Chromium or
Playwright is a failure, not a skip.
"""

from __future__ import annotations

import functools
import http.server
import importlib
import json
import os
import re
import shutil
import sys
import threading
from pathlib import Path

import pytest

import attnzoo
from attnzoo import registry

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("ATTNZOO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def load_sitegen():
    """docs/sitegen, the generator behind the mkdocs hook docs/gen_site.py."""
    docs = str(ROOT / "docs")
    if docs not in sys.path:
        sys.path.insert(0, docs)
    return importlib.import_module("sitegen")


@pytest.fixture(scope="module")
def gen():
    return load_sitegen()


@pytest.fixture(scope="module")
def text_site(gen):
    """Every generated page without pictures (pictures are the build's job; this stays fast)."""
    return gen.generate(pictures=False, workers=1)


# ----------------------------------------------------------------------------------------------------------------
# generator and data


def test_every_registered_module_gets_a_page_a_picture_and_a_card(text_site):
    names = attnzoo.list_modules()
    files = text_site.files
    for name in names:
        page = files[f"modules/{name}.md"].decode()
        assert page.startswith(f"# `{name}`"), name
        assert f"img/{name}.png" in page, name
        assert f"modules/img/{name}-card.png" in files, name
        info = attnzoo.info(name)
        assert f"::: {info.cls.__module__}.{info.cls.__qualname__}" in page, name
        assert "## Provenance" in page and "## Example" in page and "## Arguments" in page, name
    gallery = files["gallery.md"].decode()
    assert gallery.count('class="az-card"') == len(names)
    nav_pages = [
        page for section in text_site.nav[1:] for entries in section.values() for e in entries for page in e.values()
    ]
    assert sorted(nav_pages) == sorted(f"modules/{n}.md" for n in names)
    assert all(
        f"which/{f}.png" in files["which-module.md"].decode() for f in attnzoo.FAMILIES if attnzoo.list_modules(f)
    )


def test_cost_cards_are_legible_shape_diagrams(gen):
    """Modules without a map picture get a card with their name, input and output shapes and cost class in type
    large enough to read at the gallery's ~210-pixel card width (not a thumbnail of a twin-axis chart)."""
    import io

    from PIL import Image

    fig = gen.pictures.shape_card_figure(
        "bifpn", "O(N)", "pyramid", ["[2×64×56×56, 2×128×28×28, 2×256×14×14, 2×512×7×7]"],
        "[2×64×56×56, 2×64×28×28, 2×64×14×14, 2×64×7×7]")
    texts = {t.get_text(): t.get_fontsize() for t in fig.axes[0].texts}
    assert {"bifpn", "O(N)", "2×128×28×28", "2×512×7×7", "2×64×7×7", "pyramid: input → output shapes"} <= set(texts)
    assert min(texts.values()) >= 8 and texts["bifpn"] >= 12
    site = gen.generate(names=["weighted_fusion"], workers=1)
    card = site.files["modules/img/weighted_fusion-card.png"]
    with Image.open(io.BytesIO(card)) as im:
        assert im.size == (300, 200)
    assert card != site.files["modules/img/weighted_fusion.png"]  # the page keeps the cost chart


def test_module_page_content(text_site):
    page = text_site.files["modules/cbam.md"].decode()
    assert "Jongchan/attention-module" in page  # official code, from docs/provenance/cbam.md
    assert "| `kernel_size` | `7` | `int | tuple[int, ...]` |" in page  # from the signature, with the docstring's description
    assert "**Spatial ranks** (`dims=`, default 2): 1 (B×C×L), 2 (B×C×H×W), 3 (B×C×D×H×W)" in page
    assert "x = torch.randn(2, 64, 56, 56)" in page and 'attnzoo.insert(torchvision.models.resnet18(), "cbam")' in page
    assert "at batch 1, input 13x11" in page
    for rt in ("onnxruntime", "openvino", "ncnn"):  # from the committed docs/deployment.json
        assert re.search(rf"\| {rt} [\d.]+ \| ok \|", page), rt
    assert "Maps from a **trained** detector" in page  # the committed picture (tests/test_docs_gallery.py)
    assert "| 56×56 | 3,136 |" in page  # latency rows from the committed bench run
    pyramid = text_site.files["modules/fpn.md"].decode()
    assert "cost against resolution" in pyramid and "xs = [torch.randn(2, 64, 56, 56)" in pyramid


def test_module_pages_and_gallery_cards_state_their_ranks(text_site):
    """Each module page's header and each gallery card name the spatial ranks (``dims``) the module supports, and
    the gallery filters by rank; a cost in d says what d is."""
    files = text_site.files
    gallery = files["gallery.md"].decode()
    for name in attnzoo.list_modules():
        dims = attnzoo.info(name).dims
        ranks = ", ".join(map(str, dims))
        page = files[f"modules/{name}.md"].decode()
        meta = next(line for line in page.splitlines() if 'class="az-meta"' in line)
        assert f"dims **{ranks}**" in meta, name
        card = re.search(rf'<div class="az-card"[^>]*data-name="{name}".*?</div>', gallery, re.S)
        assert card and f'data-dims="{" ".join(map(str, dims))}"' in card.group(0), name
        assert f"· dims {ranks}</span>" in card.group(0), name
    assert "dims **1, 2, 3**" in files["modules/neighborhood.md"].decode()
    assert "dims **2**" in files["modules/coord.md"].decode()
    assert re.search(r'<select id="az-dims">.*value="1".*value="2".*value="3"', gallery)
    cost = next(line for line in files["modules/neighborhood.md"].decode().splitlines() if "**Complexity**" in line)
    assert "O(N·k^d)" in cost and "d is the spatial rank" in cost
    assert "O(N·Σ axis sizes)" in files["modules/criss_cross.md"].decode()
    assert "spatial rank" not in next(
        line for line in files["modules/coord.md"].decode().splitlines() if "**Complexity**" in line
    )
    js = (ROOT / "docs" / "assets" / "gallery.js").read_text()
    assert "az-dims" in js and "dataset.dims" in js


def test_bench_data_covers_every_registered_module(gen):
    bench = gen.load_bench(gen.BENCH_JSON)
    missing = sorted(set(attnzoo.list_modules()) - set(bench.rows))
    assert not missing, (
        f"docs/data/bench*.json have no rows for {missing}: run `{gen.BENCH_COMMAND}` with `--modules NAME` and "
        "`--output docs/data/bench-NAME.json` (see docs/adding-a-module.md)"
    )
    no_latency = sorted(n for n in attnzoo.list_modules() if not any(r.get("fwd_ms") for r in bench.rows[n]))
    assert not no_latency, f"no latency measured for {no_latency}"


def test_a_new_module_needs_only_its_own_bench_run(gen, tmp_path):
    doc = json.loads(gen.BENCH_JSON.read_text())
    se_rows = [r for r in doc["results"] if r["module"] == "se"]
    doc["results"] = [r for r in doc["results"] if r["module"] != "se"]
    (tmp_path / "bench.json").write_text(json.dumps(doc))
    extra = dict(doc, results=se_rows, created="2031-01-02T00:00:00+00:00")
    (tmp_path / "bench-se.json").write_text(json.dumps(extra))
    bench = gen.load_bench(tmp_path / "bench.json")
    assert bench.rows["se"] == sorted(se_rows, key=lambda r: r["positions"])
    assert "2031-01-02" in bench.label("se") and "2031-01-02" not in bench.label("eca")


def test_deployment_status_with_and_without_the_matrix(gen, tmp_path):
    assert gen.load_deployment(tmp_path / "absent.json") is None
    assert "not measured yet" in gen.deployment_section("cbam", None)
    fake = {
        "attnzoo": "0.2.0",
        "runtimes": {"onnxruntime": "1.20", "openvino": "2025.1", "ncnn": "1.0.2025"},
        "rows": [
            {
                "module": "cbam",
                "runtime": "onnxruntime",
                "status": "ok",
                "max_abs_diff": 3e-7,
                "latency_ms": 0.42,
                "message": "",
            },
            {
                "module": "cbam",
                "runtime": "ncnn",
                "status": "failed",
                "max_abs_diff": 0.5,
                "latency_ms": None,
                "message": "outputs differ | by 0.5",
            },
        ],
    }
    path = tmp_path / "deployment.json"
    path.write_text(json.dumps(fake))
    section = gen.deployment_section("cbam", gen.load_deployment(path))
    assert "| onnxruntime 1.20 | ok | 3e-07 | 0.42 |" in section
    assert "| openvino 2025.1 | missing |" in section  # no row for this runtime
    assert "| ncnn 1.0.2025 | failed | 0.5 | — | outputs differ \\| by 0.5 |" in section
    page = gen.generate(names=["cbam"], pictures=False, workers=1, deployment_path=path).files["modules/cbam.md"]
    assert b"| onnxruntime 1.20 | ok |" in page and b"not measured yet" not in page
    path.write_text(json.dumps({"rows": "nope"}))
    with pytest.raises(gen.DocsError, match="expected"):
        gen.load_deployment(path)


def test_generator_fails_loudly_on_a_module_it_cannot_document(gen):
    import torch.nn as nn

    @attnzoo.register("docs_undocumentable", family="channel", paper="Nobody, 2026", complexity="O(N)")
    class Undocumentable(nn.Module):  # no docstring, no provenance page, no bench row
        def __init__(self, channels: int) -> None:
            super().__init__()

        def forward(self, x):
            return x

    try:
        with pytest.raises(gen.DocsError, match="docs_undocumentable: no row in the bench data"):
            gen.generate(names=["docs_undocumentable", "se"], pictures=False, workers=1)
    finally:
        registry.unregister("docs_undocumentable")


def test_generator_reports_every_problem(gen, tmp_path):
    bench = json.loads(gen.BENCH_JSON.read_text())
    bench["results"] = [r for r in bench["results"] if r["module"] not in ("se", "eca")]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(bench))
    with pytest.raises(gen.DocsError) as err:
        gen.generate(names=["se", "eca", "cbam"], pictures=False, workers=1, bench_path=path)
    assert "se: no row" in str(err.value) and "eca: no row" in str(err.value) and "cbam" not in str(err.value)


# ----------------------------------------------------------------------------------------------------------------
# the built site in headless Chromium (CI: ATTNZOO_DOCS_SITE=site after `mkdocs build --strict`)


@pytest.fixture(scope="module")
def built_site():
    value = os.environ.get("ATTNZOO_DOCS_SITE")
    if not value:
        pytest.skip("set ATTNZOO_DOCS_SITE=site after `mkdocs build --strict` to test the built site")
    site = (ROOT / value).resolve() if not Path(value).is_absolute() else Path(value)
    assert (site / "gallery" / "index.html").exists(), f"ATTNZOO_DOCS_SITE={value}: no built site there"
    return site


@pytest.fixture(scope="module")
def server(built_site):
    handler = functools.partial(_QuietHandler, directory=str(built_site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def browser(built_site):
    assert shutil.which(CHROMIUM) or Path(CHROMIUM).exists(), f"ATTNZOO_DOCS_SITE is set but {CHROMIUM} is missing"
    from playwright.sync_api import sync_playwright  # the docs extra installs it (never `playwright install`)

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_site_has_a_page_per_module(built_site):
    missing = [n for n in attnzoo.list_modules() if not (built_site / "modules" / n / "index.html").exists()]
    assert not missing, f"no built page for {missing}"
    assert (built_site / "which-module" / "index.html").exists()


def test_site_gallery_cards_render_with_their_images_and_filter(browser, server):
    names = attnzoo.list_modules()
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/gallery/", wait_until="load")
    cards = page.locator(".az-card")
    assert cards.count() == len(names)
    assert sorted(page.eval_on_selector_all(".az-card", "cs => cs.map(c => c.dataset.name)")) == names
    page.wait_for_function("() => [...document.querySelectorAll('.az-card img')].every(i => i.complete)")
    widths = page.eval_on_selector_all(
        ".az-card",
        "cs => cs.map(c => [c.dataset.name, c.querySelector('img') ? c.querySelector('img').naturalWidth : -1])",
    )
    assert [n for n, w in widths if w <= 0] == [], "cards whose image did not load"

    page.select_option("#az-family", "channel")
    visible = page.eval_on_selector_all(
        ".az-card", "cs => cs.filter(c => c.offsetParent !== null).map(c => c.dataset.name)"
    )
    assert sorted(visible) == attnzoo.list_modules("channel")
    assert page.inner_text("#az-count").startswith(f"{len(visible)} module")
    page.select_option("#az-family", "")
    page.select_option("#az-layout", "pyramid")
    visible = page.eval_on_selector_all(
        ".az-card", "cs => cs.filter(c => c.offsetParent !== null).map(c => c.dataset.name)"
    )
    assert sorted(visible) == sorted(n for n in names if attnzoo.info(n).layout == "pyramid")
    assert errors == []
    page.close()


def test_site_module_page_renders_its_picture(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(f"{server}/modules/cbam/", wait_until="load")
    img = page.locator("img.az-picture")
    assert img.count() == 1
    page.wait_for_function("() => document.querySelector('img.az-picture').complete")
    assert img.evaluate("i => i.naturalWidth") > 0
    assert "Maps from a trained detector" in page.inner_text(".az-caption")
    assert page.locator(".doc-class, .doc").count() > 0  # the mkdocstrings API reference rendered
    page.close()
