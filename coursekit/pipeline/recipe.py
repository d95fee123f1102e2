"""Compression recipes: the file format of ``coursekit compress`` and its checks.

A recipe is a TOML (or YAML) file with four parts, read by :func:`load_recipe` into a :class:`Recipe`:

.. code-block:: toml

    name = "cnn1d-wide-4x"
    description = "channel pruning, then INT8 in ONNX Runtime"

    [model]                       # a course model (coursekit.models.list_models()) and its data set
    name = "cnn1d"
    dataset = "mnist1d"
    kwargs = { channels = 128 }   # passed to build_model / pretrained
    seed = 0

    [budget]
    max_accuracy_drop = 1.0       # points (percentage points of accuracy) below the pretrained model
    min_size_ratio = 4.0          # optional: at least 4x smaller ONNX file than the baseline
    min_speedup = 2.0             # optional: at least 2x faster (batch 1, ONNX Runtime, same run)
    target_size_bytes = 50000     # optional: absolute targets
    target_latency_ms = 0.05
    on_fail = "rollback"          # or "finetune": fine-tune a step that broke the budget, then re-check

    [validate]                    # optional: how every step is measured
    split = "val"                 # the split the accuracy gate reads ("val" or "test"); both are reported
    noise_std = 0.1               # robustness: accuracy with N(0, (noise_std * std(x))^2) added to the inputs

    [[steps]]
    kind = "prune"
    method = "channel"
    amount = 0.5
    epochs = 5

    [[steps]]
    kind = "quantize"
    method = "ptq"
    backend = "ort"

The steps and their settings are listed in ``STEP_SETTINGS`` (with defaults); every step also takes
``COMMON_SETTINGS`` (``label``, ``on_fail``, ``recovery_epochs``, ``recovery_lr``). An unknown step, setting or
key raises a ValueError that names it, lists the allowed ones and suggests the closest (``difflib``); a budget
that no model can meet (a negative accuracy drop, a size below the smallest ONNX classifier) is refused before
anything runs. The order question ("prune then quantize, or quantize then prune?", Han et al. 2016, sec. 3) is
answered by writing both orders as two recipes and comparing their logs.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from coursekit._validate import check_choice, check_int, check_positive, check_probability

REQUIRED = object()
"""Marks a setting without a default."""

STEP_SETTINGS: dict[str, dict] = {
    # Hinton et al. 2015: train ``student`` (a course model name; default: keep the current model) on the frozen
    # teacher's soft targets. teacher: "baseline" (the recipe's pretrained model) or a course model name.
    "distill": {"teacher": REQUIRED, "teacher_kwargs": {}, "teacher_checkpoint": None, "student": None,
                "student_kwargs": {}, "epochs": 10, "T": 4.0, "alpha": 0.9, "lr": 1e-3},
    # magnitude (per layer) / global (one threshold) unstructured masks (Han et al. 2015) or channel pruning
    # (Li et al. 2017); schedule "gradual" follows Zhu & Gupta 2017's cubic schedule during ``epochs``.
    "prune": {"method": REQUIRED, "amount": REQUIRED, "schedule": "oneshot", "epochs": 0, "lr": 0.01,
              "multiple_of": 1, "importance": "l2"},
    # truncated SVD of every Linear layer (Denton et al. 2014): by kept energy or a fixed rank.
    "lowrank": {"energy": None, "rank": None, "epochs": 0, "lr": 0.01},
    # ptq: coursekit.quant.quantize_model (backend "torch") or ONNX Runtime's static INT8 (backend "ort");
    # qat: coursekit.quant.prepare_qat + fine-tune + convert (LSQ, Esser et al. 2020).
    "quantize": {"method": "ptq", "bits": 8, "act_bits": 8, "granularity": "per_channel", "backend": "ort",
                 "calibration": "minmax", "calibration_batches": 8, "epochs": 3, "lr": 1e-3},
    # SGD + cosine fine-tune (coursekit.train.finetune); keep_zeros keeps pruned weights at zero.
    "finetune": {"epochs": 3, "lr": 0.01, "keep_zeros": True},
}
COMMON_SETTINGS = {"label": None, "on_fail": None, "recovery_epochs": 3, "recovery_lr": 0.01}
ON_FAIL = ("rollback", "finetune")
CHOICES = {
    ("prune", "method"): ("magnitude", "global", "channel"),
    ("prune", "schedule"): ("oneshot", "gradual"),
    ("prune", "importance"): ("l2", "l1", "input"),
    ("quantize", "method"): ("ptq", "qat"),
    ("quantize", "granularity"): ("per_channel", "per_tensor"),
    ("quantize", "backend"): ("ort", "torch"),
    ("quantize", "calibration"): ("minmax", "entropy", "percentile"),
}
TOP_KEYS = ("name", "description", "model", "budget", "validate", "data", "steps")
MODEL_KEYS = {"name": REQUIRED, "dataset": None, "kwargs": {}, "seed": 0}
BUDGET_KEYS = {"max_accuracy_drop": REQUIRED, "min_size_ratio": None, "min_speedup": None,
               "target_size_bytes": None, "target_latency_ms": None, "on_fail": "rollback"}
VALIDATE_KEYS = {"split": "val", "noise_std": 0.1, "latency_batch": 1, "backends": ["ort"], "repeats": 20,
                 "threads": 1}
DATA_KEYS = {"batch_size": 64}


def _unknown(where: str, key: str, allowed) -> ValueError:
    """ValueError for an unknown ``key`` in ``where``: lists the allowed keys and suggests the closest one."""
    allowed = list(allowed)
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ValueError(f"{where}: unknown key {key!r}{hint} Allowed: {', '.join(allowed)}")


def _fill(where: str, given, spec: dict) -> dict:
    """``given`` checked against ``spec`` (key -> default, or REQUIRED), with the defaults filled in."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise ValueError(f"{where} must be a table of settings (key = value), got {type(given).__name__}")  # noqa: TRY004 (bad file content: a usage error)
    for key in given:
        if key not in spec:
            raise _unknown(where, key, spec)
    out = {}
    for key, default in spec.items():
        if key in given:
            out[key] = given[key]
        elif default is REQUIRED:
            raise ValueError(f"{where}: missing required key {key!r}")
        else:
            out[key] = default.copy() if isinstance(default, (dict, list)) else default
    return out


