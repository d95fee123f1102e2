"""Every fixed numeric answer in the bank against an independent computation.

``CHECKS`` maps each question id to a function that recomputes the answer from the question's own numbers,
written out again here: with coursekit (``formats.memory_bytes``, ``quant.fold_batchnorm``, ...), with torch or
ONNX/ONNX Runtime (the float formats, LSQ, pruning, opset schemas) or with plain arithmetic. A stored answer that
drifts (ch01-fp16-max = 65000) fails, and so does a new fixed numeric question without an entry here.
Parameterised questions compute their answers through ``coursekit.quiz.generators``, which test_quiz_bank.py
checks against hand-computed values.
"""
import math

import numpy as np
import pytest
import torch

from coursekit import formats, quant
from coursekit.quiz import catalog
from coursekit.quiz.answers import check_answer

GB = 1e9
MAX_REL_DRIFT = 5e-4  # the stored answer may be rounded to about four significant digits, no more


def _torch_lsq_step_grad(x: float, step: float, qmin: int = -128, qmax: int = 127) -> float:
    """d x_hat / d s from torch's learnable fake quant (PyTorch's LSQ variant, zero point 0, no grad scaling)."""
    s = torch.tensor([step], requires_grad=True)
    y = torch._fake_quantize_learnable_per_tensor_affine(torch.tensor([x]), s, torch.tensor([0.0]), qmin, qmax, 1.0)
    y.sum().backward()
    return s.grad.item()


def _magnitude_prune_min_survivor(weights, amount):
    from torch.nn.utils import prune

    w = torch.tensor(weights)
    mask = prune.L1Unstructured(amount=amount).compute_mask(w, default_mask=torch.ones_like(w))
    return w[mask.bool()].abs().min().item()


def _two_four_kept_abs_sum(weights):
    groups = torch.tensor(weights).abs().reshape(-1, 4)
    return groups.topk(2, dim=1).values.sum().item()


def _rank_k_errors(singular_values, k):
    """(Frobenius, spectral) norm of A - A_k for a random orthogonal A with these singular values (SVD truncation)."""
    g = torch.Generator().manual_seed(0)
    n = len(singular_values)
    u, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    a = u @ torch.diag(torch.tensor(singular_values, dtype=torch.float64)) @ v.T
    uu, ss, vh = torch.linalg.svd(a)
    err = a - uu[:, :k] @ torch.diag(ss[:k]) @ vh[:k]
    return torch.linalg.matrix_norm(err, "fro").item(), torch.linalg.matrix_norm(err, 2).item()


def _energy_rank(singular_values, fraction):
    energy = torch.tensor(singular_values, dtype=torch.float64) ** 2
    kept = energy.cumsum(0) / energy.sum()
    return int((kept < fraction).sum().item()) + 1


def _folded_bias(w, b, gamma, beta, mean, var):
    layer = torch.nn.Linear(1, 1)
    bn = torch.nn.BatchNorm1d(1, eps=0.0)
    with torch.no_grad():
        layer.weight.fill_(w), layer.bias.fill_(b)
        bn.weight.fill_(gamma), bn.bias.fill_(beta), bn.running_mean.fill_(mean), bn.running_var.fill_(var)
    return quant.fold_batchnorm(layer, bn.eval()).bias.item()


def _onnx_min_opset_with_axis():
    import onnx.defs

    def has_axis(op, version):
        return "axis" in onnx.defs.get_schema(op, version, "").attributes

    return min(v for v in range(10, onnx.defs.onnx_opset_version() + 1)
               if has_axis("QuantizeLinear", v) and has_axis("DequantizeLinear", v))


def _ort_symmetric_scale(amax):
    from onnxruntime.quantization.quant_utils import compute_scale_zp

    _, scale = compute_scale_zp(np.float32(-amax), np.float32(amax), np.int8(-127), np.int8(127), symmetric=True)
    return float(scale)


def _pareto_count(points):
    def dominated(p):
        return any(q[0] >= p[0] and q[1] <= p[1] and q != p for q in points)
    return sum(not dominated(p) for p in points)


def _three_step_drop_vs_baseline():
    """Three steps that each lose 0.6 points against the model before them, measured by the pipeline's gate."""
    from coursekit.pipeline.validate import accuracy_drop

    accuracy = [0.9]
    for _ in range(3):
        accuracy.append(accuracy[-1] - 0.006)
        assert accuracy_drop({"accuracy": accuracy[-2]}, {"accuracy": accuracy[-1]}) == pytest.approx(0.6)
    return accuracy_drop({"accuracy": accuracy[0]}, {"accuracy": accuracy[-1]})


def _codes_used(lo, hi, scale):
    x = torch.linspace(lo, hi, 20001)
    return quant.quantize(x, torch.tensor(scale), torch.tensor(0), -128, 127).unique().numel()


