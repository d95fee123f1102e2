"""coursekit.pipeline (chapter 09): compression recipes run step by step with validation, and the Pareto report.

    >>> from coursekit.pipeline import compress, report, load_recipe, pareto_front
    >>> log = compress("cnn1d-wide-4x", "out/cnn1d")        # doctest: +SKIP  (a bundled recipe, or a .toml file)
    >>> log["budget"]["met"]                                 # doctest: +SKIP
    >>> report("out/cnn1d", "ptq.json", out="pareto")        # doctest: +SKIP

* ``recipe``: the recipe format (TOML/YAML) and its checks; ``steps``: one function per step kind, calling
  the library; ``validate``: accuracy, per-class accuracy, robustness, size and latency of each step's ONNX
  file; ``compress``: the run (rollback, fine-tune on failure, resumable folder, export, model card);
  ``pareto``: the Pareto front; ``report``: PNG + offline HTML over compress runs and suite results;
  ``explore``: the notebook widget.
"""
from coursekit.pipeline.compress import budget_verdict, compress, prepare_output
from coursekit.pipeline.pareto import OBJECTIVES, dominated, dominates, pareto_front
from coursekit.pipeline.recipe import (
    COMMON_SETTINGS,
    STEP_SETTINGS,
    Recipe,
    Step,
    check_feasible,
    list_recipes,
    load_recipe,
    parse_recipe,
    recipes_dir,
    smallest_model_bytes,
)
from coursekit.pipeline.report import gather, html_page, plot_pareto, report, write_run_report

__all__ = [
    "COMMON_SETTINGS", "OBJECTIVES", "STEP_SETTINGS", "Recipe", "Step", "budget_verdict", "check_feasible",
    "compress", "dominated", "dominates", "gather", "html_page", "list_recipes", "load_recipe", "pareto_front",
    "parse_recipe", "plot_pareto", "prepare_output", "recipes_dir", "report", "smallest_model_bytes",
    "write_run_report",
]
