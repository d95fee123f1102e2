"""coursekit.surgery: walking, reading and replacing layers, checked against torch's own module tree."""
import numpy as np
import pytest
import torch
from torch import nn

from coursekit.surgery import (
    BATCHNORM_TYPES,
    CONV_TYPES,
    LINEAR_TYPES,
    WEIGHT_LAYER_TYPES,
    batches,
    get_layer,
    named_layers,
    replace_layer,
)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Linear(4, 4)])
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        x = self.features(x).mean(dim=(2, 3))
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class MyLinear(nn.Linear):
    pass


def test_named_layers_follows_named_modules_and_filters_by_type():
    net = Net()
    expected = [(n, m) for n, m in net.named_modules() if n]
    assert named_layers(net) == expected
    assert [n for n, _ in named_layers(net, types=LINEAR_TYPES)] == ["blocks.0", "blocks.1", "head"]
    assert [n for n, _ in named_layers(net, types=nn.Conv2d)] == ["features.0"]
    assert [n for n, _ in named_layers(net, types=BATCHNORM_TYPES)] == ["features.1"]
    assert [n for n, _ in named_layers(net, types=WEIGHT_LAYER_TYPES, skip=("blocks",))] == ["features.0", "head"]
    assert [n for n, _ in named_layers(net, types=LINEAR_TYPES, skip="blocks.*")] == ["head"]
    net.head = MyLinear(4, 3)
    assert [n for n, _ in named_layers(net, types=LINEAR_TYPES, exact=True)] == ["blocks.0", "blocks.1"]
    assert "head" in dict(named_layers(net, types=LINEAR_TYPES))
    assert named_layers(net, types=CONV_TYPES)[0][1] is net.features[0]


def test_get_and_replace_layer_inside_sequential_modulelist_and_attributes():
    torch.manual_seed(0)
    net = Net().eval()
    x = torch.randn(2, 1, 6, 6)
    ref = net(x)
    assert get_layer(net, "features.1") is net.features[1]
    assert get_layer(net, "") is net
    old = replace_layer(net, "features.1", nn.Identity())
    assert isinstance(old, nn.BatchNorm2d) and isinstance(net.features[1], nn.Identity)
    replace_layer(net, "features.1", old)                       # putting it back restores the output
    assert torch.equal(net(x), ref)
    new = nn.Linear(4, 4)
    replace_layer(net, "blocks.1", new)
    assert net.blocks[1] is new and dict(net.named_modules())["blocks.1"] is new
    replace_layer(net, "head", nn.Linear(4, 5))
    assert net(x).shape == (2, 5)


def test_bad_names_and_types_are_named():
    net = Net()
    with pytest.raises(ValueError, match=r"name='features\.7'.*features has no child '7'.*'0', '1', '2'"):
        get_layer(net, "features.7")
    with pytest.raises(ValueError, match="name='nope'.*'features', 'blocks', 'head'"):
        replace_layer(net, "nope", nn.Identity())
    with pytest.raises(ValueError, match="name=''"):
        replace_layer(net, "", nn.Identity())
    with pytest.raises(TypeError, match="new must be a torch.nn.Module"):
        replace_layer(net, "head", lambda x: x)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        named_layers([nn.Linear(2, 2)])
    with pytest.raises(TypeError, match="types"):
        named_layers(net, types=(int,))


def test_batches_takes_inputs_from_every_batch_shape():
    x = torch.randn(4, 3)
    assert [b is x for b in batches(x)] == [True]                # one tensor is one batch
    got = list(batches([(x, torch.zeros(4)), [x[:2], None, "meta"], x[2:], np.ones((2, 3), np.float32)]))
    assert [tuple(b.shape) for b in got] == [(4, 3), (2, 3), (2, 3), (2, 3)]
    assert torch.equal(got[3], torch.ones(2, 3))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.arange(4)), batch_size=3)
    assert torch.equal(torch.cat(list(batches(loader))), x)
    with pytest.raises(TypeError, match="dict"):
        list(batches([{"x": x}]))
