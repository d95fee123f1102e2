"""Every question's ``section`` link ("NN_topic#anchor") resolves to an anchor of its chapter notebook.

The notebook is the compiled ``solutions/NN_topic.ipynb``. Anchors are what JupyterLab creates when it renders the
markdown: each heading gets ``id = heading.textContent.replace(/ /g, '-')`` (``createHeaderId`` in
``@jupyterlab/rendermime``; the text is the rendered one, so emphasis, code marks, links and HTML tags are gone),
and an explicit ``<a id="..."></a>`` (or ``name=``) in a markdown cell is an anchor too. Prefer explicit ids in
the bank: they survive renumbering and rewording, and a heading that ends in one gets a trailing '-' in its text
id. Chapters whose notebook does not exist yet are skipped, each with its own reason; one with a notebook never is.
"""
import json
import re
from pathlib import Path

import pytest

from coursekit.quiz import catalog
from coursekit.quiz.schema import CHAPTERS

ROOT = Path(__file__).resolve().parents[1]
SOLUTIONS = ROOT / "solutions"
_SECTION = re.compile(r"^(\d\d)_[a-z0-9_]+#\S+$")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_HTML_ANCHOR = re.compile(r"<a\s[^>]*?\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)


def heading_text(markdown: str) -> str:
    """The rendered text of a heading's markdown (already trimmed, as marked does): ``textContent``."""
    text = re.sub(r"<[^>]+>", "", markdown)                      # HTML tags (an <a id> adds no text)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)       # links and images keep their text
    text = re.sub(r"`+([^`]*)`+", r"\1", text)                   # code spans keep their content
    text = re.sub(r"(\*\*|__)(.+?)\1", r"\2", text)              # strong
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"\1", text)  # *emphasis*
    text = re.sub(r"(?<!\w)_(?!\s)(.+?)(?<!\s)_(?!\w)", r"\1", text)          # _emphasis_
    text = text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
    return text  # not stripped: a space before a trailing <a id> stays in textContent (and becomes a '-')


def notebook_anchors(path: Path) -> set[str]:
    """Every anchor JupyterLab gives the markdown of notebook ``path``: headings and explicit ``<a id>``."""
    anchors = set()
    for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
        if cell.get("cell_type") != "markdown":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        anchors.update(_HTML_ANCHOR.findall(source))
        in_fence = False
        for line in source.splitlines():
            if _FENCE.match(line):
                in_fence = not in_fence
                continue
            match = None if in_fence else _HEADING.match(line)
            if match:
                anchors.add(heading_text(match.group(2)).replace(" ", "-"))
    return anchors


def test_heading_anchor_rules():
    """Hand-checked against JupyterLab 4: the rendered heading text with spaces replaced by '-'."""
    assert heading_text("2 · Rounding has no gradient <a id=\"ste\"></a>") == "2 · Rounding has no gradient "
    assert heading_text("4 · What does *your* hardware accelerate?") == "4 · What does your hardware accelerate?"
    assert heading_text("Benchmark: ORT FP32 vs INT8 (the `ptq` suite)") == "Benchmark: ORT FP32 vs INT8 (the ptq suite)"
    assert heading_text("A [link](https://x.org) and **bold** and per_channel") == "A link and bold and per_channel"


def test_notebook_anchors_parse_headings_and_html_anchors(tmp_path):
    nb = {"cells": [
        {"cell_type": "markdown", "source": ["# 00 · Title\n", "text\n", "## 1 · The *first* part <a id=\"first\"></a>\n"]},
        {"cell_type": "code", "source": ["# ## not a heading\n"]},
        {"cell_type": "markdown", "source": "```\n# inside a fence\n```\n### Reading the numbers ###\n"},
    ]}
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps(nb), encoding="utf-8")
    assert notebook_anchors(path) == {"00-·-Title", "1-·-The-first-part-", "first", "Reading-the-numbers"}


@pytest.fixture(scope="module")
def bank():
    catalog.clear_cache()
    return catalog.load_bank()


def _chapter_notebook(bank, chapter: str) -> str:
    """The one notebook stem ("NN_topic") that the chapter's questions link to."""
    stems = {q.section.split("#", 1)[0] for q in bank.questions if q.chapter == chapter}
    assert len(stems) == 1, f"chapter {chapter}: questions link to several notebooks {sorted(stems)}"
    return stems.pop()


def test_every_section_names_its_own_chapter(bank):
    """``section`` is "NN_topic#anchor" with NN the question's chapter, and the chapter has one notebook name."""
    bad = [f"{q.id}: {q.section!r}" for q in bank.questions
           if not (_SECTION.match(q.section) and q.section[:2] == q.chapter)]
    assert bad == []
    for chapter in bank.chapters:
        stem = _chapter_notebook(bank, chapter)
        written = sorted(p.stem for p in (SOLUTIONS / "src").glob(f"{chapter}_*.py"))
        assert not written or written == [stem], f"chapter {chapter}: bank links to {stem}, source is {written}"


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_section_resolves_to_a_notebook_anchor(bank, chapter):
    stem = _chapter_notebook(bank, chapter)
    notebook = SOLUTIONS / f"{stem}.ipynb"
    if not notebook.exists():
        pytest.skip(f"chapter {chapter}: {notebook.relative_to(ROOT)} does not exist yet, so its section links "
                    "cannot be checked")
    anchors = notebook_anchors(notebook)
    broken = [f"{q.id}: #{q.section.split('#', 1)[1]}" for q in bank.questions
              if q.chapter == chapter and q.section.split("#", 1)[1] not in anchors]
    assert broken == [], (f"{len(broken)} section links of chapter {chapter} do not resolve in "
                          f"{notebook.relative_to(ROOT)}:\n" + "\n".join(broken)
                          + "\nanchors there:\n" + "\n".join(sorted(anchors)))
