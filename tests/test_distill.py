"""coursekit.distill: the KD loss against the formula written out with torch.nn.functional and by hand,
finite-difference and analytic gradients, the T^2 scaling, hint / relational / attention losses, bad input."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from coursekit.distill import (
    UNLABELED,
    FeatureTap,
    HintLoss,
    attention_transfer_loss,
    kd_loss,
    rkd_distance_loss,
    soft_gradient_norm,
    soft_loss,
    softmax_t,
)


def _logits(seed, b=6, c=5, scale=3.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(b, c, generator=g)).to(dtype)


def test_softmax_t_known_values():
    z = torch.tensor([[2.0, 1.0, 0.0]])
    e = [math.exp(v) for v in (2.0, 1.0, 0.0)]
    assert torch.allclose(softmax_t(z, 1.0), torch.tensor([[v / sum(e) for v in e]]), atol=1e-6)
    assert abs(softmax_t(z, 1.0)[0, 0].item() - 0.6652) < 1e-4          # the quiz's hand-computed value
    e2 = [math.exp(v / 2) for v in (2.0, 1.0, 0.0)]
    assert abs(softmax_t(z, 2.0)[0, 0].item() - e2[0] / sum(e2)) < 1e-6   # 0.5065
    assert torch.allclose(softmax_t(z, 1e4), torch.full((1, 3), 1 / 3), atol=1e-4)   # T -> inf: uniform
    big = torch.tensor([[1000.0, 0.0]])
    assert torch.isfinite(softmax_t(big, 0.5)).all()                    # no overflow


def test_kd_loss_equals_functional_formula():
    s, t = _logits(0), _logits(1)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    for T, alpha in ((1.0, 0.5), (4.0, 0.9), (2.5, 0.0), (8.0, 1.0)):
        want = alpha * T * T * F.kl_div(F.log_softmax(s / T, dim=1), F.softmax(t / T, dim=1),
                                        reduction="batchmean") + (1 - alpha) * F.cross_entropy(s, y)
        assert torch.allclose(kd_loss(s, t, y, T, alpha), want, atol=1e-5), (T, alpha)


def test_kd_loss_by_hand_float64():
    s, t = _logits(2, dtype=torch.float64), _logits(3, dtype=torch.float64)
    T = 3.0
    total = 0.0
    for i in range(len(s)):
        p = [math.exp(v / T) for v in t[i].tolist()]
        q = [math.exp(v / T) for v in s[i].tolist()]
        p = [v / sum(p) for v in p]
        q = [v / sum(q) for v in q]
        total += sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q))
    assert abs(kd_loss(s, t, None, T, 1.0).item() - T * T * total / len(s)) < 1e-10


def test_kd_wrong_variants_differ():
    """The classic bugs give different numbers, so the tests above would catch them."""
    s, t, T = _logits(4), _logits(5), 4.0
    right = soft_loss(s, t, T)
    swapped = F.kl_div(F.log_softmax(t / T, 1), F.softmax(s / T, 1), reduction="batchmean")
    with pytest.warns(UserWarning):
        mean_red = F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="mean")
    assert not torch.allclose(right, swapped, atol=1e-4)
    assert torch.allclose(mean_red * s.shape[1], right, atol=1e-5)   # "mean" also divides by the classes


def test_kd_gradient_finite_differences_and_analytic():
    s = _logits(6, dtype=torch.float64).requires_grad_(True)
    t = _logits(7, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3, 4, 0])
    assert torch.autograd.gradcheck(lambda z: kd_loss(z, t, y, 3.0, 0.7), (s,))
    # Hinton et al. (2015) sec. 2.1: d(T^2 KL)/dz_s = T (q_T - p_T) / batch
    T = 5.0
    (g,) = torch.autograd.grad(kd_loss(s, t, None, T, 1.0), s)
    want = T * (torch.softmax(s.detach() / T, 1) - torch.softmax(t / T, 1)) / len(s)
    assert torch.allclose(g, want, atol=1e-10)


def test_teacher_gets_no_gradient():
    s = _logits(8).requires_grad_(True)
    t = _logits(9).requires_grad_(True)
    kd_loss(s, t, None, 2.0, 1.0).backward()
    assert t.grad is None and s.grad is not None


def test_t_squared_keeps_gradient_scale():
    s, t = _logits(10, b=64, c=10, scale=1.0), _logits(11, b=64, c=10, scale=1.0)
    unscaled = [soft_gradient_norm(s, t, T, scaled=False) for T in (4.0, 8.0, 16.0)]
    scaled = [soft_gradient_norm(s, t, T, scaled=True) for T in (4.0, 8.0, 16.0)]
    # unscaled: each doubling of T divides the gradient by ~4 (1/T^2); scaled: nearly constant
    assert 3.5 < unscaled[0] / unscaled[1] < 4.5 and 3.8 < unscaled[1] / unscaled[2] < 4.2
    assert 0.9 < scaled[0] / scaled[2] < 1.1


def test_unlabeled_rows_get_soft_loss_only():
    s, t = _logits(12), _logits(13)
    y = torch.tensor([0, UNLABELED, 2, UNLABELED, 4, UNLABELED])
    keep = y != UNLABELED
    want = 0.6 * 4 * soft_loss(s, t, 2.0) + 0.4 * F.cross_entropy(s[keep], y[keep])
    assert torch.allclose(kd_loss(s, t, y, 2.0, 0.6), want, atol=1e-6)
    all_unl = torch.full((6,), UNLABELED)
    assert torch.allclose(kd_loss(s, t, all_unl, 2.0, 0.6), 0.6 * 4 * soft_loss(s, t, 2.0), atol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    ({"T": 0.0}, "T=0.0"), ({"T": -1.0}, "T=-1.0"), ({"alpha": 1.5}, "alpha"), ({"alpha": -0.1}, "alpha"),
])
def test_bad_scalar_input(kwargs, match):
    s, t, y = _logits(0), _logits(1), torch.zeros(6, dtype=torch.long)
    args = {"T": 2.0, "alpha": 0.5, **kwargs}
    with pytest.raises(ValueError, match=match):
        kd_loss(s, t, y, **args)


def test_bad_shapes():
    s, y = _logits(0), torch.zeros(6, dtype=torch.long)
    with pytest.raises(ValueError, match="teacher_logits"):
        kd_loss(s, _logits(1, c=7), y, 2.0, 0.5)          # class counts differ
    with pytest.raises(ValueError, match="same shape"):
        kd_loss(s, _logits(1, b=5), y, 2.0, 0.5)          # batch sizes differ
    with pytest.raises(ValueError, match="student_logits"):
        kd_loss(torch.randn(6), _logits(1), y, 2.0, 0.5)
    with pytest.raises(ValueError, match="alpha=1"):
        kd_loss(s, _logits(1), None, 2.0, 0.5)
    with pytest.raises(ValueError, match="T="):
        softmax_t(s, 0)


def test_hint_loss_matches_manual_regressor():
    torch.manual_seed(0)
    hint = HintLoss(8, 16)
    s, t = torch.randn(5, 8), torch.randn(5, 16, requires_grad=True)
    want = ((s @ hint.regressor.weight.T + hint.regressor.bias - t) ** 2).mean()
    loss = hint(s, t)
    assert torch.allclose(loss, want, atol=1e-6)
    loss.backward()
    assert t.grad is None and hint.regressor.weight.grad is not None
    conv = HintLoss(4, 6, dims=1)
    s1, t1 = torch.randn(3, 4, 10), torch.randn(3, 6, 10)
    w = conv.regressor.weight[:, :, 0]
    manual = torch.einsum("oc,bcl->bol", w, s1) + conv.regressor.bias[None, :, None]
    assert torch.allclose(conv(s1, t1), F.mse_loss(manual, t1), atol=1e-6)
    assert conv(torch.randn(3, 4, 20), t1).shape == ()            # resized to the teacher's length
    with pytest.raises(ValueError, match="student_channels"):
        HintLoss(0, 4)
    with pytest.raises(ValueError, match="dims"):
        HintLoss(4, 4, dims=3)
    with pytest.raises(ValueError, match="batch"):
        hint(torch.randn(5, 8), torch.randn(4, 16))


def test_feature_tap_records_layer_output():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 2))
    x = torch.randn(3, 4)
    with FeatureTap(model, "1") as tap:
        model(x)
        assert torch.equal(tap.output, torch.relu(model[0](x)))
    model(torch.randn(3, 4))
    assert torch.equal(tap.output, torch.relu(model[0](x)))         # removed: not updated any more


def test_rkd_distance_by_hand():
    torch.manual_seed(0)
    t = torch.randn(5, 7)
    s = torch.randn(5, 3)
    assert rkd_distance_loss(3.0 * t, t).item() < 1e-10             # scale-invariant: same relations, any width
    def nd(e):
        d = [[float((e[i] - e[j]).norm()) for j in range(len(e))] for i in range(len(e))]
        pairs = [d[i][j] for i in range(len(e)) for j in range(len(e)) if i != j]
        mu = sum(pairs) / len(pairs)
        return [v / mu for v in pairs]
    diffs = [a - b for a, b in zip(nd(s), nd(t))]
    huber = sum(0.5 * x * x if abs(x) < 1 else abs(x) - 0.5 for x in diffs) / len(diffs)
    assert abs(rkd_distance_loss(s, t).item() - huber) < 1e-5
    with pytest.raises(ValueError, match="batch"):
        rkd_distance_loss(torch.randn(4, 3), torch.randn(5, 3))


def test_attention_transfer_by_hand():
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 5), torch.randn(2, 8, 5)
    qs = (s ** 2).sum(1)
    qt = (t ** 2).sum(1)
    want = ((qs / qs.norm(dim=1, keepdim=True) - qt / qt.norm(dim=1, keepdim=True)).norm(dim=1)).mean()
    assert torch.allclose(attention_transfer_loss(s, t), want, atol=1e-6)
    assert attention_transfer_loss(t[:, [1, 0, 2, 3, 4, 5, 6, 7]], t).item() < 1e-6   # channel order irrelevant
    with pytest.raises(ValueError, match="spatial"):
        attention_transfer_loss(torch.randn(2, 3, 5), torch.randn(2, 3, 6))


def test_explore_entropy_and_class_similarity():
    from coursekit.distill.explore import class_similarity, entropy_bits

    assert entropy_bits(torch.tensor([[1.0, 0.0, 0.0, 0.0]])).item() == pytest.approx(0.0, abs=1e-6)
    assert entropy_bits(torch.full((1, 8), 1 / 8)).item() == pytest.approx(3.0)
    logits = _logits(20, b=9, c=3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 1])
    sim = class_similarity(logits, labels, T=2.0)
    p = torch.softmax(logits / 2.0, 1)
    for c in range(3):
        assert torch.allclose(sim[c], p[labels == c].mean(0), atol=1e-6)
