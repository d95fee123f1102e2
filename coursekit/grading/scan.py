"""A static scan of the learner's own code for things graded code has no reason to touch.

The sealed grader already makes these harmless to the *verdict* (checks run in the grader's process, on plain
data): the scan is for the instructor, reported beside the grade as a flag, never as a score. It reads the
learner's answer cells and the cells they added or edited (after IPython's magics are turned into Python), and
flags code that touches IPython's input/AST transformers or events, ``sys.modules``, ``builtins``, the gradebook,
the grader's seal, exits or signals the kernel, or assigns to attributes of imported modules and functions
(monkeypatching ``torch.allclose``, ``np.isclose`` or a ``coursekit`` function). Unparsable code is searched as
text for the same names.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

# Attribute names of the IPython shell that change how later cells run.
_IPYTHON_HOOKS = {"input_transformers_cleanup", "input_transformers_post", "ast_transformers",
                  "input_transformer_manager", "set_custom_exc", "set_hook", "register_magic_function",
                  "run_cell", "run_cell_async", "transform_cell", "showtraceback", "user_ns", "ex", "ev"}
_IPYTHON_BENIGN = {"run_line_magic", "run_cell_magic", "system", "getoutput", "magic"}
_LIBRARY_ROOTS = {"torch", "numpy", "np", "coursekit", "math", "builtins", "sys", "os", "json", "IPython",
                  "ipykernel", "nbgrader", "scipy", "onnxruntime", "time", "random", "functools", "operator"}
# Library settings a learner may legitimately assign (quantization engines, printing, plotting).
_SETTINGS = ("torch.backends.", "torch._dynamo.config.", "torch._inductor.config.", "plt.rcParams",
             "matplotlib.rcParams", "mpl.rcParams", "pd.options.")
_CALLS = {("os", "_exit"): "exits the kernel (os._exit)", ("os", "kill"): "sends a signal to a process (os.kill)",
          ("os", "killpg"): "sends a signal to a process group", ("os", "abort"): "aborts the kernel (os.abort)",
          ("signal", "signal"): "changes a signal handler", ("sys", "settrace"): "installs a trace function",
          ("sys", "setprofile"): "installs a profile function", ("sys", "addaudithook"): "installs an audit hook",
          ("sys", "setrecursionlimit"): None}
_MODULE_FLAGS = {"builtins": "imports builtins", "__builtin__": "imports builtins", "ctypes": "imports ctypes",
                 "sqlite3": "imports sqlite3 (the gradebook is an SQLite file)", "nbgrader": "imports nbgrader",
                 "gc": "imports gc (reaches objects by reference)", "unittest.mock": "imports unittest.mock",
                 "mock": "imports mock", "coursekit.grading": "imports the grading package",
                 "ipykernel": "imports ipykernel", "IPython.core": "imports IPython internals"}
_TEXT_PATTERNS = [
    (re.compile(r"get_ipython|input_transformers|ast_transformers|\.events\b"), "touches IPython's shell hooks"),
    (re.compile(r"sys\s*\.\s*modules"), "uses sys.modules"),
    (re.compile(r"\b__builtins__\b|\bbuiltins\b"), "touches builtins"),
    (re.compile(r"gradebook", re.IGNORECASE), "mentions the gradebook"),
    (re.compile(r"os\s*\.\s*_exit|os\s*\.\s*kill"), "exits or signals the kernel"),
    (re.compile(r"COURSEKIT_SEAL|\bsealed\b|sealed_test"), "touches the grader's seal"),
    (re.compile(r"setattr\s*\(|\bmonkeypatch|mock\.patch"), "patches attributes"),
]


@dataclass(frozen=True)
class Flag:
    """One finding: where it is and what it does (a note for the instructor, not a verdict)."""

    label: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.label}, line {self.line}: {self.what}"


def _python(source: str) -> str:
    """The cell as plain Python (magics and shell escapes turned into calls), as the kernel would run it."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - left as is; the parser or the text search handles it
        return source


def imported_names(sources) -> set[str]:
    """Every name bound by an import statement in ``sources`` (modules and functions alike)."""
    names = set()
    for source in sources:
        try:
            tree = ast.parse(_python(source))
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names.update(a.asname or a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                names.update(a.asname or a.name for a in node.names if a.name != "*")
    return names


def _dotted(node) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id, *reversed(parts)])
    if isinstance(node, ast.Call):  # get_ipython().x, __import__("torch").x, importlib.import_module(...).x
        inner = _dotted(node.func)
        return ".".join([f"{inner}()", *reversed(parts)]) if inner else None
    if isinstance(node, ast.Subscript):  # sys.modules["torch"].allclose
        inner = _dotted(node.value)
        return ".".join([f"{inner}[]", *reversed(parts)]) if inner else None
    return None


