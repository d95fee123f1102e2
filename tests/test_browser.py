"""The course in a real browser: Playwright (PyPI) driving Debian's Chromium headless (/usr/bin/chromium; no
browser download) against `jupyter lab` in a course folder made by `coursekit course init`.

* every chapter's student notebook, with the solutions typed into its answer cells (a solved copy: "Run All"
  in a blank student notebook stops at the first unanswered exercise, as in any nbgrader course), runs in fast
  mode through JupyterLab's Run > Run All Cells, and the saved notebook has no error output;
* an ipywidgets slider moved with the keyboard changes the value the kernel reads;
* the Nbgrader menu is there and the formgrader page loads in its own tab (it refuses to be framed).

Screenshots go to .coursekit/test-artifacts/browser/ (CI keeps them as artifacts).
"""
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import requests
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from coursekit.grading import init_course, solution_notebooks

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / ".coursekit" / "test-artifacts" / "browser"
CHAPTERS = tuple(p.stem for p in solution_notebooks())  # every chapter the course ships
pytestmark = pytest.mark.slow


def solved_copy(chapter: str, target: Path) -> None:
    """The student notebook with the instructor's answer cells typed in (nothing else changed)."""
    student = nbformat.read(ROOT / "notebooks" / f"{chapter}.ipynb", as_version=4)
    solution = nbformat.read(ROOT / "solutions" / f"{chapter}.ipynb", as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in solution.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    for c in student.cells:
        gid = c.metadata.get("nbgrader", {}).get("grade_id")
        if c.metadata.get("nbgrader", {}).get("solution") and gid in answers:
            c.source = answers[gid]
    nbformat.write(student, target)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
    course = tmp_path_factory.mktemp("browser") / "course"
    init_course(course)
    for chapter in CHAPTERS:
        solved_copy(chapter, course / f"{chapter}.ipynb")
    widget = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import ipywidgets as w\nslider = w.IntSlider(value=1, min=0, max=10)\nslider"),
        nbformat.v4.new_code_cell("print('kernel sees', slider.value)")])
    widget.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(widget, course / "widget.ipynb")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = secrets.token_hex(16)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "COURSEKIT_FAST": "1"}
    env.pop("MPLBACKEND", None)  # the notebooks draw inline, as for a learner
    args = [str(BIN / "jupyter-lab"), "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={course}"]
    if os.geteuid() == 0:
        args.append("--allow-root")
    log = (course.parent / "lab.log").open("w")
    proc = subprocess.Popen(args, cwd=course, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, (course.parent / "lab.log").read_text()[-3000:]
        try:
            if requests.get(f"{url}/api/status", params={"token": token}, timeout=5).ok:
                break
        except requests.ConnectionError:
            time.sleep(0.5)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1400, "height": 900})
        try:
            yield {"url": url, "token": token, "course": course, "context": context}
        finally:
            context.close()
            browser.close()
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
            log.close()


def open_notebook(lab, name: str):
    page = lab["context"].new_page()
    workspace = Path(name).stem  # a fresh workspace per notebook: only this notebook is open in it
    page.goto(f"{lab['url']}/lab/workspaces/{workspace}/tree/{name}?reset&token={lab['token']}")
    page.locator(".jp-Notebook .jp-Cell >> visible=true").first.wait_for(timeout=120_000)
    dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
    try:  # JupyterLab asks once per new notebook file; the default choice is the notebook's python3
        dialog.wait_for(timeout=5_000)
        dialog.locator(".jp-mod-accept").click()
    except PlaywrightTimeout:
        pass
    deadline = time.monotonic() + 120
    while kernel_state(lab, name) != "idle":
        assert time.monotonic() < deadline, f"{name}: no idle kernel after 120 s"
        page.wait_for_timeout(500)
    return page


def kernel_state(lab, name: str) -> str | None:
    """The server's view of the notebook's kernel: idle, busy, starting, or None (no session yet)."""
    sessions = requests.get(f"{lab['url']}/api/sessions", params={"token": lab["token"]}, timeout=30).json()
    return next((s["kernel"]["execution_state"] for s in sessions if s["path"] == name), None)


def menu(page, *path: str) -> None:
    page.locator(".lm-MenuBar-itemLabel", has_text=path[0]).first.click()
    for item in path[1:]:
        page.locator(".lm-Menu-itemLabel", has_text=item).first.click()


def run_all_and_save(page, lab, name: str, seconds: float) -> nbformat.NotebookNode:
    menu(page, "Run", "Run All Cells")
    page.wait_for_timeout(1000)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:  # busy until the last cell ran
        busy = page.locator(".jp-InputPrompt", has_text="[*]").count()
        if kernel_state(lab, name) == "idle" and busy == 0:
            break
        page.wait_for_timeout(1000)
    else:
        page.screenshot(path=ARTIFACTS / f"{name}-timeout.png", full_page=True)
        pytest.fail(f"{name}: still running after {seconds:g} s")
    page.keyboard.press("Control+s")
    page.wait_for_timeout(1500)
    page.screenshot(path=ARTIFACTS / f"{name}.png")
    return nbformat.read(lab["course"] / name, as_version=4)


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_solved_chapter_runs_in_jupyterlab_without_an_error(lab, chapter):
    page = open_notebook(lab, f"{chapter}.ipynb")
    start = time.monotonic()
    nb = run_all_and_save(page, lab, f"{chapter}.ipynb", 900)
    elapsed = time.monotonic() - start
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    errors = [(i, o.get("ename"), o.get("evalue")) for i, c in enumerate(nb.cells) if c.cell_type == "code"
              for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors
    assert all(c.execution_count for c in code), [c.source[:60] for c in code if not c.execution_count]
    print(f"{chapter}: ran in the browser in {elapsed:.0f} s (fast mode)")
    page.close()


def test_a_widget_moved_in_the_browser_changes_the_kernel_state(lab):
    page = open_notebook(lab, "widget.ipynb")
    menu(page, "Run", "Run All Cells")
    try:
        page.wait_for_selector(".jp-OutputArea-output >> text=kernel sees 1", timeout=60_000)
        handle = page.locator(".widget-slider .noUi-handle").first
        handle.wait_for(timeout=30_000)
    except Exception:
        page.screenshot(path=ARTIFACTS / "widget-failed.png")
        (ARTIFACTS / "widget-failed.html").write_text(page.content())
        raise
    handle.focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    page.wait_for_timeout(500)
    cells = page.locator(".jp-Notebook .jp-Cell")
    cells.nth(1).click()
    page.keyboard.press("Shift+Enter")
    page.wait_for_selector(".jp-OutputArea-output >> text=kernel sees 4", timeout=60_000)
    page.screenshot(path=ARTIFACTS / "widget.png")
    page.close()


def test_nbgrader_menu_and_formgrader_in_its_own_tab(lab):
    page = open_notebook(lab, "widget.ipynb")
    page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").first.click()
    items = page.locator(".lm-Menu-itemLabel").all_inner_texts()
    assert any("Formgrader" in t for t in items) and any("Assignment List" in t for t in items), items
    page.screenshot(path=ARTIFACTS / "nbgrader-menu.png")
    page.keyboard.press("Escape")
    tab = lab["context"].new_page()
    response = tab.goto(f"{lab['url']}/formgrader?token={lab['token']}")
    assert response.status == 200
    tab.wait_for_selector("text=Manage Assignments", timeout=60_000)
    tab.wait_for_selector("td >> text=00_measuring", timeout=60_000)  # the course's chapters are listed
    tab.screenshot(path=ARTIFACTS / "formgrader.png")
    tab.close()
    page.close()
