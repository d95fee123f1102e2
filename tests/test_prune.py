"""coursekit.prune masks, reports, schedules, storage and lottery tickets against torch.nn.utils.prune and
hand-computed cases."""
import copy

import pytest
import torch
import torch.nn.utils.prune as tprune
from torch import nn

from coursekit import prune
from coursekit.models import build_model
from coursekit.train import fit


def _linear(seed=0, shape=(6, 8)):
    torch.manual_seed(seed)
    return nn.Linear(shape[1], shape[0])


@pytest.mark.parametrize("amount", [0.0, 0.3, 0.5, 0.9, 1.0, 7])
def test_magnitude_mask_equals_torch_l1_unstructured(amount):
    ours, ref = _linear(), _linear()
    prune.magnitude_prune(ours, "weight", amount)
    tprune.l1_unstructured(ref, "weight", amount)
    assert torch.equal(prune.get_mask(ours), ref.weight_mask)
    assert torch.equal(ours.weight, ref.weight)


def test_global_mask_equals_torch_global_unstructured():
    torch.manual_seed(1)
    ours, ref = build_model("mlp"), None
    ref = copy.deepcopy(ours)
    pick = lambda m: [(m.net[1], "weight"), (m.net[3], "weight"), (m.net[5], "weight")]
    prune.global_magnitude_prune(pick(ours), 0.8)
    tprune.global_unstructured(pick(ref), pruning_method=tprune.L1Unstructured, amount=0.8)
    for (a, _), (b, _) in zip(pick(ours), pick(ref)):
        assert torch.equal(prune.get_mask(a), b.weight_mask)
    # one threshold: layers get different sparsities, the total is exact
    rows = prune.sparsity_report(ours)
    total = sum(r["params"] for r in rows[:-1])
    assert rows[-1]["nonzero"] == total - round(0.8 * total)
    assert len({round(r["sparsity"], 3) for r in rows[:-1]}) > 1


def test_masks_survive_training_and_remove_is_permanent():
    torch.manual_seed(0)
    layer = nn.Linear(4, 3)
    prune.magnitude_prune(layer, amount=0.5)
    mask = prune.get_mask(layer)
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    for _ in range(5):
        opt.zero_grad()
        layer(torch.randn(8, 4)).pow(2).sum().backward()
        opt.step()
    out = layer(torch.randn(2, 4))
    assert out.shape == (2, 3)
    assert torch.equal(layer.weight == 0, mask == 0)
    prune.remove(layer)
    assert not prune.is_pruned(layer) and isinstance(layer.weight, nn.Parameter)
    assert set(dict(layer.named_parameters())) == {"weight", "bias"} and not list(layer.buffers())
    assert int((layer.weight == 0).sum()) == 6
    with pytest.raises(ValueError, match="not pruned"):
        prune.remove(layer)


def test_repruning_keeps_old_zeros_and_amount_is_absolute():
    layer = _linear(3)
    prune.magnitude_prune(layer, amount=0.25)
    first = prune.get_mask(layer)
    prune.magnitude_prune(layer, amount=0.5)
    second = prune.get_mask(layer)
    assert int((second == 0).sum()) == 24 and bool((second <= first).all())


def test_random_prune_count_and_nesting():
    layer = _linear(4)
    g = torch.Generator().manual_seed(0)
    prune.random_prune(layer, amount=0.25, generator=g)
    first = prune.get_mask(layer)
    prune.random_prune(layer, amount=0.75, generator=g)
    second = prune.get_mask(layer)
    assert int((first == 0).sum()) == 12 and int((second == 0).sum()) == 36 and bool((second <= first).all())


def test_nm_mask_hand_case_and_conv_layout():
    w = torch.tensor([[1.0, -4.0, 3.0, 2.0, 0.5, 0.1, -0.2, 0.3]])
    assert prune.nm_mask(w, 2, 4).tolist() == [[0, 1, 1, 0, 1, 0, 0, 1]]
    assert prune.nm_mask(w, 1, 2).tolist() == [[0, 1, 1, 0, 1, 0, 0, 1]]
    conv = nn.Conv2d(4, 3, 2)
    prune.nm_prune(conv, n=2, m=4)
    assert prune.is_nm_sparse(conv.weight, 2, 4)
    assert float(prune.sparsity(nn.Sequential(conv))) == pytest.approx(0.5)
    # groups run along the flattened (in, kh, kw) dimension
    rows = conv.weight.detach().reshape(3, -1)
    assert bool(((rows.reshape(3, 4, 4) != 0).sum(-1) == 2).all())


def test_nm_matches_torch_semi_structured_layout_rule():
    torch.manual_seed(0)
    w = torch.randn(16, 32)
    mask = prune.nm_mask(w, 2, 4)
    ref = torch.zeros_like(w)
    for r in range(16):
        for g in range(8):
            group = w[r, 4 * g:4 * g + 4].abs()
            ref[r, 4 * g + group.argsort(descending=True)[:2]] = 1
    assert torch.equal(mask, ref)


def test_cubic_schedule_hand_values():
    assert prune.cubic_schedule(0, 0.0, 0.8, 10, 20) == 0.0
    assert prune.cubic_schedule(10, 0.0, 0.8, 10, 20) == 0.0
    assert prune.cubic_schedule(15, 0.0, 0.8, 10, 20) == pytest.approx(0.8 - 0.8 * 0.125)
    assert prune.cubic_schedule(20, 0.0, 0.8, 10, 20) == 0.8
    assert prune.cubic_schedule(99, 0.1, 0.8, 10, 20) == 0.8
    assert prune.cubic_schedule(12, 0.2, 0.9, 10, 20) == pytest.approx(0.9 - 0.7 * 0.8 ** 3)


