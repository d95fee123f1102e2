"""GPTQ against a naive float64 Optimal Brain Surgeon walk (no Cholesky, no lazy batches), against RTN on
correlated inputs, and its bad input."""
import pytest
import torch

from coursekit.llm.gptq import damped_inverse_cholesky, gptq_quantize, hessian, layer_error, obq_update
from coursekit.llm.groupwise import group_qparams, quantize_groupwise


def _layer(seed=0, n=256, d_in=64, d_out=24):
    """A random-but-structured layer: correlated inputs with one high-energy channel, a Gaussian weight."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.eye(d_in) + 2 * torch.randn(d_in, d_in, generator=g) / d_in**0.5
    x = torch.randn(n, d_in, generator=g) @ mix
    x[:, 5] *= 6
    w = torch.randn(d_out, d_in, generator=g) * 0.05
    return x, w


def _obs_reference(w, H, bits, g, damp=0.01, act_order=False, symmetric=False):
    """GPTQ's OBQ walk written out in float64 (Frantar et al. 2022, eq. 2-3): quantize column q, update every
    remaining column with the full inverse Hessian, then remove q from the inverse by Gaussian elimination."""
    W, H = w.double().clone(), H.double().clone()
    cols = W.shape[1]
    perm = torch.argsort(torch.diag(H), descending=True, stable=True) if act_order else torch.arange(cols)
    W, H = W[:, perm], H[perm][:, perm]
    Hinv = torch.linalg.inv(H + damp * torch.diag(H).mean() * torch.eye(cols, dtype=torch.float64))
    Q = torch.zeros_like(W)
    for q in range(cols):
        if q % g == 0:  # group parameters from the current (already updated) weights of the group
            scale, zero = group_qparams(W[:, q:q + g].float(), bits, symmetric)
        qmin = 1 if symmetric else 0  # RTN of the column written out: round(w * (1/S)) + Z, clamped (float32)
        code = torch.clamp(torch.round(W[:, q].float() * (1.0 / scale)) + zero, qmin, 2**bits - 1)
        Q[:, q] = ((code - zero) * scale).double()
        err = (W[:, q] - Q[:, q]) / Hinv[q, q]
        W[:, q:] -= torch.outer(err, Hinv[q, q:])                      # delta_F = -err * [H_F^-1]_{q,F}
        Hinv = Hinv - torch.outer(Hinv[:, q], Hinv[q, :]) / Hinv[q, q]  # H_{F-q}^-1 (eq. 3)
    out = torch.empty_like(Q)
    out[:, perm] = Q
    return out.float()


@pytest.mark.parametrize("bits,group_size,block_size,act_order,symmetric", [
    (4, 16, 32, False, False),   # groups inside blocks
    (3, 32, 8, False, False),    # groups spanning several lazy blocks
    (3, 16, 24, False, False),   # a group starting mid-block and ending after it (pending lazy update)
    (2, 64, 24, False, True),    # one group per row, blocks not dividing the width
    (3, 16, 32, True, False),    # act-order
    (4, 32, 16, True, True),
])
def test_gptq_matches_float64_obs_reference(bits, group_size, block_size, act_order, symmetric):
    x, w = _layer()
    H = hessian(x)
    w_hat, gq = gptq_quantize(w, H, bits, group_size, block_size=block_size, act_order=act_order,
                              symmetric=symmetric)
    ref = _obs_reference(w, H, bits, group_size, act_order=act_order, symmetric=symmetric)
    torch.testing.assert_close(w_hat, ref, rtol=1e-6, atol=1e-7)
    assert torch.equal(gq.dequantize(), w_hat)
    assert (gq.perm is not None) == act_order
    if act_order:  # visited by decreasing diag(H): the high-energy channel 5 first
        assert int(gq.perm[0]) == 5 and torch.equal(gq.perm.sort().values, torch.arange(64))


@pytest.mark.parametrize("bits", [4, 3, 2])
@pytest.mark.parametrize("group_size", [16, None])
@pytest.mark.parametrize("seed", [0, 1])
def test_gptq_layer_error_not_worse_than_rtn(bits, group_size, seed):
    x, w = _layer(seed)
    rtn = layer_error(x, w, quantize_groupwise(w, bits, group_size).dequantize())
    gptq = layer_error(x, w, gptq_quantize(w, hessian(x), bits, group_size)[0])
    act = layer_error(x, w, gptq_quantize(w, hessian(x), bits, group_size, act_order=True)[0])
    assert gptq < rtn and act < rtn
    assert gptq < 0.85 * rtn  # on correlated inputs the compensation is large, not a rounding accident


def test_hessian_is_two_xtx_over_n_and_batches_add_up():
    x, _ = _layer(n=40)
    ref = 2 * x.double().T @ x.double() / 40
    torch.testing.assert_close(hessian(x), ref)
    torch.testing.assert_close(hessian([x[:15], x[15:].reshape(5, 5, 64)]), ref)


def test_obq_update_hand_computed():
    U = torch.tensor([[2.0, 1.0], [0.0, 3.0]], dtype=torch.float64)
    w = torch.tensor([[1.0, 2.0]], dtype=torch.float64)
    new, err = obq_update(w, U, 0, torch.tensor([0.5], dtype=torch.float64))
    assert err.tolist() == [0.25] and new.tolist() == [[0.5, 1.75]] and w.tolist() == [[1.0, 2.0]]


def test_cholesky_factor_of_damped_inverse():
    x, _ = _layer(n=100)
    H = hessian(x)
    U = damped_inverse_cholesky(H, 0.01)
    ref = torch.linalg.inv(H + 0.01 * H.diagonal().mean() * torch.eye(64, dtype=torch.float64))
    torch.testing.assert_close(U.T @ U, ref)
    assert torch.equal(U, U.triu())


def test_dead_input_column_gets_zero_weight():
    x, w = _layer()
    x[:, 9] = 0.0
    w_hat, _ = gptq_quantize(w, hessian(x), 4, 16)
    assert bool((w_hat[:, 9] == 0).all())
    assert layer_error(x, w, w_hat) < layer_error(x, w, quantize_groupwise(w, 4, 16).dequantize())


def test_bad_input_names_the_argument():
    x, w = _layer(n=16)  # 16 rows for 64 inputs: H has rank 16
    H = hessian(x)
    with pytest.raises(ValueError, match="damp=0.0"):
        gptq_quantize(w, H, 4, 16, damp=0.0)
    gptq_quantize(w, H, 4, 16, damp=0.01)  # dampening makes it positive definite
    with pytest.raises(ValueError, match="inputs is empty"):
        hessian([])
    with pytest.raises(ValueError, match="inputs is empty"):
        hessian(torch.empty(0, 64))
    with pytest.raises(ValueError, match="bits=5"):
        gptq_quantize(w, H, 5, 16)
    with pytest.raises(ValueError, match="group_size=24 does not divide in_features=64"):
        gptq_quantize(w, H, 4, 24)
    with pytest.raises(ValueError, match=r"H must be a \[64, 64\]"):
        gptq_quantize(w, H[:32, :32], 4, 16)
    with pytest.raises(ValueError, match="damp=-0.1"):
        gptq_quantize(w, H, 4, 16, damp=-0.1)