def _int8_weight_ops_excluding_last_gemm():
    """Quantize a seeded LeNet with ORT quantize_static (QDQ), last Gemm excluded; count weight ops whose weight
    input (input[1]) comes out of a DequantizeLinear, read from the graph with onnx."""
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantFormat, quantize_static

    from coursekit import export
    from coursekit.export.ort import _quiet, calibration_reader
    from coursekit.models import build_model

    torch.manual_seed(0)
    net = build_model("lenet", "digits").eval()
    calib = [torch.rand(8, 1, 8, 8)]
    with tempfile.TemporaryDirectory() as tmp:
        fp = export.export_onnx(net, calib[0][:1], f"{tmp}/fp32.onnx")
        gemms = [n.name for n in onnx.load(str(fp)).graph.node if n.op_type == "Gemm"]
        with _quiet():
            quantize_static(str(fp), f"{tmp}/q.onnx", calibration_reader(calib, "input"), quant_format=QuantFormat.QDQ,
                            nodes_to_exclude=gemms[-1:], per_channel=True)
        graph = onnx.load(f"{tmp}/q.onnx").graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    return sum(n.op_type in ("Conv", "Gemm", "MatMul") and producer.get(n.input[1]) == "DequantizeLinear"
               for n in graph.node)


CHECKS = {
    # ch00: measuring
    "ch00-throughput-from-batch": lambda: 32 / 80e-3,
    "ch00-ridge-point": lambda: 100e12 / 2e12,
    "ch00-gemv-intensity": lambda: 2 * 4096 * 4096 / formats.memory_bytes(4096 * 4096, "fp16"),
    "ch00-decode-upper-bound": lambda: 100e9 / formats.memory_bytes(7 * 10**9, "int4"),
    "ch00-amdahl": lambda: 1 / ((1 - 0.6) + 0.6 / 4),
    # ch01: formats
    "ch01-fp16-max": lambda: torch.finfo(torch.float16).max,
    "ch01-bf16-eps": lambda: torch.finfo(torch.bfloat16).eps,
    "ch01-decode-fp16-bits": lambda: torch.tensor([0x4248], dtype=torch.int16).view(torch.float16).item(),
    "ch01-fp16-round-half-even": lambda: torch.tensor(2049.0).to(torch.float16).item(),
    "ch01-e4m3-max": lambda: torch.finfo(torch.float8_e4m3fn).max,
    "ch01-e4m3-rounding": lambda: torch.tensor(300.0).to(torch.float8_e4m3fn).float().item(),
    "ch01-scale-overhead-7b": lambda: (formats.memory_bytes(7 * 10**9, "int4", group_size=128, scale_format="fp16")
                                       - formats.memory_bytes(7 * 10**9, "int4")) / GB,
    "ch01-effective-bits": lambda: formats.bits_per_param("int4", 64, scale_format="fp16") + 16 / 64,
    "ch01-sqnr-per-bit": lambda: (8 - 4) * 20 * math.log10(2),
    # ch02: PTQ
    "ch02-ort-symmetric-scale": lambda: _ort_symmetric_scale(2.54),
    "ch02-outlier-levels": lambda: _codes_used(-1.0, 1.0, 50 / 127),
    "ch02-bn-fold-bias": lambda: _folded_bias(w=0.5, b=0.1, gamma=2.0, beta=0.1, mean=0.3, var=0.25),
    "ch02-requant-shift": lambda: quant.quantize_multiplier(torch.tensor(0.02 * 0.005 / 0.1))[1].item(),
    # ch03: QAT
    "ch03-lsq-grad-inside": lambda: _torch_lsq_step_grad(0.7, 0.25),
    "ch03-lsq-grad-outside": lambda: _torch_lsq_step_grad(40.0, 0.25),
    "ch03-lsq-grad-scale": lambda: quant.lsq_grad_scale(4096, 127),
    "ch03-2bit-levels": lambda: len(range(-2, 2)),  # signed 2-bit codes -2..1
    # ch04: pruning
    "ch04-magnitude-threshold": lambda: _magnitude_prune_min_survivor([0.1, -0.8, 0.05, 0.3, -0.02, 0.6], 0.5),
    "ch04-2-4-kept-sum": lambda: _two_four_kept_abs_sum([0.3, -0.9, 0.1, 0.5, -0.2, 0.05, 0.7, 0.01]),
    "ch04-2-4-storage": lambda: 16 / (0.5 * 16 + 0.5 * 2),
    "ch04-channel-pruning-params": lambda: 64 * 64 * 3 * 3 + 64 * 256 * 3 * 3,
    "ch04-cubic-schedule": lambda: 0.9 + (0 - 0.9) * (1 - 0.5) ** 3,
    "ch04-csr-overhead": lambda: (500_000 * 4 + 500_000 * 4 + 1001 * 4) / 1e6,
    # ch05: distillation
    "ch05-softmax-t1": lambda: torch.softmax(torch.tensor([2.0, 1.0, 0.0]) / 1, 0)[0].item(),
    "ch05-softmax-t2": lambda: torch.softmax(torch.tensor([2.0, 1.0, 0.0]) / 2, 0)[0].item(),
    "ch05-t-squared-factor": lambda: 4**2,
    "ch05-kd-loss-value": lambda: 0.5 * 4**2 * 0.05 + (1 - 0.5) * 1.2,
    "ch05-kl-value": lambda: torch.nn.functional.kl_div(torch.tensor([0.75, 0.25]).log(), torch.tensor([0.5, 0.5]),
                                                        reduction="sum").item(),
    # ch06: low rank
    "ch06-frobenius-error": lambda: _rank_k_errors([10, 6, 3, 1, 0.5], 2)[0],
    "ch06-spectral-error": lambda: _rank_k_errors([10, 6, 3, 1, 0.5], 2)[1],
    "ch06-energy-rank": lambda: _energy_rank([10, 6, 3, 1, 0.5], 0.9),
    "ch06-break-even-rank": lambda: max(r for r in range(1, 1024) if r * (1024 + 4096) < 1024 * 4096),
    "ch06-flop-reduction": lambda: 4096 * 4096 / (256 * (4096 + 4096)),
    "ch06-depthwise-separable": lambda: 128 * 3 * 3 + 128 * 256,
    "ch06-kmeans-ratio": lambda: 1_000_000 * 32 / (1_000_000 * math.ceil(math.log2(32)) + 32 * 32),
    # ch07: LLM quantization
    "ch07-pack-nibbles": lambda: formats.pack_nibbles(torch.tensor([3, 10], dtype=torch.uint8))[0].item(),
    "ch07-unpack-nibbles": lambda: formats.unpack_nibbles(torch.tensor([0xA7], dtype=torch.uint8))[0].item(),
    "ch07-nf4-dequant": lambda: formats.nf4_cast(torch.tensor([2.0, 0.9] + [0.0] * 62), block_size=64)[1].item(),
    "ch07-double-quant-bits": lambda: 8 / 64 + 32 / (64 * 256),
    "ch07-smoothquant-factor": lambda: 64**0.5 / 0.25 ** (1 - 0.5),
    "ch07-perplexity": lambda: math.exp(2.0),
    "ch07-group-bits-zero-points": lambda: formats.bits_per_param("int4", 32, scale_format="fp16", zero_point=True),
    "ch07-pack-signed-int4": lambda: formats.pack_nibbles(torch.tensor([-3, 5]).bitwise_and(0xF).to(torch.uint8))[0].item(),
    "ch07-bpc-from-nats": lambda: torch.nn.functional.cross_entropy(  # 1.2 nats as a real loss, in bits
        torch.tensor([[math.log(math.exp(-1.2) / (1 - math.exp(-1.2))), 0.0]]), torch.tensor([0])).item() / math.log(2),
    # ch08: deployment
    "ch08-opset-per-axis": _onnx_min_opset_with_axis,
    "ch08-speedup-ratio": lambda: 8.4 / 2.1,
    "ch08-batch-capacity": lambda: 8 / ((2 + 0.5 * 8) / 1e3),
    "ch08-int8-weight-ops": _int8_weight_ops_excluding_last_gemm,
    # ch09: pipeline
    "ch09-pareto-count": lambda: _pareto_count([(92, 10), (91, 6), (90, 7), (88, 3), (89, 5), (87, 4)]),
    "ch09-end-to-end-ratio": lambda: (100e6 * 4) / (25e6 * (1 - 0.4) * 1),
    "ch09-instances-per-gpu": lambda: math.floor(
        (80 - 10) / round(formats.memory_bytes(7 * 10**9, "int4", group_size=128) / GB, 2)),
    "ch09-gate-baseline": _three_step_drop_vs_baseline,
}


