"""ONNX Runtime session options: the three knobs that change a deployed model's speed, explained.

* ``intra_op_num_threads`` (``threads``): how many threads split *one* operator (the rows of a GEMM, the output
  channels of a convolution). More threads help a large op and hurt a tiny one (waking threads costs a few
  microseconds); ``0`` lets ORT use every physical core, which on a shared server fights the other processes.
  Pin it, and measure: the best count depends on the model, the batch and the machine.
* ``graph_optimization_level`` (``optimization``): ``"none"`` runs the graph as exported; ``"basic"`` folds
  constants and removes redundant nodes; ``"extended"`` adds fusions such as Conv+Add+Relu and GELU;
  ``"all"`` adds layout changes (NCHWc blocking for AVX-512 convolutions, NHWC for INT8 ones). The QDQ ->
  integer-kernel fusion (``DQ -> Conv -> Q`` becomes ``QLinearConv``, ``DQ -> Gemm`` becomes ``QGemm``) is an
  *extended* optimization: at ``"none"`` and ``"basic"`` an INT8 QDQ model runs its Conv/Gemm in *float*, with
  extra quantize/dequantize work on top, so it is slower than FP32. ``optimized_op_counts`` shows the graph ORT
  really runs at each level (``tests/test_export_inspect.py`` checks where the fusion appears).
* ``execution_mode``: ``"sequential"`` runs one node after another; ``"parallel"`` runs independent branches
  at the same time on ``inter_op_num_threads`` threads. A chain-shaped model (an MLP, a LeNet) has no
  independent branches, so parallel mode only adds scheduling overhead there.
* ``allow_spinning``: after each run ORT's intra-op threads busy-wait for a while, ready for the next call (low
  latency for back-to-back calls, but a CPU burnt while idle and stolen from other processes and sessions).
  ``False`` makes them sleep at once: fairer on a shared machine, slower for a stream of calls.

The measured effect of each combination is the ``deploy`` suite's ``sweep_session_options``
(``coursekit bench --suite deploy``): the measurement lives above this layer, in ``coursekit.suites.deploy``.
"""
from __future__ import annotations

import itertools
import os
import tempfile

from coursekit._validate import check_choice, check_int

OPTIMIZATION_LEVELS = ("none", "basic", "extended", "all")
EXECUTION_MODES = ("sequential", "parallel")


def session_options(threads: int = 1, optimization: str = "all", execution_mode: str = "sequential",
                    inter_threads: int = 1, allow_spinning: bool = True, optimized_model_path=None):
    """An ``onnxruntime.SessionOptions`` with ``threads`` intra-op threads, ``inter_threads`` inter-op threads
    (used only in ``"parallel"`` mode), the graph optimization level ``optimization`` (one of
    ``OPTIMIZATION_LEVELS``), ``execution_mode`` (``"sequential"`` or ``"parallel"``) and whether idle intra-op
    threads spin (``allow_spinning``).

    ``optimized_model_path``: where ORT writes the graph after its optimizations (to inspect what it fused).
    """
    import onnxruntime as ort

    threads = check_int("threads", threads, min_value=1)
    inter_threads = check_int("inter_threads", inter_threads, min_value=1)
    check_choice("optimization", optimization, OPTIMIZATION_LEVELS)
    check_choice("execution_mode", execution_mode, EXECUTION_MODES)
    levels = {"none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    modes = {"sequential": ort.ExecutionMode.ORT_SEQUENTIAL, "parallel": ort.ExecutionMode.ORT_PARALLEL}
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = inter_threads
    options.graph_optimization_level = levels[optimization]
    options.execution_mode = modes[execution_mode]
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    if optimized_model_path is not None:
        options.optimized_model_filepath = os.fspath(optimized_model_path)
    return options


def session_grid(threads=(1, 2), optimization=("none", "basic", "all"),
                 execution_mode=("sequential", "parallel")) -> list[dict]:
    """Every combination of the given option values, as keyword dicts for ``session_options``."""
    for name, values, allowed in (("optimization", optimization, OPTIMIZATION_LEVELS),
                                  ("execution_mode", execution_mode, EXECUTION_MODES)):
        for value in values:
            check_choice(name, value, allowed)
    threads = [check_int("threads", t, min_value=1) for t in threads]
    return [{"threads": t, "optimization": o, "execution_mode": m}
            for t, o, m in itertools.product(threads, optimization, execution_mode)]


def optimized_op_counts(path, optimization: str = "all") -> dict[str, int]:
    """The op counts of the graph ORT actually runs at ``optimization`` (it writes the optimized graph to a
    temporary file). At ``"basic"`` and above a QDQ INT8 model shows its fused integer ops."""
    import onnxruntime as ort

    from coursekit.export.onnx_export import op_counts

    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "optimized.onnx")
        options = session_options(optimization=optimization, optimized_model_path=out)
        ort.InferenceSession(os.fspath(path), sess_options=options, providers=["CPUExecutionProvider"])
        return op_counts(out)
