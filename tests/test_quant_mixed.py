"""Mixed precision: per-layer weight-only quantization (vs torch's fake quantization), the sensitivity scan
(vs a hand-written loop) and the greedy knapsack choice (hand-checked cases)."""
import pytest
import torch
from torch import nn

from coursekit.quant.mixed import (
    greedy_keep_8bit,
    layer_sensitivity,
    layer_weight_counts,
    quantize_layers,
    weight_bytes,
)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def _torch_wq(w, bits):
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    scale = w.abs().amax(1) / ((qmax - qmin) / 2)
    return torch.fake_quantize_per_channel_affine(w, scale, torch.zeros(len(scale), dtype=torch.int32), 0, qmin, qmax)


def test_counts_and_bytes():
    m = _model()
    counts = layer_weight_counts(m)
    assert counts == {"0": 72, "2": 96, "4": 24}
    assert weight_bytes(counts, {"0": 8, "2": 2, "4": 4}) == 72 + 96 / 4 + 24 / 2
    assert weight_bytes(counts, dict.fromkeys(counts, 32)) == 4 * 192
    with pytest.raises(ValueError, match="must be <= 32"):
        weight_bytes(counts, dict.fromkeys(counts, 64))
    with pytest.raises(ValueError, match="no bit width"):
        weight_bytes(counts, {"0": 8})


def test_quantize_layers_quantizes_exactly_the_named_layers():
    m = _model()
    x = torch.randn(20, 6)
    q = quantize_layers(m, {"0": 2, "4": 4})
    w0, w2, w4 = (_torch_wq(m[i].weight.detach(), b) if b else m[i].weight.detach() for i, b in ((0, 2), (2, 0), (4, 4)))
    h = torch.relu(nn.functional.linear(x, w0, m[0].bias))
    h = torch.relu(nn.functional.linear(h, w2, m[2].bias))
    want = nn.functional.linear(h, w4, m[4].bias)
    with torch.no_grad():
        assert torch.allclose(q(x), want, atol=1e-6)
        assert type(q[2]) is nn.Linear and type(m[0]) is nn.Linear   # others float, input untouched
    with pytest.raises(ValueError, match="unknown layer"):
        quantize_layers(m, {"1": 4})
    with pytest.raises(ValueError):
        quantize_layers(m, {"0": 1})


def test_sensitivity_matches_a_hand_loop():
    m = _model()
    gen = torch.Generator().manual_seed(3)
    xs = torch.randn(200, 6, generator=gen)
    with torch.no_grad():
        ys = m(xs).argmax(1)
    ys[::7] = (ys[::7] + 1) % 3                    # FP32 accuracy below 1
    loader = [(xs[i:i + 50], ys[i:i + 50]) for i in range(0, 200, 50)]
    drops = layer_sensitivity(m, loader, 2)

    def acc(weights):
        h = xs
        for i, w in zip((0, 2, 4), weights):
            h = nn.functional.linear(h, w, m[i].bias)
            h = torch.relu(h) if i < 4 else h
        return (h.argmax(1) == ys).double().mean().item()

    with torch.no_grad():
        ws = [m[i].weight.detach() for i in (0, 2, 4)]
        base = acc(ws)
        want = {str(i): base - acc([_torch_wq(w, 2) if j == k else w for k, w in enumerate(ws)])
                for j, i in enumerate((0, 2, 4))}
    assert drops == pytest.approx(want, abs=1e-9)
    assert list(layer_sensitivity(m, loader, 2, ["4"])) == ["4"]


def test_greedy_choice_by_hand():
    counts = {"a": 100, "b": 1000, "c": 80, "d": 400}
    drops = {"a": 0.10, "b": 0.20, "c": 0.01, "d": -0.01}
    base = 1580 * 2 / 8                                   # 395 bytes at 2 bits; extra at 8 bits: n * 6/8
    # a: 75 extra (0.00133/B), b: 750 (0.00027/B), c: 60 (0.00017/B), d: negative drop, never kept
    assert greedy_keep_8bit(drops, counts, 2, base + 75 + 750) == ["a", "b"]         # an exact fit counts
    assert greedy_keep_8bit(drops, counts, 2, base + 75 + 749) == ["a", "c"]         # b passed over, c fits
    assert greedy_keep_8bit(drops, counts, 2, base + 10_000) == ["a", "b", "c"]
    assert greedy_keep_8bit(drops, counts, 2, base) == []
    with pytest.raises(ValueError, match="below the all-2-bit size"):
        greedy_keep_8bit(drops, counts, 2, base - 1)
    with pytest.raises(ValueError, match="high_bits"):
        greedy_keep_8bit(drops, counts, 8, base, high_bits=8)
    with pytest.raises(ValueError, match="no entry"):
        greedy_keep_8bit({"z": 0.1}, counts, 2, 1000)