@dataclass
class Step:
    """One step of a recipe: ``kind`` (a key of ``STEP_SETTINGS``) and its complete settings."""

    kind: str
    settings: dict
    index: int = 0

    @property
    def label(self) -> str:
        return self.settings.get("label") or f"{self.index:02d}-{self.kind}"

    @property
    def key(self) -> str:
        """Folder-safe name of this step's files: ``NN-kind``."""
        return f"{self.index:02d}-{self.kind}"


@dataclass
class Recipe:
    """A checked recipe: model, steps, budget, validation and data settings (every default filled in)."""

    name: str
    model: dict
    steps: list
    budget: dict
    validate: dict = field(default_factory=lambda: dict(VALIDATE_KEYS))
    data: dict = field(default_factory=lambda: dict(DATA_KEYS))
    description: str = ""
    source: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("source")
        return d

    def fingerprint(self) -> str:
        """Hash of everything that changes the result (not the file name): resuming checks it."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True, default=repr).encode()).hexdigest()[:16]


def _check_step(where: str, kind: str, s: dict) -> None:
    """Types and ranges of one step's settings (names were checked by ``_fill``)."""
    for (k, name), allowed in CHOICES.items():
        if k == kind:
            check_choice(f"{where} {name}", s[name], allowed)
    if s["on_fail"] is not None:
        check_choice(f"{where} on_fail", s["on_fail"], ON_FAIL)
    check_int(f"{where} recovery_epochs", s["recovery_epochs"], min_value=1)
    check_positive(f"{where} recovery_lr", s["recovery_lr"])
    if "epochs" in s:
        check_int(f"{where} epochs", s["epochs"], min_value=0)
    if "lr" in s:
        check_positive(f"{where} lr", s["lr"])
    if kind == "distill":
        from coursekit.models import list_models

        teachers = ("baseline", *list_models())
        if not isinstance(s["teacher"], str) or s["teacher"] not in teachers:
            close = difflib.get_close_matches(str(s["teacher"]), teachers, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"{where}: teacher={s['teacher']!r} is not a teacher the pipeline can load{hint}; "
                             f"choose 'baseline' (the recipe's pretrained model) or a course model: "
                             f"{', '.join(list_models())}")
        if s["student"] is not None:
            check_choice(f"{where} student", s["student"], list_models())
        check_int(f"{where} epochs", s["epochs"], min_value=1)
        check_probability(f"{where} alpha", s["alpha"])
        check_positive(f"{where} T", s["T"])
    elif kind == "prune":
        amount = s["amount"]
        if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0 < amount < 1:
            raise ValueError(f"{where} amount={amount!r} must be a fraction of weights or channels in (0, 1)")
        check_int(f"{where} multiple_of", s["multiple_of"], min_value=1)
        if s["schedule"] == "gradual" and s["method"] == "channel":
            raise ValueError(f"{where}: schedule='gradual' applies to unstructured masks (method 'magnitude' or "
                             "'global'); channel pruning removes channels at once, use schedule='oneshot'")
        if s["schedule"] == "gradual" and s["epochs"] < 1:
            raise ValueError(f"{where}: schedule='gradual' prunes while training, so epochs must be >= 1")
    elif kind == "lowrank":
        if (s["energy"] is None) == (s["rank"] is None):
            raise ValueError(f"{where}: give exactly one of energy (a fraction in (0, 1]) or rank (an int >= 1)")
        if s["energy"] is not None:
            check_probability(f"{where} energy", s["energy"], low=1e-9)
        else:
            check_int(f"{where} rank", s["rank"], min_value=1)
    elif kind == "quantize":
        check_int(f"{where} bits", s["bits"], min_value=2, max_value=8)
        check_int(f"{where} act_bits", s["act_bits"], min_value=2, max_value=8)
        check_int(f"{where} calibration_batches", s["calibration_batches"], min_value=1)
        if s["backend"] == "ort" and (s["method"] != "ptq" or s["bits"] != 8 or s["act_bits"] != 8):
            raise ValueError(f"{where}: backend='ort' is ONNX Runtime's static INT8 PTQ (method='ptq', bits=8, "
                             f"act_bits=8); got method={s['method']!r}, bits={s['bits']}, act_bits={s['act_bits']}."
                             " Use backend='torch' for other bit widths or QAT")
    elif kind == "finetune":
        check_int(f"{where} epochs", s["epochs"], min_value=1)


