"""``coursekit report``: every measured variant on one Pareto plot (accuracy vs latency vs size).

Variants come from two places:

* ``coursekit compress`` output folders (their ``log.json``): the baseline and every step's validated model,
  labelled ``recipe: step`` (a rolled-back attempt is shown too, marked as such: it was measured);

Latency is the *minimum* over the timed samples (ONNX Runtime, batch 1): on a shared, busy machine the median
moves with the other processes, while the minimum is the least disturbed measurement of the model's own cost.
* benchmark-suite files written by ``coursekit bench --suite NAME --json FILE`` (``{"suite", "hardware",
  "records"}``, records from ``coursekit.bench.make_record``): records are grouped by (model, variant); the
  accuracy comes from any record of the group, the size from any record with ``size_bytes``, the latency from
  batch-1 record (``latency_ms_min``; ONNX Runtime when the suite has a ``runtime`` field). Groups without all three are
  skipped and counted.

Outputs: ``pareto.png`` (matplotlib, two panels), ``pareto.html`` (one self-contained page: the data as JSON,
an inline SVG drawn by vanilla JavaScript, no network access: hover shows the label and numbers, dominated
points are grey, a selector switches accuracy-vs-latency / accuracy-vs-size), ``variants.json``; a compress
run also gets ``report.md``. Latencies measured on different machines or in different runs are not comparable;
the page lists the sources so a reader can tell.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

from coursekit.pipeline.pareto import pareto_front

VIEWS = {"latency": "latency_ms", "size": "size_bytes"}


# ----------------------------------------------------------------------------------------------- gathering
def _variant(label, source, metrics_or_record, status, kind, **extra) -> dict:
    return {"label": label, "source": source, "kind": kind, "status": status, **metrics_or_record, **extra}


def variants_from_log(log: dict, source: str = "") -> list[dict]:
    """The baseline and every step of a compress log as variants (accuracy on the gate split, ORT latency)."""
    name = log["recipe"]["name"]
    out = []
    for record in [log["baseline"], *log.get("steps", [])]:
        m = record["metrics"]
        status = record["status"]
        label = f"{name}: {record['label']}" + (" (rolled back)" if status == "rolled_back" else "")
        out.append(_variant(label, source, {"accuracy": m["accuracy"], "latency_ms": m["latency_ms_min"]["ort"],
                                            "size_bytes": m["size_bytes"]}, status, "recipe",
                            recipe=name, step=record["label"], min_class_accuracy=m.get("min_class_accuracy"),
                            robust_accuracy=m.get("robust_accuracy")))
    return out


def variants_from_suite(result: dict, source: str = "") -> tuple[list[dict], list[str]]:
    """Variants of a benchmark-suite result; also the (model/variant) names skipped for a missing metric."""
    suite = result.get("suite") or "suite"
    groups: dict[tuple, list[dict]] = {}
    for r in result.get("records", []):
        groups.setdefault((r.get("model"), r.get("variant")), []).append(r)
    out, skipped = [], []
    for (model, variant), records in groups.items():
        acc = next((r["accuracy"] for r in records if r.get("accuracy") is not None), None)
        size = next((r["size_bytes"] for r in records if r.get("size_bytes")), None)
        timed = [r for r in records if (r.get("latency_ms_min") or r.get("latency_ms_median")) and r.get("batch")]
        timed.sort(key=lambda r: (r["batch"] != 1, r.get("runtime", "ort") != "ort", r["batch"]))
        if acc is None or size is None or not timed:
            skipped.append(f"{model}/{variant}")
            continue
        t = timed[0]
        runtime = t.get("runtime")
        label = f"{suite}: {model}/{variant}" + (f" ({runtime})" if runtime else "")
        latency = t.get("latency_ms_min") or t["latency_ms_median"]
        out.append(_variant(label, source, {"accuracy": float(acc), "latency_ms": float(latency),
                                            "size_bytes": float(size)}, "measured", "suite", suite=suite,
                            batch=t["batch"]))
    return out, skipped


def _json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{str(path)!r} is not a JSON file ({err})") from err


def gather(*paths) -> dict:
    """Variants from compress folders (or their ``log.json``) and suite JSON files; a folder without a log is
    searched for compress folders (one level down) and ``*.json`` suite files.

    Returns ``{"variants": [...], "sources": [...], "skipped": [...]}``. Raises FileNotFoundError for a missing
    path and ValueError for a file that is neither a compress log nor a suite result, or when nothing is found.
    """
    if not paths:
        raise ValueError("give at least one compress output folder or suite JSON file")
    variants, sources, skipped = [], [], []

    def add_file(path: Path, strict: bool) -> None:
        data = _json(path) if strict else _try_json(path)
        if data is None:
            return
        if isinstance(data, dict) and "steps" in data and "baseline" in data and "recipe" in data:
            variants.extend(variants_from_log(data, str(path.parent)))
            sources.append({"path": str(path.parent), "kind": "compress", "name": data["recipe"]["name"]})
        elif isinstance(data, dict) and isinstance(data.get("records"), list):
            found, missed = variants_from_suite(data, str(path))
            variants.extend(found)
            skipped.extend(f"{path.name}: {s}" for s in missed)
            sources.append({"path": str(path), "kind": "suite", "name": data.get("suite"),
                            "cpu": ((data.get("hardware") or {}).get("cpu") or {}).get("model")})
        elif strict:
            raise ValueError(f"{str(path)!r} is neither a compress log (log.json) nor a suite result "
                             "(coursekit bench --suite NAME --json FILE)")

    for p in paths:
        path = Path(p).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"{str(path)!r} does not exist; give compress output folders or suite JSON files")
        if path.is_file():
            add_file(path, strict=True)
        elif (path / "log.json").exists():
            add_file(path / "log.json", strict=True)
        else:
            for sub in sorted(path.iterdir()):
                if sub.is_dir() and (sub / "log.json").exists():
                    add_file(sub / "log.json", strict=True)
                elif sub.is_file() and sub.suffix == ".json":
                    add_file(sub, strict=False)
    if not variants:
        raise ValueError(f"no variant with accuracy, latency and size found in {', '.join(map(str, paths))}"
                         + (f" (skipped: {', '.join(skipped)})" if skipped else ""))
    mark_fronts(variants)
    return {"variants": variants, "sources": sources, "skipped": skipped}


def _try_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None


def mark_fronts(variants: list[dict]) -> list[dict]:
    """Add ``front_latency``, ``front_size`` (Pareto-optimal in that 2-D view) and ``front`` (over all three)."""
    for view, key in VIEWS.items():
        flags = pareto_front(variants, {"accuracy": "max", key: "min"})
        for v, f in zip(variants, flags):
            v[f"front_{view}"] = f
    for v, f in zip(variants, pareto_front(variants)):
        v["front"] = f
    return variants


# ----------------------------------------------------------------------------------------------- outputs
def draw_view(ax, variants: list[dict], view: str = "latency", front=None, labels: bool = True) -> None:
    """One panel: accuracy against ``view`` ("latency" or "size"); ``front`` (default: the variants'
    ``front_<view>`` flags) in red joined by a step line, dominated points grey, front labels annotated."""
    key = VIEWS[view]
    if front is None:
        front = [v[f"front_{view}"] for v in variants]
    on = sorted((v for v, f in zip(variants, front) if f), key=lambda v: v[key])
    rest = [v for v, f in zip(variants, front) if not f]
    ax.scatter([v[key] for v in rest], [100 * v["accuracy"] for v in rest], c="#bbbbbb", s=30, label="dominated")
    ax.scatter([v[key] for v in on], [100 * v["accuracy"] for v in on], c="#d62728", s=40, label="Pareto front",
               zorder=3)
    ax.step([v[key] for v in on], [100 * v["accuracy"] for v in on], where="post", c="#d62728", lw=1)
    if labels:
        for v in on:
            ax.annotate(v["label"], (v[key], 100 * v["accuracy"]), fontsize=6, xytext=(3, 3),
                        textcoords="offset points")
    values = [v[key] for v in variants]
    if values and min(values) > 0 and max(values) / min(values) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("latency (ms, batch 1, minimum)" if view == "latency" else "size (bytes)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_pareto(variants: list[dict], path=None):
    """Two panels (accuracy vs latency, accuracy vs size), dominated points grey, the front joined by a line."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, view in zip(axes, VIEWS):
        draw_view(ax, variants, view)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=120)
        plt.close(fig)
    return fig


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
#plot{border:1px solid #ddd;background:#fff}
.point{stroke:#fff;stroke-width:1;cursor:pointer}
.point.front{fill:#d62728}.point.dominated{fill:#bbbbbb}
.point:hover{stroke:#000;stroke-width:2}
#tooltip{position:absolute;pointer-events:none;background:#222;color:#fff;padding:4px 8px;border-radius:4px;
font-size:12px;display:none;white-space:nowrap}
table{border-collapse:collapse;font-size:13px;margin-top:1em}td,th{border:1px solid #ddd;padding:2px 6px}
.axis{font-size:11px;fill:#444}.grid{stroke:#eee}
</style></head><body>
<h1>__TITLE__</h1>
<p>Each point is one measured variant; red points are on the Pareto front (no other variant is at least as
accurate <em>and</em> as fast/small), grey points are dominated. Hover a point for its label.</p>
<label for="xaxis">x axis: </label>
<select id="xaxis"><option value="latency">accuracy vs latency</option>
<option value="size">accuracy vs size</option></select>
<div><svg id="plot" width="760" height="440" role="img" aria-label="Pareto plot"></svg></div>
<div id="tooltip"></div>
<h2>Sources</h2><ul>__SOURCES__</ul>__SKIPPED__
<h2>Variants</h2><table id="table"><thead><tr><th>label</th><th>accuracy %</th><th>latency ms</th>
<th>size bytes</th><th>front (acc/lat/size)</th></tr></thead><tbody>__ROWS__</tbody></table>
<script id="data" type="application/json">__DATA__</script>
<script>
(function(){
const data = JSON.parse(document.getElementById("data").textContent);
const svg = document.getElementById("plot"), tip = document.getElementById("tooltip");
const NS = "http://www.w3.org/2000/svg", W = 760, H = 440, M = {l: 70, r: 20, t: 20, b: 50};
const keys = {latency: ["latency_ms", "latency (ms, batch 1, minimum)"], size: ["size_bytes", "size (bytes)"]};
function el(name, attrs, text){const e=document.createElementNS(NS,name);
  for(const k in attrs) e.setAttribute(k, attrs[k]); if(text!==undefined) e.textContent=text; return e;}
function scale(lo, hi, a, b, log){ if(log){lo=Math.log10(lo);hi=Math.log10(hi);}
  if(hi===lo){lo-=0.5;hi+=0.5;} const pad=(hi-lo)*0.06; lo-=pad; hi+=pad;
  const f = v => a + ((log?Math.log10(v):v) - lo) / (hi - lo) * (b - a); f.lo=lo; f.hi=hi; f.log=log; return f;}
function fmt(v){return Math.abs(v)>=1000?Math.round(v).toLocaleString("en"):Number(v.toPrecision(3)).toString();}
function draw(view){
  while(svg.firstChild) svg.removeChild(svg.firstChild);
  const [key, title] = keys[view];
  const xs = data.map(d => d[key]), ys = data.map(d => 100 * d.accuracy);
  const log = Math.min(...xs) > 0 && Math.max(...xs) / Math.min(...xs) > 20;
  const sx = scale(Math.min(...xs), Math.max(...xs), M.l, W - M.r, log);
  const sy = scale(Math.min(...ys), Math.max(...ys), H - M.b, M.t, false);
  for(let i = 0; i <= 5; i++){
    const tx = sx.lo + (sx.hi - sx.lo) * i / 5, vx = log ? Math.pow(10, tx) : tx, px = sx(vx);
    svg.appendChild(el("line", {x1: px, x2: px, y1: M.t, y2: H - M.b, class: "grid"}));
    svg.appendChild(el("text", {x: px, y: H - M.b + 16, "text-anchor": "middle", class: "axis"}, fmt(vx)));
    const vy = sy.lo + (sy.hi - sy.lo) * i / 5, py = sy(vy);
    svg.appendChild(el("line", {x1: M.l, x2: W - M.r, y1: py, y2: py, class: "grid"}));
    svg.appendChild(el("text", {x: M.l - 6, y: py + 4, "text-anchor": "end", class: "axis"}, fmt(vy)));
  }
  svg.appendChild(el("text", {x: (M.l + W - M.r) / 2, y: H - 10, "text-anchor": "middle", class: "axis"},
                     title + (log ? " (log scale)" : "")));
  svg.appendChild(el("text", {x: 16, y: (M.t + H - M.b) / 2, "text-anchor": "middle", class: "axis",
                     transform: "rotate(-90 16 " + (M.t + H - M.b) / 2 + ")"}, "accuracy (%)"));
  const order = data.map((d, i) => i).sort((a, b) => data[a]["front_" + view] - data[b]["front_" + view]);
  for(const i of order){
    const d = data[i], front = d["front_" + view];
    const c = el("circle", {cx: sx(d[key]), cy: sy(100 * d.accuracy), r: front ? 6 : 5,
                            class: "point " + (front ? "front" : "dominated"), "data-label": d.label});
    c.appendChild(el("title", {}, d.label));
    c.addEventListener("mouseenter", ev => {
      tip.textContent = d.label + " | accuracy " + (100 * d.accuracy).toFixed(2) + "% | latency " +
        fmt(d.latency_ms) + " ms | size " + fmt(d.size_bytes) + " B" + (front ? " | Pareto front" : " | dominated");
      tip.style.display = "block"; tip.style.left = (ev.pageX + 12) + "px"; tip.style.top = (ev.pageY + 12) + "px";});
    c.addEventListener("mouseleave", () => { tip.style.display = "none"; });
    svg.appendChild(c);
  }
}
const select = document.getElementById("xaxis");
select.addEventListener("change", () => draw(select.value));
draw(select.value);
})();
</script></body></html>
"""


def html_page(variants: list[dict], sources=(), skipped=(), title: str = "Pareto front: accuracy vs latency vs size") \
        -> str:
    """The self-contained HTML page (no network: the data and the drawing code are inline)."""
    def yes(flag):
        return "yes" if flag else "no"

    rows = "".join(
        f"<tr><td>{html.escape(v['label'])}</td><td>{100 * v['accuracy']:.2f}</td><td>{v['latency_ms']:.4g}</td>"
        f"<td>{v['size_bytes']:,.0f}</td><td>{yes(v['front_latency'])}/{yes(v['front_size'])}/{yes(v['front'])}"
        f"</td></tr>" for v in variants)
    src = "".join(f"<li>{html.escape(s['kind'])} <code>{html.escape(str(s.get('name')))}</code>: "
                  f"{html.escape(s['path'])}{' (' + html.escape(s['cpu']) + ')' if s.get('cpu') else ''}</li>"
                  for s in sources)
    skip = (f"<p>Skipped (no accuracy, size or batch latency): {html.escape(', '.join(skipped))}</p>"
            if skipped else "")
    keep = ("label", "accuracy", "latency_ms", "size_bytes", "front", "front_latency", "front_size", "status")
    data = json.dumps([{k: v.get(k) for k in keep} for v in variants]).replace("</", "<\\/")
    return (_PAGE.replace("__TITLE__", html.escape(title)).replace("__SOURCES__", src)
            .replace("__SKIPPED__", skip).replace("__ROWS__", rows).replace("__DATA__", data))


def _check_out(out, overwrite: bool, names) -> Path:
    folder = Path(out).expanduser()
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"--out {str(folder)!r} is a file; give a folder for the report")
    if not folder.parent.exists():
        raise FileNotFoundError(f"--out {str(folder)!r}: folder {str(folder.parent)!r} does not exist")
    existing = [n for n in names if (folder / n).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"--out {str(folder)!r} already holds {', '.join(existing)}; choose another folder "
                              "or pass --force (overwrite=True) to replace them")
    folder.mkdir(exist_ok=True)
    return folder


REPORT_FILES = ("pareto.html", "pareto.png", "variants.json")


def report(*paths, out, overwrite: bool = False, title: str | None = None) -> dict:
    """Gather variants from ``paths`` (compress folders, suite JSON files) and write ``pareto.html``,
    ``pareto.png`` and ``variants.json`` into folder ``out``; returns what ``gather`` returned plus ``files``."""
    from coursekit._paths import check_output_file

    folder = _check_out(out, overwrite, REPORT_FILES)
    check_output_file("--out", folder / REPORT_FILES[0])
    found = gather(*paths)
    (folder / "pareto.html").write_text(html_page(found["variants"], found["sources"], found["skipped"],
                                                  title or "Pareto front: accuracy vs latency vs size"))
    plot_pareto(found["variants"], folder / "pareto.png")
    (folder / "variants.json").write_text(json.dumps(found, indent=2))
    found["files"] = [str(folder / n) for n in REPORT_FILES]
    return found


# ----------------------------------------------------------------------------------------------- one run
def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def run_markdown(log: dict) -> str:
    """``report.md`` of a compress run: budget verdict, then one row per step (status, accuracy, size, latency)."""
    r, final, verdict = log["recipe"], log["final"], log["budget"]
    lines = [f"# Compression report: {r['name']}", "", r.get("description") or "", "",
             (f"Model `{r['model']['name']}` on `{r['model']['dataset']}`"
             f"{' (fast mode: shortened training)' if log.get('fast') else ''}. Budget "
             f"{'**met**' if verdict['met'] else '**not met**'}:"), ""]
    for key, item in verdict["items"].items():
        lines.append(f"- {key}: target {item['target']:g}, measured {item['measured']:.4g} "
                     f"({'met' if item['met'] else 'NOT met'})")
    lines += ["", ("| step | status | acc % (gate) | test % | worst class % | noisy % | size B | x smaller | "
              "ORT ms (median) | speedup (median) | speedup (min) |"), "|---|---|---|---|---|---|---|---|---|---|---|"]
    for rec in [log["baseline"], *log["steps"]]:
        m = rec["metrics"]
        lines.append(f"| {rec['label']} | {rec['status']} | {_pct(m['accuracy'])} | {_pct(m['test_accuracy'])} | "
                     f"{_pct(m['min_class_accuracy'])} | {_pct(m['robust_accuracy'])} | {m['size_bytes']:,} | "
                     f"{m['size_ratio']:.2f} | {m['latency_ms']['ort']:.4g} | {m['speedup']:.2f} | "
                     f"{m['speedup_min']:.2f} |")
    rolled = [rec for rec in log["steps"] if rec["status"] == "rolled_back"]
    if rolled:
        lines += ["", "Rolled back (never kept): " + "; ".join(f"{rec['label']}: {rec['reason']}" for rec in rolled)]
    lines += ["", (f"Final model: `{final['file']}` after {', '.join(final['kept_steps']) or 'no step'}; "
              f"{_pct(final['metrics']['accuracy'])} % ({final['drop_points']:.2f} points lost), "
              f"{final['metrics']['size_bytes']:,} bytes ({final['metrics']['size_ratio']:.2f}x smaller), "
              f"{final['metrics']['speedup_min']:.2f}x faster (minimum latency; median "
              f"{final['metrics']['speedup']:.2f}x) in ONNX Runtime at batch {final['metrics']['batch']} "
              "(interleaved with the baseline on this machine).")]
    return "\n".join(lines) + "\n"


def write_run_report(out, log: dict) -> list[Path]:
    """``report.md`` and ``report.html`` (the Pareto page of this run's steps) in a compress output folder."""
    out = Path(out)
    (out / "report.md").write_text(run_markdown(log))
    variants = mark_fronts(variants_from_log(log, str(out)))
    (out / "report.html").write_text(html_page(variants, [{"kind": "compress", "name": log["recipe"]["name"],
                                                           "path": str(out)}],
                                               title=f"{log['recipe']['name']}: every step on the Pareto plot"))
    return [out / "report.md", out / "report.html"]


__all__ = ["VIEWS", "draw_view", "gather", "html_page", "mark_fronts", "plot_pareto", "report", "run_markdown",
           "variants_from_log", "variants_from_suite", "write_run_report"]
