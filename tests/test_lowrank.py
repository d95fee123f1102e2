"""coursekit.lowrank against torch.linalg.svd, tensorly's Tucker decomposition and hand-computed cases."""
import pytest
import tensorly as tl
import torch
from tensorly.decomposition import partial_tucker
from torch import nn

from coursekit import lowrank


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def test_svd_factorize_error_is_the_discarded_singular_values():
    layer = nn.Linear(48, 32).double()
    s = torch.linalg.svd(layer.weight.detach(), full_matrices=False).S
    for rank in (1, 5, 31, 32):
        two = lowrank.svd_factorize(layer, rank)
        w_r = two[1].weight @ two[0].weight
        assert two[0].weight.shape == (rank, 48) and two[1].weight.shape == (32, rank)
        assert torch.linalg.matrix_rank(w_r) == rank
        err = torch.linalg.norm(layer.weight - w_r)
        assert err.item() == pytest.approx(s[rank:].pow(2).sum().sqrt().item(), abs=1e-9)
        assert lowrank.truncation_error(layer.weight, rank) == pytest.approx(err.item(), abs=1e-9)
        x = torch.randn(7, 48, dtype=torch.float64)
        torch.testing.assert_close(two(x), x @ w_r.T + layer.bias)


def test_full_rank_is_exact_and_float32_layers_stay_float32():
    layer = nn.Linear(20, 10)
    two = lowrank.svd_factorize(layer, 10)
    assert two[0].weight.dtype == torch.float32
    x = torch.randn(4, 20)
    torch.testing.assert_close(two(x), layer(x), atol=1e-5, rtol=1e-5)


def test_rank_for_energy_hand_case():
    w = torch.diag(torch.tensor([3.0, 2.0, 1.0, 0.0]))  # energies 9, 4, 1, 0 of 14
    assert lowrank.rank_for_energy(w, 9 / 14) == 1
    assert lowrank.rank_for_energy(w, 9 / 14 + 1e-6) == 2
    assert lowrank.rank_for_energy(w, 13 / 14) == 2
    assert lowrank.rank_for_energy(w, 0.95) == 3
    assert lowrank.rank_for_energy(w, 1.0) == 3
    torch.testing.assert_close(lowrank.energy_kept(w).float(), torch.tensor([9, 13, 14, 14]) / 14.0)


def test_break_even_rank_and_parameter_count():
    # 256 x 256: mn/(m+n) = 128 exactly, so r must be < 128
    assert lowrank.break_even_rank(256, 256) == 127
    assert lowrank.break_even_rank(300, 100) == 74  # 30000 / 400 = 75 -> 74
    for m, n in [(256, 256), (300, 100), (7, 3)]:
        r = lowrank.break_even_rank(m, n)
        assert lowrank.factorized_params(m, n, r, bias=False) < m * n <= lowrank.factorized_params(m, n, r + 1, False)


def test_conv_channel_svd_matches_the_matrix_svd_and_keeps_stride_padding():
    conv = nn.Conv2d(8, 16, 3, stride=2, padding=1).double()
    two = lowrank.factorize_conv(conv, 5)
    assert two[0].stride == (2, 2) and two[0].padding == (1, 1) and two[1].kernel_size == (1, 1)
    w = conv.weight.detach().reshape(16, -1)
    s = torch.linalg.svd(w).S
    w_r = (two[1].weight.reshape(16, 5) @ two[0].weight.reshape(5, -1))
    assert torch.linalg.norm(w - w_r).item() == pytest.approx(s[5:].pow(2).sum().sqrt().item(), abs=1e-9)
    x = torch.randn(2, 8, 9, 9, dtype=torch.float64)
    ref = nn.functional.conv2d(x, w_r.reshape(conv.weight.shape), conv.bias, stride=2, padding=1)
    torch.testing.assert_close(two(x), ref)


@pytest.mark.parametrize("n_iter", [1, 20])
def test_tucker2_matches_tensorly_partial_tucker(n_iter):
    w = torch.randn(16, 12, 3, 3, dtype=torch.float64)
    core, u_out, u_in = lowrank.tucker2(w, (6, 4), n_iter=n_iter)
    tl.set_backend("pytorch")
    try:
        (t_core, (t_out, t_in)), _ = partial_tucker(w, rank=[6, 4], modes=[0, 1], init="svd", n_iter_max=n_iter,
                                                    tol=0)
        ref = tl.tenalg.multi_mode_dot(t_core, [t_out, t_in], modes=[0, 1])
    finally:
        tl.set_backend("numpy")
    ours = lowrank.tucker2_reconstruct(core, u_out, u_in)
    # the factors are unique only up to rotation; the reconstruction is not
    torch.testing.assert_close(ours, ref, atol=1e-8, rtol=1e-8)
    assert torch.allclose(u_out.T @ u_out, torch.eye(6, dtype=torch.float64))


def test_hosvd_is_never_better_than_hooi_and_exact_at_full_rank():
    w = torch.randn(10, 6, 3, 3, dtype=torch.float64)
    err = [torch.linalg.norm(w - lowrank.tucker2_reconstruct(*lowrank.tucker2(w, (4, 3), n_iter=i))) for i in (0, 10)]
    assert err[1] <= err[0] + 1e-12
    torch.testing.assert_close(lowrank.tucker2_reconstruct(*lowrank.tucker2(w, (10, 6))), w)