def _steps(raw, on_fail_default: str) -> list[Step]:
    if not isinstance(raw, list) or not raw:
        raise ValueError("steps must be a non-empty list of [[steps]] tables, each with kind = one of: "
                         + ", ".join(STEP_SETTINGS))
    steps = []
    for i, entry in enumerate(raw, start=1):
        if not isinstance(entry, dict) or "kind" not in entry:
            raise ValueError(f"step {i}: missing kind; choose one of: {', '.join(STEP_SETTINGS)}")
        kind = entry["kind"]
        if kind not in STEP_SETTINGS:
            close = difflib.get_close_matches(str(kind), list(STEP_SETTINGS), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"step {i}: unknown step kind {kind!r}{hint} Allowed: {', '.join(STEP_SETTINGS)}")
        where = f"step {i} ({kind})"
        settings = _fill(where, {k: v for k, v in entry.items() if k != "kind"},
                         {**STEP_SETTINGS[kind], **COMMON_SETTINGS})
        _check_step(where, kind, settings)
        ort_graph = kind == "quantize" and settings["backend"] == "ort"
        if settings["on_fail"] == "finetune" and ort_graph:
            raise ValueError(f"{where}: on_fail='finetune' cannot fine-tune an ONNX Runtime INT8 graph; use "
                             "on_fail='rollback', or method='qat' with backend='torch'")
        # the budget's default applies where it can: an ORT INT8 graph can only be rolled back
        settings["on_fail"] = settings["on_fail"] or ("rollback" if ort_graph else on_fail_default)
        steps.append(Step(kind, settings, index=i))
    for step in steps[:-1]:
        if step.kind == "quantize" and step.settings["backend"] == "ort":
            later = ", ".join(s.label for s in steps[step.index:])
            raise ValueError(f"step {step.index} (quantize, backend='ort') produces an ONNX Runtime graph that later "
                             f"steps cannot change ({later}); put it last, or use backend='torch'")
    return steps


