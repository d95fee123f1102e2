"""Recipe schema: every bundled recipe loads; every bad recipe is refused with a message that says what to fix."""
import copy

import pytest

from coursekit.data import dataset_info
from coursekit.pipeline import STEP_SETTINGS, list_recipes, load_recipe, parse_recipe, smallest_model_bytes
from coursekit.pipeline.recipe import check_feasible

GOOD = {"name": "t", "model": {"name": "lenet", "dataset": "digits"}, "budget": {"max_accuracy_drop": 1.0},
        "steps": [{"kind": "prune", "method": "channel", "amount": 0.5},
                  {"kind": "quantize", "method": "ptq", "backend": "ort"}]}


def with_changes(path, value, data=None):
    """A copy of GOOD (or ``data``) with the entry at ``path`` (a tuple of keys/indices) set to ``value``."""
    recipe = copy.deepcopy(data or GOOD)
    target = recipe
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return recipe


def test_bundled_recipes_load_with_defaults():
    names = list_recipes()
    assert {"cnn1d-wide-4x", "rollback-demo", "order-prune-then-quantize", "order-quantize-then-prune"} <= set(names)
    for name in names:
        recipe = load_recipe(name)
        assert recipe.steps and recipe.budget["max_accuracy_drop"] >= 0
        for step in recipe.steps:   # every setting present, defaults filled in
            assert set(STEP_SETTINGS[step.kind]) <= set(step.settings)


def test_defaults_and_fingerprint():
    recipe = parse_recipe(GOOD)
    prune = recipe.steps[0].settings
    assert (prune["schedule"], prune["epochs"], prune["multiple_of"], prune["on_fail"]) == ("oneshot", 0, 1,
                                                                                            "rollback")
    assert recipe.validate["backends"] == ["ort"] and recipe.validate["split"] == "val"
    assert [s.key for s in recipe.steps] == ["01-prune", "02-quantize"]
    assert recipe.fingerprint() == parse_recipe(copy.deepcopy(GOOD)).fingerprint()
    assert recipe.fingerprint() != parse_recipe(with_changes(("steps", 0, "amount"), 0.6)).fingerprint()


