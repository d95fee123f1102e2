"""com.microsoft.MatMulNBits export: the nibble layout by hand, ONNX Runtime's output against the dequantized
matmul in torch (FP32 compute and INT8-activation compute), act-order, whole Linear stacks, bad input."""
import numpy as np
import pytest
import torch
from torch import nn

from coursekit.export.matmulnbits import (
    Int4Weight,
    linear_stack_models,
    matmulnbits_model,
    matmulnbits_tensors,
    pack_low_first,
    unpack_low_first,
)
from coursekit.formats.packing import pack_bits
from coursekit.llm.apply import int4_linear_stack
from coursekit.llm.gptq import gptq_quantize, hessian
from coursekit.llm.groupwise import quantize_groupwise

ort = pytest.importorskip("onnxruntime")


def _run(model, x):
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return torch.from_numpy(sess.run(None, {"x": x.numpy()})[0])


def _rel(y, ref):
    return float(torch.linalg.norm(y.double() - ref.double()) / torch.linalg.norm(ref.double()))


def _weight(n=48, k=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * 0.05, torch.randn(n, generator=g), torch.randn(7, k, generator=g)


def test_low_nibble_first_layout_hand_computed():
    codes = torch.tensor([1, 2, 3, 4, 15, 0])
    assert pack_low_first(codes).tolist() == [0x21, 0x43, 0x0F]
    swapped = [((b & 0xF) << 4) | (b >> 4) for b in pack_bits(codes, 4).tolist()]  # formats.packing: high first
    assert pack_low_first(codes).tolist() == swapped
    assert torch.equal(unpack_low_first(pack_low_first(codes), 6), codes.to(torch.uint8))
    # zero points: every row padded to whole bytes (3 blocks -> 2 bytes per row)
    gq = quantize_groupwise(_weight()[0], 4, 32)
    zp = matmulnbits_tensors(Int4Weight.from_groupwise(gq))["zero_points"]
    assert zp.shape == (48 * 2,)
    assert torch.equal(unpack_low_first(zp.reshape(48, 2), 3), gq.zero_point)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("block_size", [16, 32])
def test_ort_equals_dequantized_matmul_fp32_compute(symmetric, block_size):
    w, b, x = _weight()
    gq = quantize_groupwise(w, 4, block_size, symmetric=symmetric)
    iw = Int4Weight.from_groupwise(gq)
    assert torch.equal(iw.dequantize(), gq.dequantize())
    model = matmulnbits_model(iw, b, accuracy_level=0)
    names = list(model.graph.node[0].input)
    assert len(names) == (3 if symmetric else 4)  # symmetric: ORT's default zero point 8 is ours
    assert _rel(_run(model, x), x.double() @ gq.dequantize().double().T + b.double()) < 1e-5


def test_act_order_weight_gathers_the_inputs():
    w, _, x = _weight()
    _, gq = gptq_quantize(w, hessian(torch.randn(256, 96) * torch.linspace(0.1, 3, 96)), 4, 32, act_order=True)
    assert gq.perm is not None and not torch.equal(gq.perm, torch.arange(96))
    y = _run(matmulnbits_model(Int4Weight.from_groupwise(gq)), x)
    assert _rel(y, x.double() @ gq.dequantize().double().T) < 1e-5


def test_accuracy_level_4_quantizes_activations_to_int8():
    w, _, x = _weight(k=128)
    gq = quantize_groupwise(w, 4, 32)
    ref = x.double() @ gq.dequantize().double().T
    y = _run(matmulnbits_model(Int4Weight.from_groupwise(gq), accuracy_level=4), x)
    assert _rel(y, ref) < 2e-2  # INT8 activations: a small extra error
    if _rel(y, ref) > 1e-5:  # the CPU ran the INT8 kernel: A in absmax INT8 per block of block_size along K
        xb = x.double().reshape(7, -1, 32)
        scale = xb.abs().amax(dim=-1, keepdim=True) / 127
        emulated = (torch.round(xb / scale) * scale).reshape(7, 128) @ gq.dequantize().double().T
        assert _rel(y, emulated) < 1e-5


def test_linear_stack_models_match_torch_mlp():
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 256), nn.GELU(), nn.Linear(256, 64))
    x = torch.randn(5, 64)
    weights = [mlp[0].weight, mlp[2].weight]
    biases = [mlp[0].bias, mlp[2].bias]
    gqs = [quantize_groupwise(w, 4, 32) for w in weights]
    fp32, int4 = linear_stack_models(weights, [Int4Weight.from_groupwise(g) for g in gqs], biases, "gelu",
                                     accuracy_level=0)
    with torch.no_grad():
        assert _rel(_run(fp32, x), mlp(x)) < 1e-5
        for layer, g in zip((mlp[0], mlp[2]), gqs):
            layer.weight.copy_(g.dequantize())
        assert _rel(_run(int4, x), mlp(x)) < 1e-5
    ops = [n.op_type for n in int4.graph.node]
    assert ops.count("MatMulNBits") == 2 and "MatMul" not in ops and ops.count("Gelu") == 1
    # the llm-level helper: RTN INT4 + both graphs, as a GEMV benchmark (d x 4d) x 2 layers uses it
    ws = [torch.randn(128, 32) * 0.05, torch.randn(32, 128) * 0.05]
    fp32, int4, quantized = int4_linear_stack(ws, group_size=32, accuracy_level=0)
    xs = torch.randn(1, 32)
    assert _rel(_run(fp32, xs), xs @ ws[0].T @ ws[1].T) < 1e-5
    assert _rel(_run(int4, xs), xs @ quantized[0].dequantize().T @ quantized[1].dequantize().T) < 1e-5


def test_bad_input_names_the_argument():
    w, _, _ = _weight()
    gq = quantize_groupwise(w, 4, 32)
    with pytest.raises(ValueError, match="block_size=48 must be a power of two"):
        matmulnbits_model(Int4Weight(gq.codes, gq.scale, None, 48))
    with pytest.raises(ValueError, match="block_size=64 does not divide K=96"):
        matmulnbits_model(Int4Weight(gq.codes, torch.ones(48, 1), None, 64))
    with pytest.raises(ValueError, match="bits=3"):
        Int4Weight.from_groupwise(quantize_groupwise(w, 3, 32))
    with pytest.raises(ValueError, match="accuracy_level=5"):
        matmulnbits_model(Int4Weight.from_groupwise(gq), accuracy_level=5)
    with pytest.raises(ValueError, match="layer 1 expects 96 inputs"):
        linear_stack_models([w, w], [Int4Weight.from_groupwise(gq)] * 2)
    with pytest.raises(ValueError, match=r"codes must be unsigned 4-bit"):
        matmulnbits_model(Int4Weight(gq.codes.clone().fill_(16), gq.scale, None, 32))
    assert np.asarray(matmulnbits_tensors(Int4Weight.from_groupwise(gq))["B"]).shape == (48, 3, 16)
