"""BatchNorm folding against torch.nn.utils.fusion and against the unfused model's outputs."""
import pytest
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from coursekit.quant.fold import fold_batchnorm, fold_batchnorms


def _random_bn(bn, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.running_mean.normal_(generator=gen)
        bn.running_var.uniform_(0.3, 3.0, generator=gen)
        bn.weight.normal_(generator=gen)
        bn.bias.normal_(generator=gen)
    return bn.eval()


@pytest.mark.parametrize("layer,bn", [
    (nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8)),
    (nn.Conv2d(4, 8, 3, groups=2, bias=False), nn.BatchNorm2d(8)),
    (nn.Conv1d(3, 5, 3), nn.BatchNorm1d(5)),
    (nn.ConvTranspose2d(4, 6, 3), nn.BatchNorm2d(6)),
    (nn.Linear(5, 7), nn.BatchNorm1d(7)),
])
def test_fold_matches_torch_fusion(layer, bn):
    torch.manual_seed(0)
    _random_bn(bn, 1)
    layer.eval()
    ours = fold_batchnorm(layer, bn)
    if isinstance(layer, nn.Linear):
        ref = fuse_linear_bn_eval(layer, bn)
    else:
        ref = fuse_conv_bn_eval(layer, bn, transpose=isinstance(layer, nn.ConvTranspose2d))
    assert torch.equal(ours.weight, ref.weight) and torch.equal(ours.bias, ref.bias)
    assert ours is not layer and layer.weight.data_ptr() != ours.weight.data_ptr()


def test_fold_grouped_transposed_matches_unfused_output():
    torch.manual_seed(0)
    layer, bn = nn.ConvTranspose2d(4, 6, 3, groups=2), _random_bn(nn.BatchNorm2d(6), 2)
    x = torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(fold_batchnorm(layer, bn)(x), bn(layer(x)), rtol=1e-5, atol=1e-5)


def test_fold_batchnorms_model():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Sequential(nn.Conv2d(4, 4, 3), _random_bn(nn.BatchNorm2d(4), 3)), nn.Flatten(),
                          nn.Linear(4 * 4 * 4, 3), nn.BatchNorm1d(3)).eval()
    _random_bn(model[1], 4)
    _random_bn(model[6], 5)
    x = torch.randn(5, 1, 8, 8)
    folded = fold_batchnorms(model)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    assert any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())  # input untouched
    torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)


def test_fold_errors():
    with pytest.raises(TypeError, match="layer"):
        fold_batchnorm(nn.ReLU(), nn.BatchNorm2d(3))
    with pytest.raises(TypeError, match="bn"):
        fold_batchnorm(nn.Conv2d(1, 3, 1), nn.LayerNorm(3))
    with pytest.raises(ValueError, match="features"):
        fold_batchnorm(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="running statistics"):
        fold_batchnorm(nn.Conv2d(1, 3, 1), nn.BatchNorm2d(3, track_running_stats=False))
