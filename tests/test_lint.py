"""The library and the chapter sources pass ruff with the project's settings (chapter sources are plain Python in
jupytext's percent format, so the same linter reads them)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def ruff() -> list[str]:
    found = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if not found:
        pytest.fail("ruff is not installed: pip install -c constraints.txt -e '.[dev]'")
    return [found]


@pytest.mark.parametrize("target", ["coursekit", "solutions/src", "tests/fixtures"])
def test_ruff_is_clean(target):
    run = subprocess.run([*ruff(), "check", "--output-format", "concise", target], cwd=ROOT,
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
