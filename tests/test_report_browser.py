"""The Pareto page of `coursekit report` in a real browser: Playwright (PyPI) driving Debian's Chromium headless
(/usr/bin/chromium, as tests/test_browser.py does), with every network request blocked: the page must draw one
SVG point per variant, grey the dominated ones, show the label on hover and switch axes, all offline."""
import json
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from coursekit.pipeline import report
from coursekit.pipeline.pareto import pareto_front

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.slow


def suite_file(folder: Path) -> Path:
    """A benchmark-suite result (``coursekit bench --json``) with 6 variants, one of them dominated in size only."""
    rows = [("fp32", 0.98, 0.020, 90000), ("int8", 0.97, 0.010, 25000), ("channel50", 0.96, 0.012, 30000),
            ("tiny", 0.80, 0.005, 5000), ("bad", 0.70, 0.030, 95000), ("odd", 0.975, 0.015, 95000)]
    records = [{"model": "lenet", "variant": v, "device": "cpu", "batch": 1, "threads": 1, "latency_ms_median": lat,
                "size_bytes": size, "accuracy": acc, "runtime": "ort"} for v, acc, lat, size in rows]
    path = folder / "suite.json"
    path.write_text(json.dumps({"suite": "demo", "hardware": {"cpu": {"model": "test"}}, "records": records}))
    return path


@pytest.fixture(scope="module")
def page_and_data(tmp_path_factory):
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
    folder = tmp_path_factory.mktemp("report")
    found = report(suite_file(folder), out=folder / "out")
    requests = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1200, "height": 900})
        context.route("**/*", lambda route: (requests.append(route.request.url),
                                             route.abort() if not route.request.url.startswith("file:")
                                             else route.continue_()))
        page = context.new_page()
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto((folder / "out" / "pareto.html").as_uri())
        page.locator("svg#plot circle.point").first.wait_for(timeout=30_000)
        try:
            yield page, found, errors, requests
        finally:
            context.close()
            browser.close()


def test_one_point_per_variant_and_dominated_grey(page_and_data):
    page, found, errors, requests = page_and_data
    variants = found["variants"]
    assert page.locator("svg#plot circle.point").count() == len(variants) == 6
    expected = pareto_front(variants, {"accuracy": "max", "latency_ms": "min"})
    labels = page.locator("svg#plot circle.point").evaluate_all(
        "cs => cs.map(c => [c.getAttribute('data-label'), c.classList.contains('dominated')])")
    by_label = dict(labels)
    assert by_label == {v["label"]: not f for v, f in zip(variants, expected)}
    fill = page.locator("svg#plot circle.dominated").first.evaluate("c => getComputedStyle(c).fill")
    assert fill == "rgb(187, 187, 187)"                                    # grey
    assert errors == [] and all(u.startswith("file:") for u in requests)  # offline: nothing else was fetched


def test_hover_shows_the_label(page_and_data):
    page, _found, _, _ = page_and_data
    point = page.locator('svg#plot circle.point[data-label="demo: lenet/int8 (ort)"]')
    point.hover()
    tooltip = page.locator("#tooltip")
    tooltip.wait_for(state="visible", timeout=5_000)
    assert "demo: lenet/int8 (ort)" in tooltip.inner_text() and "97.00%" in tooltip.inner_text()
    page.mouse.move(5, 5)
    tooltip.wait_for(state="hidden", timeout=5_000)


def test_axis_switch_recomputes_the_front(page_and_data):
    page, found, _, _ = page_and_data
    page.select_option("#xaxis", "size")
    expected = pareto_front(found["variants"], {"accuracy": "max", "size_bytes": "min"})
    dominated = sorted(page.locator("svg#plot circle.dominated").evaluate_all(
        "cs => cs.map(c => c.getAttribute('data-label'))"))
    assert dominated == sorted(v["label"] for v, f in zip(found["variants"], expected) if not f)
    assert "demo: lenet/odd (ort)" in dominated                         # on the latency front, not the size one
    assert page.locator("svg#plot text", has_text="size (bytes)").count() == 1
    page.select_option("#xaxis", "latency")