def test_gradual_pruning_through_fit_reaches_final_sparsity():
    torch.manual_seed(0)
    model = build_model("mlp")
    x, y = torch.randn(64, 1, 8, 8), torch.randint(0, 10, (64,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    targets = [(m, "weight") for m in (model.net[1], model.net[3])]
    pruner = prune.GradualPruning(targets, final=0.9, begin=2, end=10, every=2)
    fit(model, loader, epochs=3, progress=False, callbacks=[pruner])
    steps = [s for s, _ in pruner.history]
    assert steps == [2, 4, 6, 8, 10]
    assert [t for _, t in pruner.history] == [pytest.approx(prune.cubic_schedule(s, 0, 0.9, 2, 10)) for s in steps]
    zeros = sum(int((m.weight == 0).sum()) for m, _ in targets)
    total = sum(m.weight.numel() for m, _ in targets)
    assert zeros == round(0.9 * total)


def test_storage_bytes_hand_counts():
    w = torch.zeros(4, 10)
    w[0, 1], w[2, 3], w[3, 9] = 1.0, 2.0, 3.0
    assert prune.storage_bytes(w, "dense") == 160
    assert prune.storage_bytes(w, "csr_int32") == 3 * 4 + 3 * 4 + 5 * 4
    assert prune.storage_bytes(w, "csr_int16") == 3 * 4 + 3 * 2 + 5 * 2
    assert prune.storage_bytes(w, "bitmask") == 5 + 12
    v = torch.tensor([[1.0, 0, 0, 2, 0, 3, 4, 0]])
    assert prune.storage_bytes(v, "nm", n=2, m=4) == 4 * 4 + 1
    assert prune.storage_bytes(v.half(), "dense") == 16
    csr = w.to_sparse_csr()
    assert prune.storage_bytes(w, "csr_int32") == sum(
        t.numel() * t.element_size() for t in (csr.values(), csr.col_indices().int(), csr.crow_indices().int()))
    assert prune.csr_break_even(4, 4) == 0.5
    with pytest.raises(ValueError, match="not 2:4 sparse"):
        prune.storage_bytes(torch.ones(1, 8), "nm")
    with pytest.raises(ValueError, match="format"):
        prune.storage_bytes(w, "coo")


def test_sparsity_report_and_macs_on_lenet():
    torch.manual_seed(0)
    model = build_model("lenet")
    prune.magnitude_prune(model.classifier[1], amount=0.5)
    report = prune.sparsity_report(model)
    row = {r["layer"]: r for r in report}["classifier.1"]
    assert row["sparsity"] == pytest.approx(0.5) and row["params"] == 120 * 64
    assert report[-1]["nonzero"] == prune.nonzero_weights(model)
    macs = prune.count_macs(model, torch.zeros(1, 1, 8, 8))
    assert macs["layers"]["features.0"] == 6 * 25 * 64 and macs["layers"]["features.4"] == 16 * 6 * 25 * 16
    assert macs["total"] == 6 * 25 * 64 + 16 * 150 * 16 + 64 * 120 + 120 * 84 + 840


def test_sensitivity_scan_prunes_one_layer_at_a_time():
    torch.manual_seed(0)
    model = build_model("mlp")
    x = torch.randn(32, 1, 8, 8)
    evaluate = lambda m: float((m(x) - model(x)).abs().max() < 1e-6)
    scan = prune.sensitivity_scan(model, evaluate, [0.0, 0.5], layers=["net.1", "net.5"])
    assert scan["dense"] == 1.0 and scan["layers"] == {"net.1": [1.0, 0.0], "net.5": [1.0, 0.0]}
    assert not prune.is_pruned(model.net[1])


def test_lottery_ticket_keeps_mask_and_rewinds():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    init = copy.deepcopy(model.state_dict())
    seen = []

    def train(m):
        seen.append({k: v.clone() for k, v in m.state_dict().items()})
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.1)

    out = prune.lottery_ticket(model, train, lambda m: 0.5, rounds=2, rate=0.5)
    assert out["sparsity"] == [0.5, 0.75]
    # after each round the surviving weights start again from the initial values
    assert torch.equal(seen[1]["1.weight_orig"], init["1.weight"])
    assert torch.equal(seen[2]["1.weight_orig"], init["1.weight"])
    assert prune.sparsity(out["ticket_model"]) == pytest.approx(0.75, abs=0.01)
    control = out["control_model"]
    assert torch.equal(prune.get_mask(control[1]), prune.get_mask(model[1]))
    assert not torch.equal(control[1].weight_orig, model[1].weight_orig)


@pytest.mark.parametrize("call, match", [
    (lambda m: prune.magnitude_prune(m, amount=1.5), r"amount=1.5.*\[0, 1\]"),
    (lambda m: prune.magnitude_prune(m, amount=-0.1), "amount"),
    (lambda m: prune.magnitude_prune(m, amount=49), r"amount=49.*\[0, 48\]"),
    (lambda m: prune.magnitude_prune(m, "wieght"), "no parameter name='wieght'.*weight, bias"),
    (lambda m: prune.nm_prune(m, n=5, m=4), "n=5 > m=4"),
    (lambda m: prune.nm_prune(m, n=2, m=3), "m=3 does not divide the input dimension 8"),
    (lambda m: prune.cubic_schedule(1, 0.0, 0.5, 5, 5), "end=5"),
    (lambda m: prune.global_magnitude_prune([], 0.5), "parameters is empty"),
])
def test_bad_input_names_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call(_linear())