def test_tucker2_conv_computes_the_reconstructed_convolution():
    conv = nn.Conv2d(12, 16, 3, padding=1).double()
    seq = lowrank.tucker2_conv(conv, (6, 4), n_iter=3)
    assert [m.kernel_size for m in seq] == [(1, 1), (3, 3), (1, 1)]
    w_hat = lowrank.tucker2_reconstruct(*lowrank.tucker2(conv.weight, (6, 4), n_iter=3))
    x = torch.randn(2, 12, 8, 8, dtype=torch.float64)
    torch.testing.assert_close(seq(x), nn.functional.conv2d(x, w_hat, conv.bias, padding=1))


def test_lora_starts_at_base_merges_and_unmerges_exactly():
    base = nn.Linear(16, 8).double()
    w0 = base.weight.detach().clone()
    lora = lowrank.LoRALinear(base, rank=2, alpha=4.0)
    x = torch.randn(5, 16, dtype=torch.float64)
    torch.testing.assert_close(lora(x), base(x))
    assert [n for n, p in lora.named_parameters() if p.requires_grad] == ["lora_a", "lora_b"]
    assert lora.trainable_parameters() == 2 * (16 + 8)
    with torch.no_grad():
        lora.lora_b.normal_()
    y = lora(x)
    delta = 2.0 * lora.lora_b @ lora.lora_a
    assert torch.linalg.matrix_rank(delta) == 2
    torch.testing.assert_close(y, x @ (w0 + delta).T + base.bias)
    lora.merge()
    torch.testing.assert_close(lora.base.weight, w0 + delta)
    torch.testing.assert_close(lora(x), y)
    lora.merge().unmerge().unmerge()
    torch.testing.assert_close(lora.base.weight, w0, atol=1e-12, rtol=0)


def test_lora_gradients_reach_only_the_adapter():
    lora = lowrank.LoRALinear(nn.Linear(6, 4), rank=2)
    lora(torch.randn(3, 6)).sum().backward()
    assert lora.base.weight.grad is None and lora.lora_a.grad is not None


def test_factorize_model_and_select_ranks():
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))
    x = torch.randn(3, 64)
    done = lowrank.factorize_model(model, ranks={"0": 8, "2": 9})
    assert done == {"0": 8}  # 9 >= break-even 7 for 64x10: left dense
    assert isinstance(model[0], nn.Sequential) and isinstance(model[2], nn.Linear)
    assert model(x).shape == (3, 10)
    net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64))
    ranks = lowrank.select_ranks(net, budget=2 * lowrank.factorized_params(64, 64, 10))
    total = sum(lowrank.factorized_params(64, 64, r) for r in ranks.values())
    assert total <= 2 * lowrank.factorized_params(64, 64, 10) and all(1 <= r <= 31 for r in ranks.values())
    # the default energy rule factorizes every Linear
    net2 = nn.Sequential(nn.Linear(64, 64))
    want = lowrank.rank_for_energy(net2[0].weight, 0.5)
    assert lowrank.factorize_model(net2, energy=0.5, skip_unprofitable=False) == {"0": want}
    assert net2[0][0].weight.shape == (want, 64)


@pytest.mark.parametrize("call, match", [
    (lambda: lowrank.svd_factorize(nn.Linear(4, 3), 0), "rank=0"),
    (lambda: lowrank.svd_factorize(nn.Linear(4, 3), 4), "rank must be in 1..3"),
    (lambda: lowrank.rank_for_energy(torch.eye(3), 0.0), "energy"),
    (lambda: lowrank.rank_for_energy(torch.eye(3), 1.5), "energy"),
    (lambda: lowrank.rank_for_energy(torch.empty(0, 3), 0.5), "empty"),
    (lambda: lowrank.factorize_conv(nn.Conv2d(4, 4, 3, groups=2), 2), "groups"),
    (lambda: lowrank.factorize_model(nn.Sequential(nn.Linear(4, 4)), ranks={"x": 1}), "'x'"),
    (lambda: lowrank.tucker2_conv(nn.Conv2d(4, 8, 3), (9, 2)), "ranks\\[0\\]"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_unsupported_layer_type_is_named():
    with pytest.raises(TypeError, match="fc is a Conv2d"):
        lowrank.svd_factorize(nn.Conv2d(3, 3, 1), 1, name="fc")
    with pytest.raises(TypeError, match="Conv1d"):
        lowrank.factorize_conv(nn.Conv1d(3, 3, 1), 1)


def test_select_ranks_with_a_latency_cost_table():
    # a measured-latency budget: any cost(name, layer, rank) works; here a fake table, 1 ms per 8 ranks + 1 ms
    torch.manual_seed(5)
    net = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64))
    with torch.no_grad():  # layer "2" has a fast-decaying spectrum, so the greedy should cut it first
        net[2].weight.copy_(torch.randn(64, 2) @ torch.randn(2, 64) + 0.01 * torch.randn(64, 64))

    def latency_ms(name, layer, rank):
        return 1.0 + rank / 8

    ranks = lowrank.select_ranks(net, budget=8.0, cost=latency_ms)
    assert sum(latency_ms(n, None, r) for n, r in ranks.items()) <= 8.0
    assert ranks["2"] < ranks["0"]
    with pytest.raises(ValueError, match="budget"):
        lowrank.select_ranks(net, budget=1.0, cost=latency_ms)
