"""coursekit.bench: honest latency, size and memory measurement, and the hardware they were measured on.

    stats = measure_latency({"fp32": lambda: model(x), "int8": lambda: qmodel(x)}, threads=1)
    print(stats["int8"].median_ms)
"""
from coursekit.bench.hardware import (
    PathStatus,
    accelerated_paths,
    cpu_info,
    cuda_info,
    format_hardware_report,
    hardware_report,
)
from coursekit.bench.memory import (
    PeakMemory,
    parameter_memory,
    peak_memory,
    serialized_size,
)
from coursekit.bench.progress import progress_bar
from coursekit.bench.report import (
    RECORD_KEYS,
    add_speedups,
    find_record,
    format_table,
    load_results,
    make_record,
    plot_latency,
    save_results,
    speed_verdict,
)
from coursekit.bench.timing import (
    LatencyStats,
    calibrate_number,
    measure_latency,
    percentile,
    pinned_threads,
    synchronize,
)

__all__ = [
    "RECORD_KEYS",
    "LatencyStats",
    "PathStatus",
    "PeakMemory",
    "accelerated_paths",
    "add_speedups",
    "calibrate_number",
    "cpu_info",
    "cuda_info",
    "find_record",
    "format_hardware_report",
    "format_table",
    "hardware_report",
    "load_results",
    "make_record",
    "measure_latency",
    "parameter_memory",
    "peak_memory",
    "percentile",
    "pinned_threads",
    "plot_latency",
    "progress_bar",
    "save_results",
    "serialized_size",
    "speed_verdict",
    "synchronize",
]
