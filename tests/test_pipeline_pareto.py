"""The Pareto front against a brute-force O(n^2) reference on random points (with many ties), and the report's
gathering of variants from compress logs and benchmark-suite files."""
import json
import random

import pytest

from coursekit.pipeline import dominated, dominates, pareto_front
from coursekit.pipeline.report import gather, run_markdown, variants_from_suite

OBJ = {"accuracy": "max", "latency_ms": "min", "size_bytes": "min"}


def brute_force(points, objectives):
    """Point i is on the front iff no j is >= on every objective (oriented) and > on at least one."""
    def better_eq(a, b, key):
        return a[key] >= b[key] if objectives[key] == "max" else a[key] <= b[key]

    def strictly(a, b, key):
        return a[key] > b[key] if objectives[key] == "max" else a[key] < b[key]

    return [not any(all(better_eq(q, p, k) for k in objectives) and any(strictly(q, p, k) for k in objectives)
                    for q in points) for p in points]


@pytest.mark.parametrize("seed", range(40))
def test_front_matches_brute_force_with_ties(seed):
    rng = random.Random(seed)
    n, levels = rng.randint(0, 60), rng.choice([2, 3, 5, 1000])   # few levels: many exact ties
    points = [{"accuracy": rng.randrange(levels) / levels, "latency_ms": rng.randrange(levels) * 0.1,
               "size_bytes": rng.randrange(levels) * 1000} for _ in range(n)]
    points += [dict(p) for p in rng.sample(points, min(5, len(points)))]  # exact duplicates
    assert pareto_front(points, OBJ) == brute_force(points, OBJ)
    two = {"accuracy": "max", "latency_ms": "min"}
    assert pareto_front(points, two) == brute_force(points, two)
    assert dominated(points, OBJ) == [not f for f in brute_force(points, OBJ)]


def test_hand_computed_cases():
    a = {"accuracy": 0.9, "latency_ms": 1.0, "size_bytes": 100}
    b = {"accuracy": 0.8, "latency_ms": 2.0, "size_bytes": 100}       # worse than a everywhere: dominated
    c = {"accuracy": 0.95, "latency_ms": 3.0, "size_bytes": 500}      # more accurate, slower: a trade-off
    assert dominates(a, b) and not dominates(b, a) and not dominates(a, c) and not dominates(c, a)
    assert not dominates(a, dict(a))                                  # equal points do not dominate
    assert pareto_front([a, b, c, dict(a)]) == [True, False, True, True]


def test_bad_points_are_named():
    with pytest.raises(ValueError, match=r"points\[1\] has no 'size_bytes'"):
        pareto_front([{"accuracy": 1, "latency_ms": 1, "size_bytes": 1}, {"accuracy": 1, "latency_ms": 1}])
    with pytest.raises(ValueError, match=r"points\[0\]\['latency_ms'\]=nan must be a finite number"):
        pareto_front([{"accuracy": 1, "latency_ms": float("nan"), "size_bytes": 1}])
    with pytest.raises(ValueError, match=r"objectives\['accuracy'\]='up'"):
        pareto_front([], {"accuracy": "up"})


def suite_result():
    """Records as coursekit.bench.make_record writes them: accuracy rows at batch 0, timed rows at 1 and 64."""
    def rec(model, variant, batch, lat=None, size=None, acc=None, **extra):
        return {"model": model, "variant": variant, "device": "cpu", "batch": batch, "threads": 1,
                "latency_ms_median": lat, "size_bytes": size, "accuracy": acc, **extra}

    return {"suite": "ptq", "hardware": {"cpu": {"model": "Test CPU"}}, "records": [
        rec("cnn", "fp32", 1, lat=0.02, size=9000, runtime="torch"),
        rec("cnn", "fp32", 1, lat=0.01, size=9000, acc=0.98, runtime="ort"),
        rec("cnn", "fp32", 64, lat=0.3, size=9000, acc=0.98, runtime="ort"),
        rec("cnn", "int8", 64, lat=0.1, size=3000, acc=0.97),
        rec("cnn", "int8", 1, lat=0.025, size=3000, latency_ms_min=0.015),
        rec("cnn", "no_accuracy", 1, lat=0.01, size=1000),
        rec("cnn", "no_size", 1, lat=0.01, acc=0.5)]}


