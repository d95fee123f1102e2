"""``coursekit compress``: run a compression recipe (distill -> prune -> quantize -> validate -> export)."""
from __future__ import annotations

from coursekit.cli.errors import CommandError


def add_parser(subparsers) -> None:
    from coursekit.pipeline import list_recipes

    p = subparsers.add_parser(
        "compress", help="run a compression recipe step by step, validating each step, and export the model",
        description="Run the steps of a recipe (TOML or YAML) on a course model. Every step is validated right "
                    "after it runs (accuracy, per-class accuracy, noise robustness, ONNX size, ORT latency at "
                    "batch 1 against the baseline); a step that breaks the accuracy budget is fine-tuned (if the "
                    "recipe says on_fail = \"finetune\") or rolled back, never silently kept. The output folder "
                    "gets model.onnx with its model card, log.json, report.md and report.html.",
        epilog="examples:\n"
               "  coursekit compress --recipe cnn1d-wide-4x --out runs/cnn1d      (a bundled recipe)\n"
               "  coursekit compress --recipe my_recipe.toml --out runs/mine --fast\n"
               "  coursekit compress --recipe my_recipe.toml --out runs/mine --resume   (skip finished steps)\n"
               f"bundled recipes: {', '.join(list_recipes())}",
        formatter_class=__import__("argparse").RawDescriptionHelpFormatter,
    )
    p.add_argument("--recipe", required=True, help="recipe file (.toml, .yaml) or the name of a bundled recipe")
    p.add_argument("--out", required=True, help="output folder (must not exist or be empty, unless --resume)")
    p.add_argument("--resume", action="store_true", help="continue a run in --out: finished steps are loaded")
    p.add_argument("--fast", action="store_true", help="fast mode: at most one epoch per step, fewer repeats")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run, interrupted="finished steps are saved in --out; rerun with --resume")


def run(args) -> int:
    from coursekit.pipeline import compress

    log = compress(args.recipe, args.out, resume=args.resume, fast=args.fast or None, progress=not args.quiet)
    for rec in [log["baseline"], *log["steps"]]:
        m = rec["metrics"]
        print(f"{rec['label']:<20} {rec['status']:<20} acc {100 * m['accuracy']:6.2f}%  "
              f"size {m['size_bytes']:>9,} B ({m['size_ratio']:.2f}x smaller)  "
              f"ORT {1000 * m['latency_ms_min']['ort']:7.1f} us min ({m['speedup_min']:.2f}x), "
              f"{1000 * m['latency_ms']['ort']:7.1f} us median ({m['speedup']:.2f}x)"
              + ("  [resumed]" if rec.get("resumed") else ""))
    verdict = log["budget"]
    for key, item in verdict["items"].items():
        print(f"budget {key}: target {item['target']:g}, measured {item['measured']:.4g}: "
              f"{'met' if item['met'] else 'NOT met'}")
    print(f"saved {args.out}/model.onnx, log.json, report.md, report.html")
    if not verdict["met"]:
        raise CommandError("the final model does not meet the recipe's budget (see report.md)", code=1)
    return 0
