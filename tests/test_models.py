"""coursekit.models: every registered model builds for its datasets, has the documented size, and runs."""
import pytest
import torch
from torch import nn

from coursekit.data import dataset_info
from coursekit.models import (
    LeNet,
    LinearHeavy,
    build_model,
    count_parameters,
    list_models,
)

# Parameter counts quoted in the docstrings, recomputed by hand there.
DOCUMENTED = {
    ("mlp", "digits", ()): 17_226,
    ("lenet", "digits", ()): 21_408,
    ("lenet", "digits", (("batchnorm", False),)): 21_386,
    ("lenet", "mnist", ()): 107_808,
    ("lenet", "cifar10", ()): 136_908,
    ("resnet", "digits", ()): 77_754,
    ("resnet", "cifar10", ()): 78_042,
    ("resnet", "cifar10", (("blocks", (3, 3, 3)),)): 272_474,
    ("mlp1d", "mnist1d", ()): 15_210,
    ("cnn1d", "mnist1d", ()): 5_210,
    ("cnn1d", "mnist1d", (("batchnorm", True),)): 5_360,
    ("linear_heavy", None, ()): 4_208_650,
}


def test_registry_lists_every_model_and_rejects_unknown():
    assert list_models() == ["mlp", "lenet", "resnet", "mlp1d", "cnn1d", "linear_heavy"]
    with pytest.raises(ValueError, match="'mlp'.*'linear_heavy'"):
        build_model("vgg16")
    with pytest.raises(ValueError, match="'digits'"):
        build_model("mlp", "svhn")


@pytest.mark.parametrize(("name", "dataset", "kwargs"), list(DOCUMENTED))
def test_documented_parameter_counts(name, dataset, kwargs):
    model = build_model(name, dataset, **dict(kwargs))
    assert count_parameters(model) == DOCUMENTED[(name, dataset, kwargs)]
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("name", "dataset"), [
    ("mlp", "digits"), ("lenet", "digits"), ("resnet", "digits"),
    ("mlp", "mnist"), ("lenet", "fashion_mnist"), ("resnet", "cifar10"), ("lenet", "cifar10"),
    ("mlp1d", "mnist1d"), ("cnn1d", "mnist1d"), ("linear_heavy", "digits"),
])
def test_output_shapes(name, dataset):
    info = dataset_info(dataset)
    model = build_model(name, dataset).eval()
    with torch.no_grad():
        out = model(torch.randn(3, *info.input_shape))
    assert out.shape == (3, info.num_classes)


def test_overrides_and_options():
    assert build_model("mlp", "digits", num_classes=3)(torch.randn(2, 1, 8, 8)).shape == (2, 3)
    with_bn = build_model("lenet", batchnorm=True)
    without = build_model("lenet", batchnorm=False)
    assert any(isinstance(m, nn.BatchNorm2d) for m in with_bn.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in without.modules())
    assert with_bn.features[0].bias is None                     # BN replaces the conv bias
    with pytest.raises(ValueError, match="divisible by 4"):
        LeNet(input_shape=(1, 10, 10))


def test_linear_heavy_is_four_square_gemms():
    body = LinearHeavy(num_classes=None)
    linears = [m for m in body.modules() if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(1024, 1024)] * 4
    assert body(torch.randn(2, 1024)).shape == (2, 1024)
    assert sum(isinstance(m, nn.ReLU) for m in body.modules()) == 4


def test_resnet_residual_blocks_and_batchnorm():
    model = build_model("resnet", "cifar10")
    blocks = [m for m in model.modules() if type(m).__name__ == "BasicBlock"]
    assert len(blocks) == 3
    assert isinstance(blocks[0].shortcut, nn.Identity) and not isinstance(blocks[1].shortcut, nn.Identity)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 9