@pytest.fixture(scope="module")
def bank():
    catalog.clear_cache()
    return catalog.load_bank()


def test_every_fixed_numeric_question_has_a_check(bank):
    fixed = {q.id for q in bank.questions if q.type == "numeric" and not q.is_parameterised}
    assert sorted(fixed - set(CHECKS)) == [], "add an independent check to CHECKS for these numeric questions"
    assert sorted(set(CHECKS) - fixed) == [], "these CHECKS entries name no fixed numeric question"


@pytest.mark.parametrize("qid", sorted(CHECKS))
def test_stored_answer_matches_independent_check(bank, qid):
    q = bank.get(qid)
    expected = float(CHECKS[qid]())
    assert q.answer == pytest.approx(expected, rel=MAX_REL_DRIFT, abs=1e-12), f"{qid}: stored {q.answer}, got {expected}"
    # the true value, typed by a learner, is accepted under the question's own tolerance
    assert check_answer(q, repr(expected)).correct, f"{qid}: {expected} rejected by tolerance {q.tolerance}"


def test_a_drifted_answer_fails_the_check():
    """The check is sharp: ch01-fp16-max stored as 65000 (or a rounded 0.0078 for BF16's eps) would not pass."""
    assert 65000 != pytest.approx(CHECKS["ch01-fp16-max"](), rel=MAX_REL_DRIFT)
    assert 0.0078 != pytest.approx(CHECKS["ch01-bf16-eps"](), rel=MAX_REL_DRIFT)
