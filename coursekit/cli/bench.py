"""``coursekit bench``: run a benchmark suite on this machine."""
from __future__ import annotations

from pathlib import Path

from coursekit._paths import check_output_file
from coursekit.bench import format_table, save_results
from coursekit.cli.errors import UsageError, int_at_least
from coursekit.suites import list_suites, run_suite


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "bench", help="run a benchmark suite (latency, size, accuracy) on this machine",
        description="Measure a suite side by side: warm-up, interleaved variants, pinned threads, min/median/p90. "
                    "Results print as a table; --json saves them with the hardware report.",
    )
    p.add_argument("--suite", default="basics", help="suite to run (default: basics; --list shows all)")
    p.add_argument("--list", action="store_true", help="list the suites and exit")
    p.add_argument("--json", metavar="PATH", help="also write the results (and the hardware report) as JSON")
    p.add_argument("--plot", metavar="PNG", help="also save a latency bar chart")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"), help="device to run on (default cpu)")
    p.add_argument("--threads", type=int_at_least(1, example="--threads 1"), default=1,
                   help="intra-op threads, pinned for every variant (default 1)")
    p.add_argument("--repeats", type=int_at_least(3, example="--repeats 10"),
                   help="timed samples per variant at most (default 30, 10 in fast mode; a time budget per "
                        "variant stops slow ones earlier, after at least 3)")
    p.add_argument("--fast", action="store_true", help="fast mode: smaller data and fewer repeats")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bars (they also stay off when the output is not a terminal)")
    p.set_defaults(func=run)


def plot_formats() -> set[str]:
    """File extensions matplotlib can save a figure as (png, pdf, svg, ...)."""
    from matplotlib.figure import Figure

    return set(Figure().canvas.get_supported_filetypes())


def check_paths(args) -> None:
    """Refuse --json / --plot paths that could not be written, before the suite runs for minutes."""
    if args.json:
        check_output_file("--json", args.json)
    if args.plot:
        suffix = Path(args.plot).suffix.lstrip(".").lower()
        formats = plot_formats()
        if suffix not in formats:
            raise UsageError("--plot", f"{args.plot!r} needs a file extension matplotlib can write "
                                       f"({', '.join(sorted(formats))}), e.g. latency.png")
        check_output_file("--plot", args.plot)


def run(args) -> int:
    if args.list:
        for name, description in list_suites().items():
            print(f"{name:12s} {description}")
        return 0
    check_paths(args)
    result = run_suite(args.suite, device=args.device, threads=args.threads, fast=args.fast or None,
                       progress=not args.quiet, repeats=args.repeats)
    cpu = result["hardware"]["cpu"]
    print(f"suite {args.suite} on {cpu['model']} ({', '.join(cpu['isa'][-6:])}), {args.threads} thread(s)")
    print(format_table(result["records"]))
    if args.json:
        print(f"saved {save_results(args.json, result['hardware'], result['records'], args.suite)}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from coursekit.bench import plot_latency

        batches = sorted({r["batch"] for r in result["records"] if r.get("latency_ms_median")})
        fig, axes = plt.subplots(1, len(batches), figsize=(6 * len(batches), 3.5), squeeze=False)
        for ax, batch in zip(axes[0], batches):
            plot_latency(result["records"], batch=batch, ax=ax)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"saved {args.plot}")
    return 0
