"""KV caches: bytes equal the memory formula, INT8 codes/scales against a float64 reference, decoding accuracy."""
import numpy as np
import pytest
import torch

from coursekit.formats.memory import kv_cache_bytes, memory_bytes
from coursekit.llm.gpt import GPTConfig, TinyGPT
from coursekit.llm.kvcache import Int8KVCache, KVCache, cache_bytes

B, H, T, D = 2, 4, 10, 32


def _kv(seed, t=T):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, H, t, D, generator=g) * 3, torch.randn(B, H, t, D, generator=g)


def test_fp32_cache_appends_and_counts_bytes():
    cache = KVCache(n_layers=3)
    k1, v1 = _kv(0)
    k2, v2 = _kv(1, t=1)
    for layer in range(3):
        cache.update(layer, k1, v1)
    k, v = cache.update(0, k2, v2)
    assert torch.equal(k, torch.cat([k1, k2], dim=2)) and torch.equal(v, torch.cat([v1, v2], dim=2))
    for layer in (1, 2):
        cache.update(layer, k2, v2)
    assert cache.seq_len == T + 1
    assert cache_bytes(cache) == kv_cache_bytes(3, H, D, T + 1, B, fmt="fp32") == 2 * 3 * H * D * (T + 1) * B * 4
    cache.clear()
    assert cache.seq_len == 0 and cache_bytes(cache) == 0


@pytest.mark.parametrize("granularity", ["per_token", "per_head"])
def test_int8_cache_bytes_match_the_formula(granularity):
    cache = Int8KVCache(n_layers=2, granularity=granularity)
    for layer in range(2):
        cache.update(layer, *_kv(layer))
    codes = kv_cache_bytes(2, H, D, T, B, fmt="int8")
    scales_per_tensor = B * T * (H if granularity == "per_head" else 1)
    assert cache_bytes(cache) == codes + 2 * 2 * scales_per_tensor * 2  # layers x (K, V) x scales x FP16
    if granularity == "per_head":  # one FP16 scale per head_dim values: group-wise INT8 with group = head_dim
        assert cache_bytes(cache) == memory_bytes(2 * 2 * B * H * T * D, "int8", group_size=D, scale_format="fp16")
    assert cache_bytes(cache) < kv_cache_bytes(2, H, D, T, B, fmt="fp16") * 0.6


def _reference_int8(x, granularity):
    """float64 reference: rows of one scale, S = fp16(absmax / 127), q = clamp(round(x / S), -127, 127)."""
    x = x.double().numpy()
    rows = x.reshape(-1, D) if granularity == "per_head" else x.transpose(0, 2, 1, 3).reshape(B * x.shape[2], -1)
    scale = (np.abs(rows).max(axis=1) / 127).astype(np.float16).astype(np.float64)
    q = np.clip(np.round(rows / scale[:, None]), -127, 127)
    deq, step = q * scale[:, None], np.broadcast_to(scale[:, None], rows.shape)
    if granularity == "per_head":
        return deq.reshape(x.shape), step.reshape(x.shape)
    back = (B, x.shape[2], H, D)
    return deq.reshape(back).transpose(0, 2, 1, 3), step.reshape(back).transpose(0, 2, 1, 3)


@pytest.mark.parametrize("granularity", ["per_token", "per_head"])
def test_int8_cache_reads_match_float64_reference(granularity):
    k, v = _kv(3)
    cache = Int8KVCache(n_layers=1, granularity=granularity)
    got_k, got_v = cache.update(0, k, v)
    for got, x in ((got_k, k), (got_v, v)):
        want, step = _reference_int8(x, granularity)
        diff = np.abs(got.double().numpy() - want)
        assert np.mean(diff < 1e-6) > 0.999  # float32 multiply-by-reciprocal may round a rare tie the other way
        assert (diff <= step * 1.0001 + 1e-6).all()  # and then by one code step at most
    codes = cache._store[0][0]
    assert codes.dtype == torch.int8 and int(codes.abs().max()) == 127 and int(codes.min()) >= -127


def test_per_head_scales_fit_heads_of_different_magnitude_better():
    k, v = _kv(4)
    k = k * torch.tensor([0.1, 1.0, 5.0, 20.0]).view(1, H, 1, 1)  # heads live on different scales
    errors = {}
    for g in ("per_token", "per_head"):
        got, _ = Int8KVCache(1, granularity=g).update(0, k, v)
        errors[g] = (got - k).pow(2).mean().item()
        want, _ = _reference_int8(k, g)
        assert errors[g] == pytest.approx(float(((want - k.double().numpy()) ** 2).mean()), rel=1e-3)
    assert errors["per_head"] < errors["per_token"] / 2


def test_int8_cache_decoding_close_to_fp32():
    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=40, n_layers=2)).eval()
    idx = torch.randint(0, 40, (1, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full = model(idx)
        for g in ("per_token", "per_head"):
            cache = Int8KVCache(model.config.n_layers, granularity=g)
            out = torch.cat([model(idx[:, :8], cache=cache)] + [model(idx[:, t:t + 1], cache=cache)
                                                                for t in range(8, 24)], dim=1)
            err = (out - full).abs()
            assert 0 < err.mean() < 1e-3 * full.abs().mean() * 10 and err.max() < 0.01
            assert cache.seq_len == 24


def test_bad_input():
    with pytest.raises(ValueError, match="granularity"):
        Int8KVCache(2, granularity="per_channel")
    cache = KVCache(2)
    with pytest.raises(ValueError, match="layer"):
        cache.update(2, *_kv(0))
    with pytest.raises(ValueError, match="same|shape"):
        cache.update(0, torch.zeros(1, 2, 3, 4), torch.zeros(1, 2, 3, 5))
    with pytest.raises(TypeError, match="cache"):
        cache_bytes("cache")


def test_bits_per_char_through_an_int8_cache_equals_token_by_token_decoding():
    from coursekit.llm.corpus import bits_per_char

    torch.manual_seed(0)
    model = TinyGPT(GPTConfig(vocab_size=40, n_layers=2, context=16)).eval()
    ids = torch.randint(0, 40, (33,), generator=torch.Generator().manual_seed(2))
    plain = bits_per_char(model, ids, context=16)
    assert bits_per_char(model, ids, context=16, make_cache=lambda: KVCache(2)) == pytest.approx(plain, abs=1e-6)
    got = bits_per_char(model, ids, context=16, make_cache=lambda: Int8KVCache(2, "per_head"))
    nats = []
    with torch.no_grad():
        for start in (0, 16):  # two windows of 16 targets, decoded one token at a time through the cache
            cache = Int8KVCache(2, "per_head")
            for t in range(start, start + 16):
                logp = torch.log_softmax(model(ids[t:t + 1][None], cache=cache)[0, -1].double(), dim=0)
                nats.append(-float(logp[ids[t + 1]]))
    assert got == pytest.approx(float(np.mean(nats)) / np.log(2), abs=1e-5) and got != plain