def _check_budget(b: dict) -> None:
    drop = b["max_accuracy_drop"]
    if isinstance(drop, bool) or not isinstance(drop, (int, float)) or not math.isfinite(drop):
        raise ValueError(f"budget max_accuracy_drop={drop!r} must be a number of accuracy points, e.g. 1.0")
    if drop < 0:
        raise ValueError(f"budget max_accuracy_drop={drop} is impossible: a drop below 0 asks every step to "
                         "improve accuracy; give the points you accept to lose (>= 0), e.g. 1.0")
    if drop > 100:
        raise ValueError(f"budget max_accuracy_drop={drop} is more than 100 points; accuracy is a percentage")
    for key in ("min_size_ratio", "min_speedup", "target_size_bytes", "target_latency_ms"):
        if b[key] is not None:
            check_positive(f"budget {key}", b[key])
    check_choice("budget on_fail", b["on_fail"], ON_FAIL)


def parse_recipe(data: dict, source: str | None = None) -> Recipe:
    """A :class:`Recipe` from a parsed TOML/YAML mapping; every error names the key and what is allowed."""
    if not isinstance(data, dict):
        raise ValueError(f"a recipe must be a mapping of {', '.join(TOP_KEYS)}, got {type(data).__name__}")  # noqa: TRY004 (bad file content: a usage error)
    for key in data:
        if key not in TOP_KEYS:
            raise _unknown("recipe", key, TOP_KEYS)
    for key in ("model", "budget", "steps"):
        if key not in data:
            raise ValueError(f"recipe: missing required key {key!r} (a recipe needs model, budget and steps)")
    model = _fill("[model]", data["model"], MODEL_KEYS)
    from coursekit.models import DEFAULT_DATASET, list_models

    check_choice("[model] name", model["name"], list_models())
    model["dataset"] = model["dataset"] or DEFAULT_DATASET[model["name"]]
    if model["dataset"] is None:
        raise ValueError(f"[model] name={model['name']!r} has no default data set; give dataset = ...")
    from coursekit.data import list_datasets

    check_choice("[model] dataset", model["dataset"], list_datasets())
    check_int("[model] seed", model["seed"], min_value=0)
    if not isinstance(model["kwargs"], dict):
        raise ValueError(f"[model] kwargs must be a table, got {model['kwargs']!r}")  # noqa: TRY004 (bad file content: a usage error)
    budget = _fill("[budget]", data["budget"], BUDGET_KEYS)
    _check_budget(budget)
    validate = _fill("[validate]", data.get("validate"), VALIDATE_KEYS)
    check_choice("[validate] split", validate["split"], ("val", "test"))
    check_positive("[validate] noise_std", validate["noise_std"], allow_zero=True)
    check_int("[validate] latency_batch", validate["latency_batch"], min_value=1)
    check_int("[validate] repeats", validate["repeats"], min_value=3)
    check_int("[validate] threads", validate["threads"], min_value=1)
    backends = validate["backends"]
    backends = [backends] if isinstance(backends, str) else list(backends)
    for b in backends:
        check_choice("[validate] backends", b, ("ort", "torch"))
    if "ort" not in backends:
        backends.insert(0, "ort")   # the deployed artifact is ONNX: its latency is always measured
    validate["backends"] = backends
    dataset_keys = _fill("[data]", data.get("data"), DATA_KEYS)
    check_int("[data] batch_size", dataset_keys["batch_size"], min_value=1)
    steps = _steps(data["steps"], budget["on_fail"])
    name = data.get("name") or (Path(source).stem if source else "recipe")
    return Recipe(name=str(name), model=model, steps=steps, budget=budget, validate=validate, data=dataset_keys,
                  description=str(data.get("description", "")), source=source)