def test_suite_records_are_merged_per_variant():
    found, skipped = variants_from_suite(suite_result(), "ptq.json")
    by = {v["label"]: v for v in found}
    fp32, int8 = by["ptq: cnn/fp32 (ort)"], by["ptq: cnn/int8"]
    assert (fp32["latency_ms"], fp32["accuracy"], fp32["batch"]) == (0.01, 0.98, 1)   # batch 1, ORT row
    assert (int8["latency_ms"], int8["size_bytes"], int8["accuracy"]) == (0.015, 3000, 0.97)
    assert sorted(skipped) == ["cnn/no_accuracy", "cnn/no_size"]


def test_gather_from_folders_and_files(tmp_path):
    (tmp_path / "ptq.json").write_text(json.dumps(suite_result()))
    (tmp_path / "notes.json").write_text("[1, 2]")        # not a result: ignored inside a folder
    run = tmp_path / "run"
    run.mkdir()
    metrics = {"accuracy": 0.99, "test_accuracy": 0.98, "per_class": [1.0], "min_class_accuracy": 1.0,
               "robust_accuracy": 0.9, "size_bytes": 20000, "size_ratio": 1.0, "latency_ms": {"ort": 0.03},
               "latency_ms_min": {"ort": 0.02},
               "speedup": 1.0, "speedup_min": 1.0, "batch": 1}
    step = {**metrics, "accuracy": 0.97, "size_bytes": 5000, "size_ratio": 4.0, "latency_ms": {"ort": 0.05},
            "latency_ms_min": {"ort": 0.01},
            "speedup": 2.0, "speedup_min": 2.0}
    log = {"recipe": {"name": "r", "description": "", "model": {"name": "lenet", "dataset": "digits"}},
           "baseline": {"label": "baseline", "status": "baseline", "metrics": metrics},
           "steps": [{"label": "01-prune", "status": "kept", "metrics": step},
                     {"label": "02-quantize", "status": "rolled_back", "metrics": {**step, "accuracy": 0.5},
                      "reason": "lost 49 points"}]}
    (run / "log.json").write_text(json.dumps(log))
    found = gather(tmp_path)
    labels = [v["label"] for v in found["variants"]]
    assert labels == ["ptq: cnn/fp32 (ort)", "ptq: cnn/int8", "r: baseline", "r: 01-prune",   # in name order
                      "r: 02-quantize (rolled back)"]
    front = {v["label"]: v["front_latency"] for v in found["variants"]}
    assert front == dict(zip(labels, brute_force(found["variants"], {"accuracy": "max", "latency_ms": "min"})))
    assert not front["r: 02-quantize (rolled back)"]
    assert [v["latency_ms"] for v in found["variants"][2:]] == [0.02, 0.01, 0.01]   # minimum latency, not median
    with pytest.raises(ValueError, match="neither a compress log"):
        gather(tmp_path / "notes.json")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        gather(tmp_path / "nope")
    md = run_markdown({**log, "fast": True, "final": {"file": "model.onnx", "kept_steps": ["01-prune"],
                                                      "metrics": step, "drop_points": 2.0},
                       "budget": {"met": False, "items": {"max_accuracy_drop": {"target": 1, "measured": 2.0,
                                                                                 "met": False}}}})
    assert "**not met**" in md and "max_accuracy_drop: target 1, measured 2 (NOT met)" in md
    assert "Rolled back (never kept): 02-quantize: lost 49 points" in md


def test_explorer_recomputes_the_front_on_what_is_kept(tmp_path):
    from coursekit.pipeline.explore import pareto_explorer

    (tmp_path / "a.json").write_text(json.dumps(suite_result()))
    other = suite_result()
    other["suite"] = "better"
    for r in other["records"]:
        r["accuracy"] = None if r["accuracy"] is None else r["accuracy"] + 0.01   # dominates every ptq point
    (tmp_path / "b.json").write_text(json.dumps(other))
    box = pareto_explorer([tmp_path / "a.json", tmp_path / "b.json"])
    kept, front = box.state()
    assert len(kept) == 4 and sum(f for v, f in zip(kept, front) if v["suite"] == "ptq") == 0
    checks = box.children[1].children
    next(c for c in checks if c.description == "better").value = False      # drop the dominating suite
    kept, front = box.state()
    assert [v["suite"] for v in kept] == ["ptq", "ptq"] and front == brute_force(kept, {"accuracy": "max",
                                                                                        "latency_ms": "min"})
    assert "ptq: cnn/fp32 (ort)" in box.children[4].value                    # the table lists the new front
    box.children[0].value = "size"
    assert box.state()[1] == brute_force(kept, {"accuracy": "max", "size_bytes": "min"})
