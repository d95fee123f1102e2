"""``coursekit export``: a course model exported to ONNX (FP32 or INT8), with its model card and parity report."""
from __future__ import annotations

from coursekit.cli.errors import int_at_least

EXAMPLES = """examples:
  coursekit export lenet --dataset digits --precision fp32 --out models/
  coursekit export linear_heavy --precision int8 --out models/ --fast
  coursekit export mlp --precision both --out models/ --force

Each file gets <name>_<dataset>_<precision>.onnx plus .card.json / .card.md beside it (inputs, opset, precision
per layer, test accuracy, ORT latency at batch 1 and 64, parity with torch, hardware, versions, sha256).
INT8 is the course's post-training static quantization (ONNX Runtime, QDQ, MinMax, per-channel S8S8)."""


def add_parser(subparsers) -> None:
    import argparse

    from coursekit.models import list_models

    p = subparsers.add_parser(
        "export", help="export a trained course model to ONNX (FP32/INT8) with a model card and parity report",
        description="Train (or load from the cache) a course model, export it to ONNX, quantize it to INT8 if "
                    "asked, and write the model card and the parity report beside the file.",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", choices=list_models(), help=f"one of: {', '.join(list_models())}")
    p.add_argument("--dataset", default="digits", help="dataset the model is trained on (default: digits)")
    p.add_argument("--precision", default="fp32", choices=("fp32", "int8", "both"), help="default fp32")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the .onnx files and their cards")
    p.add_argument("--calibration-batches", type=int_at_least(1, example="--calibration-batches 16"),
                   help="training batches that calibrate INT8 (default 16, 4 with --fast)")
    p.add_argument("--threads", type=int_at_least(1, example="--threads 1"), default=1,
                   help="ONNX Runtime intra-op threads for the latency in the card (default 1)")
    p.add_argument("--fast", action="store_true", help="fast mode: the short training recipe")
    p.add_argument("--force", action="store_true", help="replace files that already exist")
    p.add_argument("--quiet", action="store_true", help="no training progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from coursekit.export import format_parity, read_model_card
    from coursekit.suites.deploy import export_course_model

    precisions = ("fp32", "int8") if args.precision == "both" else (args.precision,)
    for precision in precisions:
        path = export_course_model(args.model, args.dataset, precision, args.out, fast=args.fast or None,
                                   calibration_batches=args.calibration_batches, threads=args.threads,
                                   overwrite=args.force, progress=not args.quiet)
        card = read_model_card(path)
        latency = ", ".join(f"{k} {v:.3g} ms" for k, v in card["latency_ms"].items())
        print(f"wrote {path} ({card['size_bytes']:,} bytes, {card['precision']}, {card['format']}, opset "
              f"{card['opset']}) and its card {path.with_suffix('')}.card.json")
        print(f"  test accuracy {card['accuracy']['test']:.2%}; ORT latency {latency}")
        print("  " + format_parity(card["parity"]).replace("\n", "\n  "))
    return 0