def _read(path: Path) -> dict:
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"recipe {str(path)!r} is not valid YAML: {err}") from err
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: tomllib arrived in 3.11
        try:
            import tomli as tomllib
        except ModuleNotFoundError as err:
            raise ValueError(f"recipe {str(path)!r}: reading TOML on Python 3.10 needs the tomli package "
                             "(pip install tomli), or write the recipe as YAML (.yaml)") from err
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"recipe {str(path)!r} is not valid TOML: {err}") from err


def load_recipe(recipe) -> Recipe:
    """A :class:`Recipe` from a path (``.toml``, ``.yaml``/``.yml``), the name of a bundled example
    (``list_recipes()``), a mapping, or a Recipe (returned as is)."""
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, dict):
        return parse_recipe(recipe)
    if not isinstance(recipe, (str, Path)):
        raise TypeError(f"recipe must be a path, a bundled recipe name or a dict, got {type(recipe).__name__}")
    path = Path(recipe).expanduser()
    if not path.exists() and str(recipe) in list_recipes():
        path = recipes_dir() / f"{recipe}.toml"
    if not path.exists():
        raise FileNotFoundError(f"recipe {str(recipe)!r} does not exist; give a .toml/.yaml file or one of the "
                                f"bundled recipes: {', '.join(list_recipes())}")
    if path.suffix.lower() not in (".toml", ".yaml", ".yml"):
        raise ValueError(f"recipe {str(path)!r} must be a .toml, .yaml or .yml file")
    return parse_recipe(_read(path), source=str(path))


def recipes_dir() -> Path:
    """The folder of the example recipes shipped with coursekit."""
    return Path(__file__).parent / "recipes"


def list_recipes() -> list[str]:
    """Names of the bundled example recipes (``coursekit compress --recipe NAME`` accepts them)."""
    return sorted(p.stem for p in recipes_dir().glob("*.toml"))


def smallest_model_bytes(num_features: int, num_classes: int) -> int:
    """A lower bound on the ONNX file of any classifier with ``num_classes`` outputs: the bytes of the smallest
    graph that still maps an input to ``num_classes`` scores (one node, one 1-byte weight per class).

    Measured by exporting ``x[:, :1] * w`` with float32 ``w`` and removing 3 bytes per class (INT8 instead of
    FP32 weights); a ``target_size_bytes`` below it is impossible by construction. ``num_features`` only sizes
    the example input.
    """
    import tempfile

    import torch

    from coursekit.export import export_onnx

    class _Smallest(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(num_classes))

        def forward(self, x):
            return x.flatten(1)[:, :1] * self.w

    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(_Smallest(), torch.zeros(1, num_features), Path(tmp) / "smallest.onnx")
        return path.stat().st_size - 3 * num_classes


def check_feasible(recipe: Recipe) -> None:
    """Refuse a budget no model can meet on this recipe's data set (before any training)."""
    target = recipe.budget["target_size_bytes"]
    if target is None:
        return
    from coursekit.data import dataset_info

    info = dataset_info(recipe.model["dataset"])
    floor = smallest_model_bytes(info.num_features, info.num_classes)
    if target < floor:
        raise ValueError(f"budget target_size_bytes={target:g} is impossible by construction: the smallest ONNX "
                         f"classifier for {info.num_classes} classes takes at least {floor} bytes; give a larger "
                         "target (or min_size_ratio = 4 for 'at least 4x smaller')")


__all__ = ["COMMON_SETTINGS", "STEP_SETTINGS", "Recipe", "Step", "check_feasible", "list_recipes", "load_recipe",
           "parse_recipe", "recipes_dir", "smallest_model_bytes"]