class _Visitor(ast.NodeVisitor):
    def __init__(self, modules: set[str]):
        self.modules = modules | _LIBRARY_ROOTS
        self.found: list[tuple[int, str]] = []

    def flag(self, node, what: str) -> None:
        self.found.append((getattr(node, "lineno", 0), what))

    def _patched_root(self, target) -> str | None:
        dotted = _dotted(target)
        if isinstance(target, ast.Subscript):  # sys.modules["x"] = fake, module.__dict__["f"] = g
            inner = _dotted(target.value) or ""
            return dotted if inner.endswith(("modules", "__dict__")) or inner.startswith("vars()") else None
        if not dotted or not isinstance(target, ast.Attribute) or dotted.startswith(_SETTINGS):
            return None
        root = dotted.split(".")[0].split("[")[0].removesuffix("()")
        if root in self.modules or root in ("__import__", "importlib.import_module", "get_ipython"):
            return dotted
        if dotted.endswith(("__code__", "__dict__", "__class__", "__globals__", "__defaults__")):
            return dotted
        return None

    def _targets(self, node, targets) -> None:
        for target in targets:
            for t in ast.walk(target) if isinstance(target, (ast.Tuple, ast.List)) else [target]:
                dotted = self._patched_root(t)
                if dotted:
                    self.flag(node, f"assigns to {dotted} (replacing a library attribute the tests may use)")

    def visit_Assign(self, node):
        self._targets(node, node.targets)
        self.generic_visit(node)

    def visit_AugAssign(self, node):
        self._targets(node, [node.target])
        self.generic_visit(node)

    def visit_AnnAssign(self, node):
        self._targets(node, [node.target])
        self.generic_visit(node)

    def visit_Delete(self, node):
        for target in node.targets:
            dotted = self._patched_root(target)
            if dotted:
                self.flag(node, f"deletes {dotted}")
        self.generic_visit(node)

    def visit_Import(self, node):
        for alias in node.names:
            for module, what in _MODULE_FLAGS.items():
                if alias.name == module or alias.name.startswith(module + "."):
                    self.flag(node, what)
        self.generic_visit(node)

    def visit_ImportFrom(self, node):
        module = node.module or ""
        for name, what in _MODULE_FLAGS.items():
            if module == name or module.startswith(name + "."):
                self.flag(node, what)
        if module in ("os", "sys", "signal") and any(a.name in ("_exit", "kill", "killpg", "modules", "signal",
                                                                  "settrace", "setprofile") for a in node.names):
            self.flag(node, f"imports {', '.join(a.name for a in node.names)} from {module}")
        if module == "IPython" and any(a.name == "get_ipython" for a in node.names):
            self.flag(node, "imports get_ipython")
        self.generic_visit(node)

    def visit_Name(self, node):
        if node.id in ("__builtins__", "__builtin__"):
            self.flag(node, "touches __builtins__")
        self.generic_visit(node)

    def visit_Attribute(self, node):
        dotted = _dotted(node) or ""
        if node.attr in _IPYTHON_HOOKS and "get_ipython" in dotted or node.attr in (
                "input_transformers_cleanup", "input_transformers_post", "ast_transformers",
                "input_transformer_manager", "set_custom_exc"):
            self.flag(node, f"touches IPython's shell ({dotted or node.attr}): it can change how later cells run")
        if node.attr == "modules" and dotted.split(".")[0] in ("sys", "__import__()"):
            self.flag(node, "uses sys.modules (reaches library modules by name)")
        if node.attr in ("register", "unregister", "callbacks") and dotted.endswith(f"events.{node.attr}"):
            self.flag(node, "registers IPython events (code run around every cell)")
        self.generic_visit(node)

    def visit_Call(self, node):
        dotted = _dotted(node.func) or ""
        parts = tuple(dotted.split(".")[-2:]) if "." in dotted else ()
        if _CALLS.get(parts):
            self.flag(node, _CALLS[parts])
        if dotted in ("setattr", "delattr") and node.args:
            target = _dotted(node.args[0]) or ""
            root = target.split(".")[0].split("[")[0].removesuffix("()")
            if root in self.modules or root in ("__import__", "importlib.import_module", "vars"):
                self.flag(node, f"{dotted}() on {target} (patching a library attribute)")
        if dotted in ("__import__", "importlib.import_module") and node.args:
            arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.split(".")[0] in (
                    "builtins", "sys", "coursekit", "IPython", "nbgrader", "sqlite3"):
                self.flag(node, f"imports {arg.value} dynamically")
        if dotted.endswith(("mock.patch", "patch.object", "mock.patch.object")):
            self.flag(node, f"{dotted}() (patches attributes)")
        parent = getattr(node, "parent", None)
        if dotted == "get_ipython" and not (isinstance(parent, ast.Attribute) and parent.attr in _IPYTHON_BENIGN):
            self.flag(node, "uses the IPython shell object (get_ipython())")
        self.generic_visit(node)

    def visit_Constant(self, node):
        if isinstance(node.value, str):
            if "gradebook" in node.value.lower():
                self.flag(node, f"mentions the gradebook ({node.value[:40]!r})")
            if "COURSEKIT_SEAL" in node.value or "sealed_test" in node.value:
                self.flag(node, "mentions the grader's seal (COURSEKIT_SEAL)")
        self.generic_visit(node)


def scan_source(source: str, label: str, modules: set[str] | frozenset = frozenset()) -> list[Flag]:
    """Flags for one cell of learner code; ``modules`` are names bound by imports anywhere in the notebook."""
    code = _python(source)
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        found = [(n + 1, what) for n, line in enumerate(source.splitlines()) for rx, what in _TEXT_PATTERNS
                 if rx.search(line)]
    else:
        for node in ast.walk(tree):
            for child in ast.iter_child_nodes(node):
                child.parent = node
        visitor = _Visitor(set(modules))
        visitor.visit(tree)
        found = visitor.found
    flags, seen = [], set()
    for line, what in sorted(found):
        if (line, what) not in seen:
            seen.add((line, what))
            flags.append(Flag(label, line, what))
    return flags


def scan_cells(cells, modules: set[str] | frozenset = frozenset()) -> list[Flag]:
    """Flags for ``[(label, source), ...]``."""
    return [flag for label, source in cells for flag in scan_source(source, label, modules)]


__all__ = ["Flag", "imported_names", "scan_cells", "scan_source"]