def test_yaml_and_toml_files(tmp_path):
    (tmp_path / "r.yaml").write_text("model: {name: cnn1d}\nbudget: {max_accuracy_drop: 2}\n"
                                     "steps:\n  - {kind: finetune, epochs: 2}\n")
    recipe = load_recipe(tmp_path / "r.yaml")
    assert recipe.model["dataset"] == "mnist1d" and recipe.name == "r"   # default dataset, name from the file
    (tmp_path / "bad.toml").write_text("model = {name = 'lenet'\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_recipe(tmp_path / "bad.toml")
    with pytest.raises(FileNotFoundError, match="bundled recipes: .*rollback-demo"):
        load_recipe(tmp_path / "missing.toml")


@pytest.mark.parametrize("path, value, message", [
    (("steps", 0, "kind"), "prun", r"unknown step kind 'prun'; did you mean 'prune'\? Allowed: distill, prune"),
    (("steps", 0, "amout"), 0.5, (r"step 1 \(prune\): unknown key 'amout'; did you mean 'amount'\? Allowed: "
                                 r"method, amount, schedule")),
    (("budget", "max_acc_drop"), 1, r"\[budget\]: unknown key 'max_acc_drop'; did you mean 'max_accuracy_drop'"),
    (("modle",), {}, r"recipe: unknown key 'modle'; did you mean 'model'"),
    (("steps", 0, "method"), "chanel", r"method='chanel' is not supported; choose one of: 'magnitude', 'global'"),
    (("steps", 0, "amount"), 1.5, r"amount=1.5 must be a fraction"),
    (("steps", 1, "bits"), 4, r"backend='ort' is ONNX Runtime's static INT8 PTQ"),
    (("model", "name"), "vgg", r"\[model\] name='vgg' is not supported"),
    (("budget", "max_accuracy_drop"), -0.5, r"max_accuracy_drop=-0.5 is impossible"),
    (("budget", "max_accuracy_drop"), 150, r"more than 100 points"),
    (("budget", "min_speedup"), 0, r"budget min_speedup=0 must be > 0"),
    (("steps",), [], r"steps must be a non-empty list"),
])
def test_bad_recipes_name_the_key(path, value, message):
    with pytest.raises(ValueError, match=message):
        parse_recipe(with_changes(path, value))


def test_missing_required_keys():
    with pytest.raises(ValueError, match=r"step 1 \(prune\): missing required key 'amount'"):
        parse_recipe(with_changes(("steps", 0), {"kind": "prune", "method": "channel"}))
    with pytest.raises(ValueError, match="missing required key 'budget'"):
        parse_recipe({k: v for k, v in GOOD.items() if k != "budget"})
    with pytest.raises(ValueError, match=r"step 1 \(distill\): missing required key 'teacher'"):
        parse_recipe(with_changes(("steps",), [{"kind": "distill", "epochs": 1}]))


def test_missing_or_unknown_teacher():
    bad = with_changes(("steps",), [{"kind": "distill", "teacher": "resnt"}])
    with pytest.raises(ValueError, match=r"teacher='resnt' .*did you mean 'resnet'.*choose 'baseline'"):
        parse_recipe(bad)


def test_step_order_rules():
    ort_first = with_changes(("steps",), [{"kind": "quantize", "backend": "ort"}, {"kind": "finetune"}])
    with pytest.raises(ValueError, match=r"step 1 \(quantize, backend='ort'\) .* later steps cannot change"):
        parse_recipe(ort_first)
    ft = with_changes(("steps", 1, "on_fail"), "finetune")
    with pytest.raises(ValueError, match="cannot fine-tune an ONNX Runtime INT8 graph"):
        parse_recipe(ft)
    gradual = with_changes(("steps", 0), {"kind": "prune", "method": "global", "amount": 0.5, "schedule": "gradual"})
    with pytest.raises(ValueError, match="gradual' prunes while training, so epochs must be >= 1"):
        parse_recipe(gradual)
    with pytest.raises(ValueError, match="exactly one of energy"):
        parse_recipe(with_changes(("steps",), [{"kind": "lowrank"}]))


def test_impossible_size_budget_is_refused_before_training():
    info = dataset_info("digits")
    floor = smallest_model_bytes(info.num_features, info.num_classes)
    # the floor is a real ONNX file: a one-node classifier takes a few hundred bytes, far below any course model
    assert 100 < floor < 2000
    check_feasible(parse_recipe(with_changes(("budget", "target_size_bytes"), floor)))
    impossible = parse_recipe(with_changes(("budget", "target_size_bytes"), floor - 1))
    with pytest.raises(ValueError, match=rf"target_size_bytes={floor - 1} is impossible by construction"):
        check_feasible(impossible)


def test_cli_refuses_bad_input_with_one_line(tmp_path, capsys):
    from coursekit.cli import main

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["compress", "--recipe", "rollback-demo", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("coursekit compress: error: --out") and "not empty" in err and len(err.splitlines()) == 1
    assert (out / "keep.txt").read_text() == "mine"
    (tmp_path / "r.toml").write_text("[model]\nname = 'lenet'\n[budget]\nmax_accuracy_drop = 1\n"
                                     "[[steps]]\nkind = 'quantise'\n")
    assert main(["compress", "--recipe", str(tmp_path / "r.toml"), "--out", str(tmp_path / "new")]) == 2
    assert "unknown step kind 'quantise'; did you mean 'quantize'?" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


def test_cli_report_writes_the_page(tmp_path, capsys):
    import json

    from coursekit.cli import main

    records = [{"model": "m", "variant": v, "device": "cpu", "batch": 1, "threads": 1, "latency_ms_median": lat,
                "size_bytes": size, "accuracy": acc} for v, acc, lat, size in
               (("a", 0.9, 1.0, 100), ("b", 0.8, 2.0, 200), ("c", 0.95, 3.0, 50))]
    (tmp_path / "s.json").write_text(json.dumps({"suite": "x", "hardware": {}, "records": records}))
    assert main(["report", str(tmp_path / "s.json"), "--out", str(tmp_path / "rep")]) == 0
    text = capsys.readouterr().out
    assert "3 variant(s), 2 on the Pareto front" in text               # b is dominated by a
    assert {p.name for p in (tmp_path / "rep").iterdir()} == {"pareto.html", "pareto.png", "variants.json"}
    assert main(["report", str(tmp_path / "s.json"), "--out", str(tmp_path / "rep")]) == 2   # no silent overwrite
    assert "--force" in capsys.readouterr().err
