"""XNOR/popcount binary dot products against float matmuls of the signs, numpy's popcount and a hand case."""
import numpy as np
import pytest
import torch

from coursekit.formats import BINARY, pack_bits
from coursekit.formats.bitops import pack_signs, popcount, xnor_dot


def test_popcount_matches_numpy_on_every_byte():
    every = torch.arange(256, dtype=torch.int64).to(torch.uint8)
    want = np.unpackbits(every.numpy()[:, None], axis=1).sum(axis=1)
    assert popcount(every).tolist() == want.tolist()


def test_hand_computed_case():
    a = torch.tensor([1.0, -1.0, 1.0, 1.0, -1.0])
    w = torch.tensor([1.0, 1.0, -1.0, 1.0, -1.0])  # agree, differ, differ, agree, agree: 3 - 2 = 1
    assert pack_signs(a).tolist() == [0b10110000]
    assert int(popcount(torch.bitwise_xor(pack_signs(a), pack_signs(w))).sum()) == 2
    assert int(xnor_dot(a, w)) == 5 - 2 * 2 == float(a @ w)


@pytest.mark.parametrize("n", [1, 7, 8, 9, 64, 100, 257])
def test_xnor_dot_equals_float_dot_of_signs(n):
    g = torch.Generator().manual_seed(n)
    a = torch.randn(3, 5, n, generator=g)
    w = torch.randn(4, n, generator=g)
    a[0, 0, 0] = 0.0  # zero counts as +1, like BINARY.encode
    signs_a, signs_w = BINARY.cast(a.reshape(-1, n)).reshape(a.shape), BINARY.cast(w)
    got = xnor_dot(a, w)
    assert got.dtype == torch.int64 and got.shape == (3, 5, 4)
    assert torch.equal(got, (signs_a.double() @ signs_w.double().T).to(torch.int64))
    assert torch.equal(xnor_dot(a[0, 0], w[1]), (signs_a[0, 0].double() @ signs_w[1].double()).to(torch.int64))


def test_pack_signs_uses_pack_bits_order():
    x = torch.tensor([[-1.0, 2.0, 0.0, -3.0, 1.0, 1.0, -1.0, 5.0, 1.0]])
    bits = (x >= 0).to(torch.uint8)[0]
    assert torch.equal(pack_signs(x)[0], pack_bits(bits, 1))


def test_bad_input():
    with pytest.raises(TypeError, match="a must be a torch.Tensor"):
        xnor_dot([1.0], torch.ones(1))
    with pytest.raises(ValueError, match="same last dimension"):
        xnor_dot(torch.ones(3), torch.ones(2, 4))
    with pytest.raises(ValueError, match="NaN"):
        xnor_dot(torch.tensor([float("nan")]), torch.ones(1))
    with pytest.raises(ValueError, match="w must be"):
        xnor_dot(torch.ones(3), torch.ones(2, 2, 3))
    with pytest.raises(TypeError, match="uint8"):
        popcount(torch.ones(3, dtype=torch.int32))
