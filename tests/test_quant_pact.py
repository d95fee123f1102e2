"""PACT (Choi et al. 2018): forward vs torch's fake quantization, gradients vs autograd on the paper's own
formulation (eq. 1-3), and the relation to LSQ's step gradient."""
import pytest
import torch

from coursekit.quant.lsq import lsq_fake_quantize
from coursekit.quant.pact import PACTQuantizer, pact_alpha_grad, pact_quantize


def _paper_pact(x, alpha, qmax):
    """Eq. 1-2 written with abs (so autograd gives eq. 3) and a detached rounding residual (the STE)."""
    y = 0.5 * (x.abs() - (x - alpha).abs() + alpha)
    s = (alpha / qmax).detach()
    return y + (torch.round(y * (1.0 / s)) * s - y).detach()


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_forward_equals_torch_fake_quant_of_the_clipped_relu(bits):
    gen = torch.Generator().manual_seed(bits)
    x = torch.randn(2000, generator=gen) * 3
    alpha = torch.tensor([2.3])
    qmax = 2**bits - 1
    want = torch.fake_quantize_per_tensor_affine(torch.clamp(x, 0, 2.3), float(alpha / qmax), 0, 0, qmax)
    assert torch.allclose(pact_quantize(x, alpha, bits), want, atol=1e-6)


@pytest.mark.parametrize("bits", [2, 3, 8])
def test_gradients_match_autograd_on_the_papers_formula(bits):
    gen = torch.Generator().manual_seed(10 + bits)
    x = torch.randn(3000, generator=gen) * 2
    weights = torch.randn(3000, generator=gen)
    a1 = torch.tensor([1.7], requires_grad=True)
    a2 = torch.tensor(1.7, requires_grad=True)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    (pact_quantize(x1, a1, bits) * weights).sum().backward()
    (_paper_pact(x2, a2, 2**bits - 1) * weights).sum().backward()
    assert torch.allclose(pact_quantize(x, a1.detach(), bits), _paper_pact(x, a2.detach(), 2**bits - 1), atol=1e-6)
    assert torch.equal(x1.grad, x2.grad)
    assert torch.allclose(a1.grad, a2.grad.reshape(1), atol=1e-4)
    assert torch.equal(pact_alpha_grad(x, 1.7), (x >= 1.7).float())
    assert a1.grad.item() == pytest.approx((weights * (x >= 1.7)).sum().item(), abs=1e-4)


def test_pact_is_lsq_without_the_rounding_term():
    bits, alpha = 3, 2.0
    qmax = 2**bits - 1
    s = alpha / qmax
    x = torch.tensor([0.1, 0.5, 1.1, 1.9, 2.0 + s, 3.0, 10.0])
    g_pact, g_lsq = [], []
    for v in x:
        a = torch.tensor([alpha], requires_grad=True)
        pact_quantize(v.reshape(1), a, bits).sum().backward()
        g_pact.append(a.grad.item())
        step = torch.tensor([s], requires_grad=True)
        lsq_fake_quantize(v.reshape(1), step, 0, qmax).sum().backward()
        g_lsq.append(step.grad.item() / qmax)   # d/d alpha = d/ds * ds/dalpha = d/ds / Qp
    assert g_pact == [0, 0, 0, 0, 1, 1, 1]
    assert g_lsq[4:] == pytest.approx([1, 1, 1])                    # clipped: identical
    v = (x[:4] / s)
    assert g_lsq[:4] == pytest.approx(((torch.round(v) - v) / qmax).tolist(), abs=1e-6)  # inside: LSQ only


def test_quantizer_module_and_penalty():
    q = PACTQuantizer(bits=4, init_alpha=1.5)
    x = torch.linspace(-1, 3, 101)
    y = q(x)
    y.sum().backward()
    assert q.alpha.grad.item() == pytest.approx(float((x >= 1.5).sum()))
    assert y.max().item() == pytest.approx(1.5) and y.min().item() == 0.0
    assert q.l2_penalty(0.01).item() == pytest.approx(0.01 * 1.5**2)
    assert "alpha=1.5" in repr(q)


def test_bad_input():
    with pytest.raises(ValueError, match="alpha must be > 0"):
        pact_quantize(torch.ones(3), torch.tensor([0.0]))
    with pytest.raises(TypeError, match="one-element"):
        pact_quantize(torch.ones(3), torch.tensor([1.0, 2.0]))
    with pytest.raises(TypeError, match="floating-point"):
        pact_quantize(torch.ones(3, dtype=torch.int64), torch.tensor([1.0]))
    with pytest.raises(ValueError):
        pact_quantize(torch.ones(3), torch.tensor([1.0]), bits=1)
    with pytest.raises(ValueError, match="init_alpha"):
        PACTQuantizer(init_alpha=-1)
