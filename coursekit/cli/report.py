"""``coursekit report``: the Pareto front (accuracy vs latency vs size) over compress runs and suite results."""
from __future__ import annotations


def add_parser(subparsers) -> None:
    import argparse

    p = subparsers.add_parser(
        "report", help="Pareto plot (PNG + offline HTML) of compress runs and benchmark-suite results",
        description="Gather every variant with accuracy, batch-1 latency and size from coursekit compress output "
                    "folders and from `coursekit bench --suite NAME --json FILE` results, and write pareto.png, "
                    "pareto.html (interactive, opens offline) and variants.json into --out.",
        epilog="examples:\n"
               "  coursekit report runs/cnn1d runs/lenet --out pareto\n"
               "  coursekit bench --suite ptq --json ptq.json && coursekit report runs/ ptq.json --out pareto",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="compress output folders, folders of them, or suite "
                                                            "JSON files")
    p.add_argument("--out", required=True, help="folder for pareto.html, pareto.png and variants.json")
    p.add_argument("--force", action="store_true", help="replace report files already in --out")
    p.set_defaults(func=run)


def run(args) -> int:
    from coursekit.pipeline import report

    found = report(*args.paths, out=args.out, overwrite=args.force)
    front = [v for v in found["variants"] if v["front"]]
    print(f"{len(found['variants'])} variant(s), {len(front)} on the Pareto front (accuracy, latency, size):")
    for v in sorted(front, key=lambda v: -v["accuracy"]):
        print(f"  {v['label']:<50} {100 * v['accuracy']:6.2f}%  {v['latency_ms']:.4g} ms  {v['size_bytes']:,.0f} B")
    if found["skipped"]:
        print(f"skipped (missing accuracy, size or latency): {len(found['skipped'])}")
    for f in found["files"]:
        print(f"saved {f}")
    return 0
