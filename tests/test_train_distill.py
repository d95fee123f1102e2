"""coursekit.train.distill / transfer: frozen teacher, cached teacher logits, one step against a manual step,
the hint path, the checkpoint cache, and the transfer-set data."""
import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from coursekit.distill import UNLABELED, HintLoss
from coursekit.train.distill import TeacherCache, cached_student, distill, freeze_teacher


class Counting(nn.Module):
    """A teacher that counts the rows it ran on (and has dropout, so train mode would change its output)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.body = nn.Sequential(nn.Linear(4, 16), nn.ReLU())
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(16, 3)
        self.rows = 0

    def forward(self, x):
        self.rows += len(x)
        return self.head(self.drop(self.body(x)))


def _data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    y[::3] = UNLABELED
    return TensorDataset(x, y)


def _student():
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))


def test_teacher_in_train_mode_is_switched_with_a_warning():
    teacher = Counting().train()
    with pytest.warns(UserWarning, match="train mode"):
        assert freeze_teacher(teacher) is True
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert freeze_teacher(teacher) is False
    with pytest.raises(TypeError, match="teacher"):
        freeze_teacher("not a model")


def test_one_epoch_matches_a_manual_loop_and_teacher_is_untouched():
    data = _data()
    teacher = Counting().eval()
    before = copy.deepcopy(teacher.state_dict())
    student, manual = _student(), _student()
    loader = DataLoader(data, batch_size=8, shuffle=False)
    hist = distill(student, teacher, loader, T=3.0, alpha=0.7, epochs=1, lr=0.1, optimizer="sgd",
                   cache_teacher=False, progress=False, device="cpu")
    opt = torch.optim.SGD(manual.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    for x, y in loader:
        with torch.no_grad():
            t = teacher(x)
        s = manual(x)
        keep = y != UNLABELED
        loss = 0.7 * 9 * F.kl_div(F.log_softmax(s / 3, 1), F.softmax(t / 3, 1), reduction="batchmean") \
            + 0.3 * F.cross_entropy(s[keep], y[keep])
        opt.zero_grad()
        loss.backward()
        opt.step()
    for a, b in zip(student.parameters(), manual.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    for k, v in teacher.state_dict().items():
        assert torch.equal(v, before[k])
    assert hist["teacher_was_training"] is False


def test_cached_teacher_runs_once_and_gives_the_same_student():
    data = _data(64)
    loader = DataLoader(data, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    t1, t2 = Counting().eval(), Counting().eval()
    s1, s2 = _student(), _student()
    h1 = distill(s1, t1, loader, T=2.0, alpha=0.5, epochs=3, cache_teacher=True, progress=False, device="cpu")
    loader = DataLoader(data, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    h2 = distill(s2, t2, loader, T=2.0, alpha=0.5, epochs=3, cache_teacher=False, progress=False, device="cpu")
    assert t1.rows == 64 and h1["cache_hits"] == 3 * 64          # teacher ran once over the transfer set
    assert t2.rows == 3 * 64 and h2["teacher_forward_rows"] == 3 * 64
    for a, b in zip(s1.parameters(), s2.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_teacher_cache_lookup_and_miss():
    teacher = Counting().eval()
    x = torch.randn(10, 4)
    cache = TeacherCache(teacher, x)
    with torch.no_grad():
        want = teacher(x)
    got = cache(x[[3, 1, 7]])
    assert torch.allclose(got, want[[3, 1, 7]]) and cache.hits == 3 and cache.misses == 0
    new = torch.randn(2, 4)
    with torch.no_grad():
        assert torch.allclose(cache(new), teacher(new))
    assert cache.misses == 2


def test_hint_path_trains_the_regressor():
    data = _data(32)
    teacher, student = Counting().eval(), _student()
    hint = HintLoss(8, 16)
    w0 = hint.regressor.weight.detach().clone()
    hist = distill(student, teacher, DataLoader(data, batch_size=8), T=2.0, alpha=0.5, epochs=2,
                   hint=("1", "body", hint), hint_weight=0.5, progress=False, device="cpu")
    assert not torch.equal(w0, hint.regressor.weight)
    assert len(student[1]._forward_hooks) == 0 and len(teacher.body._forward_hooks) == 0   # taps removed
    assert hist["teacher_forward_rows"] == 2 * 32


def test_bad_arguments_name_themselves():
    loader = DataLoader(_data(8), batch_size=4)
    with pytest.raises(ValueError, match="T="):
        distill(_student(), Counting().eval(), loader, T=0, progress=False)
    with pytest.raises(ValueError, match="alpha"):
        distill(_student(), Counting().eval(), loader, alpha=2.0, progress=False)
    with pytest.raises(TypeError, match="hint"):
        distill(_student(), Counting().eval(), loader, hint=("1", "body"), progress=False)


def test_cached_student_trains_once(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSEKIT_CACHE", str(tmp_path))
    calls = []

    def train(model):
        calls.append(1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        return {"note": [1]}

    a = cached_student("mlp1d", "mnist1d", {"kind": "test"}, train, seed=0, fast=True, hidden=8)
    b = cached_student("mlp1d", "mnist1d", {"kind": "test"}, train, seed=0, fast=True, hidden=8)
    assert len(calls) == 1 and not a.checkpoint_info["cached"] and b.checkpoint_info["cached"]
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    cached_student("mlp1d", "mnist1d", {"kind": "other"}, train, seed=0, fast=True, hidden=8)
    assert len(calls) == 2                                           # a different recipe is a different file


def test_transfer_set_sizes_and_omitted_class():
    from coursekit.train.transfer import transfer_set

    d = transfer_set(200, 1000, seed=0)
    assert len(d["labeled"]) == 200 and len(d["unlabeled"]) == 1000 and len(d["combined"]) == 1200
    assert (d["unlabeled"].y == UNLABELED).all() and (d["labeled"].y >= 0).all()
    assert torch.bincount(d["labeled"].y).tolist() == [20] * 10
    test_rows = {r.numpy().tobytes() for r in d["test"].x}
    assert not any(r.numpy().tobytes() in test_rows for r in d["unlabeled"].x)   # new draws, not the test set
    o = transfer_set(200, 1000, seed=0, omit_class=3)
    assert 3 not in o["labeled"].y.tolist() and 3 not in o["unlabeled"].true_y.tolist()
    with pytest.raises(ValueError, match="omit_class"):
        transfer_set(200, 100, omit_class=10)


def test_distill_records_a_teacher_switched_from_train_mode():
    teacher = Counting().train()
    with pytest.warns(UserWarning, match="eval mode"):
        hist = distill(_student(), teacher, DataLoader(_data(8), batch_size=4), epochs=1, progress=False,
                       device="cpu")
    assert hist["teacher_was_training"] is True and not teacher.training
