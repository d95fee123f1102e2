"""Lower layers never import higher ones (the architecture in CONTRIBUTING.md)."""
import ast
from pathlib import Path

import coursekit

PACKAGE = Path(coursekit.__file__).parent


def imported_layers(path: Path) -> set[str]:
    layers = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "coursekit" and len(parts) > 1 and parts[1] in coursekit.LAYERS:
                layers.add(parts[1])
    return layers


def test_every_layer_imports_only_lower_layers():
    order = {name: i for i, name in enumerate(coursekit.LAYERS)}
    violations = []
    for layer in coursekit.LAYERS:
        folder, module = PACKAGE / layer, PACKAGE / f"{layer}.py"
        paths = sorted(folder.rglob("*.py")) if folder.is_dir() else [module] if module.is_file() else []
        for path in paths:
            for other in imported_layers(path):
                if order[other] > order[layer]:
                    violations.append(f"{path.relative_to(PACKAGE)} imports coursekit.{other}")
    assert violations == []


def test_the_checker_sees_an_upward_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from coursekit.cli import main\nimport coursekit.quiz.bank\n")
    assert imported_layers(bad) == {"cli", "quiz"}


def test_single_module_layers_are_checked_too():
    assert (PACKAGE / "surgery.py").is_file() and (PACKAGE / "metrics.py").is_file()
    assert coursekit.LAYERS[:2] == ("surgery", "metrics")
    assert imported_layers(PACKAGE / "surgery.py") == set() and imported_layers(PACKAGE / "metrics.py") == set()
