"""A notebook widget over the Pareto data: choose the axis, the sources and an accuracy floor, and watch the
front change.

``pareto_explorer(paths_or_variants)`` takes what ``coursekit report`` takes (compress folders, suite JSON files)
or the variants of ``coursekit.pipeline.report.gather``. The front is recomputed on the points you keep: removing
a recipe can put a dominated point back on the front, which a static plot cannot show.
"""
from __future__ import annotations

from coursekit.pipeline.pareto import pareto_front
from coursekit.pipeline.report import VIEWS, draw_view, gather


def source_of(variant: dict) -> str:
    """The group a variant belongs to: its recipe or its suite."""
    return variant.get("recipe") or variant.get("suite") or variant.get("source") or "?"


def filtered_front(variants: list[dict], view: str, sources, min_accuracy: float = 0.0) -> tuple[list, list]:
    """The kept variants (from ``sources``, accuracy >= ``min_accuracy``) and their Pareto flags in ``view``."""
    kept = [v for v in variants if source_of(v) in set(sources) and v["accuracy"] >= min_accuracy]
    return kept, pareto_front(kept, {"accuracy": "max", VIEWS[view]: "min"}) if kept else []


def pareto_explorer(data):
    """Axis toggle, source checkboxes and an accuracy floor over ``data`` (paths, or a list of variants).

    Returns the widget box; ``box.state()`` gives the kept variants and their front flags (for tests and for
    reading the numbers in a cell).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt
    from IPython.display import display

    if isinstance(data, (list, tuple)) and data and isinstance(data[0], dict):
        variants = list(data)
    else:
        paths = data if isinstance(data, (list, tuple)) else [data]
        variants = gather(*paths)["variants"]
    if not variants:
        raise ValueError("data holds no variant; give compress folders, suite JSON files or gather()'s variants")
    groups = list(dict.fromkeys(source_of(v) for v in variants))
    view = widgets.ToggleButtons(options=[("accuracy vs latency", "latency"), ("accuracy vs size", "size")])
    checks = [widgets.Checkbox(value=True, description=g, indent=False) for g in groups]
    floor = widgets.FloatSlider(value=0.0, min=0.0, max=100.0, step=0.5, description="min acc %",
                                continuous_update=False)
    labels = widgets.Checkbox(value=True, description="label the front", indent=False)
    table = widgets.HTML()
    output = widgets.Output()

    def state():
        chosen = [c.description for c in checks if c.value]
        return filtered_front(variants, view.value, chosen, floor.value / 100)

    def refresh(_=None):
        kept, front = state()
        output.clear_output(wait=True)
        with output:
            fig, ax = plt.subplots(figsize=(7, 4))
            if kept:
                draw_view(ax, kept, view.value, front=front, labels=labels.value)
            ax.set_title(f"{sum(front)} of {len(kept)} variants on the front")
            fig.tight_layout()
            plt.close(fig)
            display(fig)
        key = VIEWS[view.value]
        rows = "".join(f"<tr><td>{v['label']}</td><td>{100 * v['accuracy']:.2f}</td><td>{v[key]:.4g}</td></tr>"
                       for v, f in sorted(zip(kept, front), key=lambda p: -p[0]["accuracy"]) if f)
        table.value = (f"<table><tr><th>on the front</th><th>accuracy %</th><th>{key}</th></tr>{rows}</table>")

    for w in (view, floor, labels, *checks):
        w.observe(refresh, names="value")
    refresh()
    box = widgets.VBox([view, widgets.HBox(checks), widgets.HBox([floor, labels]), output, table])
    box.state = state
    box.refresh = refresh
    return box


__all__ = ["filtered_front", "pareto_explorer", "source_of"]
