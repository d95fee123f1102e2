"""Structured channel pruning against torch-pruning (DepGraph, Fang et al. 2023) and hand-built cases."""
import copy

import pytest
import torch
from torch import nn

from coursekit import prune
from coursekit.models import build_model

tp = pytest.importorskip("torch_pruning")


def _drop(model, layer, dropped):
    n = prune.channel_dependencies(model)[layer]
    channels = dict(model.named_modules())[layer].weight.shape[0]
    assert n.reason is None
    return [i for i in range(channels) if i not in dropped]


@pytest.mark.parametrize("name, plan", [
    ("lenet", {"features.0": [0, 3], "features.4": [1, 5, 7, 9]}),
    ("mlp", {"net.1": list(range(0, 128, 3)), "net.3": [2, 4, 60]}),
    ("resnet", {"stages.0.conv1": [0, 1, 2, 15], "stages.2.conv1": list(range(0, 64, 2))}),
])
def test_same_channels_as_torch_pruning_give_same_shapes_and_outputs(name, plan):
    torch.manual_seed(0)
    model = build_model(name)
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    model.eval()
    x = torch.randn(3, 1, 8, 8)
    ref = copy.deepcopy(model)
    graph = tp.DependencyGraph().build_dependency(ref, example_inputs=x)
    modules = dict(ref.named_modules())
    for layer, dropped in plan.items():
        fn = tp.prune_linear_out_channels if isinstance(modules[layer], nn.Linear) else tp.prune_conv_out_channels
        graph.get_pruning_group(modules[layer], fn, idxs=dropped).prune()
    ours = prune.remove_channels(model, {layer: _drop(model, layer, d) for layer, d in plan.items()})
    shapes = lambda m: {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes(ours) == shapes(ref)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


def test_amount_zero_and_sorting_keep_outputs():
    torch.manual_seed(0)
    x = torch.randn(4, 1, 8, 8)
    for name in ("lenet", "resnet", "mlp"):
        model = build_model(name).eval()
        with torch.no_grad():
            torch.testing.assert_close(prune.channel_prune(model, 0.0)(x), model(x), rtol=0, atol=0)
            sorted_model = prune.sort_channels(model)
            torch.testing.assert_close(sorted_model(x), model(x), rtol=1e-5, atol=1e-5)
        scores = prune.channel_importance(sorted_model, prune.prunable_layers(sorted_model)[0], "input")
        assert bool((scores[:-1] >= scores[1:]).all())


def test_l2_importance_keeps_the_largest_filters_hand_case():
    model = nn.Sequential(nn.Conv2d(1, 4, 1, bias=False), nn.ReLU(), nn.Conv2d(4, 2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([1.0, -5.0, 2.0, 0.5]).reshape(4, 1, 1, 1))
        model[2].weight.copy_(torch.arange(8.0).reshape(2, 4, 1, 1))
    pruned = prune.channel_prune(model, {"0": 0.5})
    assert pruned[0].weight.flatten().tolist() == [-5.0, 2.0]
    assert pruned[2].weight.reshape(2, 2).tolist() == [[1.0, 2.0], [5.0, 6.0]]
    assert pruned[0].out_channels == 2 and pruned[2].in_channels == 2
    # input importance: norm of the next layer's column j = sqrt(j^2 + (j+4)^2)
    expected = torch.tensor([(j ** 2 + (j + 4) ** 2) ** 0.5 for j in range(4)])
    torch.testing.assert_close(prune.channel_importance(model, "0", "input"), expected)


def test_flatten_into_linear_keeps_per_channel_column_blocks():
    torch.manual_seed(0)
    model = build_model("lenet").eval()
    pruned = prune.remove_channels(model, {"features.4": [0, 2]})
    assert pruned.classifier[1].in_features == 2 * 4
    torch.testing.assert_close(pruned.classifier[1].weight,
                               model.classifier[1].weight.detach()[:, [0, 1, 2, 3, 8, 9, 10, 11]])


def test_multiple_of_and_kept_counts():
    assert prune.kept_count(16, 0.5) == 8 and prune.kept_count(120, 0.5, multiple_of=8) == 64
    assert prune.kept_count(6, 0.9, multiple_of=8) == 6
    model = prune.channel_prune(build_model("lenet"), 0.5, multiple_of=8)
    assert model.classifier[1].out_features == 64 and model.classifier[3].out_features == 40


def test_refusals_name_the_layer_and_block():
    resnet = build_model("resnet")
    with pytest.raises(ValueError, match=r"stages.0.conv2.*'add' in block 'stages.0'"):
        prune.channel_prune(resnet, {"stages.0.conv2": 0.5})
    assert prune.prunable_layers(resnet) == ["stages.0.conv1", "stages.1.conv1", "stages.2.conv1"]
    lenet = build_model("lenet")
    with pytest.raises(ValueError, match=r"features.0.*removes all 6 channels"):
        prune.channel_prune(lenet, {"features.0": 1.0})
    with pytest.raises(ValueError, match="classifier.5.*model output"):
        prune.channel_prune(lenet, {"classifier.5": 0.5})
    with pytest.raises(ValueError, match="layer='nope'"):
        prune.channel_prune(lenet, {"nope": 0.5})
    with pytest.raises(ValueError, match="importance='l3'"):
        prune.channel_prune(lenet, 0.5, importance="l3")
    prune.magnitude_prune(lenet.features[0], amount=0.5)
    with pytest.raises(ValueError, match="remove_all"):
        prune.channel_prune(lenet, 0.5)

    class Dynamic(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return self.fc(x) if x.sum() > 0 else x

    with pytest.raises(ValueError, match="cannot follow"):
        prune.channel_prune(Dynamic(), 0.5)
