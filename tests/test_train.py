"""coursekit.train: deterministic training that learns, evaluation checked by hand, device selection,
silent progress bars, and the checkpoint cache (hit, miss, corrupted file)."""
import io
import sys

import pytest
import torch
from torch import nn

from coursekit.data import get_loaders
from coursekit.models import build_model
from coursekit.train import checkpoints, evaluate, fit, pretrained, seed_everything, select_device


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSEKIT_CACHE", str(tmp_path))
    return tmp_path


def _train_mlp(epochs=3, seed=0, progress=False):
    seed_everything(seed)
    train, val, test = get_loaders("digits", batch_size=32, seed=seed, fast=True)
    model = build_model("mlp", "digits")
    history = fit(model, train, val, epochs=epochs, lr=3e-3, device="cpu", progress=progress)
    return model, history, test


def test_fit_learns_well_above_chance():
    model, history, test = _train_mlp(epochs=8)
    assert len(history["train_loss"]) == 8 and len(history["val_accuracy"]) == 8
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert evaluate(model, test)["accuracy"] > 0.85                  # chance: 0.10


def test_training_is_deterministic_given_the_seed():
    a, _, _ = _train_mlp(seed=0)
    b, _, _ = _train_mlp(seed=0)
    c, _, _ = _train_mlp(seed=1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.net[1].weight, c.net[1].weight)


def test_evaluate_matches_a_hand_computation():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    _, _, test = get_loaders("digits", fast=True, eval_batch_size=50)
    x, y = test.dataset.x, test.dataset.y
    with torch.no_grad():
        logits = model(x)
    got = evaluate(model, test)
    assert got["n"] == len(y)
    assert got["accuracy"] == pytest.approx((logits.argmax(1) == y).float().mean().item())
    assert got["loss"] == pytest.approx(nn.functional.cross_entropy(logits, y).item(), rel=1e-5)


def test_evaluate_restores_training_mode():
    model = build_model("lenet")
    model.train()
    _, val, _ = get_loaders("digits", fast=True)
    evaluate(model, val)
    assert model.training


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_false_is_silent_and_progress_true_shows_only_on_a_terminal(capfd, monkeypatch):
    _train_mlp(epochs=1, progress=False)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    _train_mlp(epochs=1, progress=True)          # stdout is a pipe here: tqdm's disable=None keeps it quiet
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    _train_mlp(epochs=1, progress=True)
    monkeypatch.undo()
    assert "1/1" in terminal.getvalue() and capfd.readouterr().err == ""


def test_bad_arguments():
    model = build_model("mlp")
    train, _, _ = get_loaders("digits", fast=True)
    with pytest.raises(ValueError, match="optimizer"):
        fit(model, train, optimizer="lbfgs", progress=False)
    with pytest.raises(ValueError, match="epochs"):
        fit(model, train, epochs=0, progress=False)
    with pytest.raises(ValueError, match="lr"):
        fit(model, train, lr=-1.0, progress=False)


def test_select_device(monkeypatch):
    assert select_device("cpu") == torch.device("cpu")
    assert select_device(torch.device("cpu")).type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert select_device("auto").type in {"cpu", "mps"}
    with pytest.raises(ValueError, match=r"device='cuda'.*is_available\(\) is False.*available here: 'cpu'"):
        select_device("cuda")
    with pytest.raises(ValueError, match="'auto', 'cpu', 'cuda', 'mps'"):
        select_device("tpu")


@pytest.mark.slow
def test_pretrained_caches_and_reloads_identical_weights(cache, monkeypatch):
    first = pretrained("mlp", "digits", epochs=2, progress=False)
    info = first.checkpoint_info
    assert not info["cached"] and info["test_accuracy"] > 0.2 and info["hparams"]["epochs"] == 2
    assert not first.training

    def no_training(*args, **kwargs):
        raise AssertionError("a cache hit must not train")
    monkeypatch.setattr(checkpoints, "fit", no_training)
    second = pretrained("mlp", "digits", epochs=2, progress=False)
    assert second.checkpoint_info["cached"] and second.checkpoint_info["path"] == info["path"]
    for a, b in zip(first.state_dict().values(), second.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(AssertionError, match="must not train"):   # another configuration is another file
        pretrained("mlp", "digits", epochs=3, progress=False)


@pytest.mark.slow
def test_corrupted_cache_is_set_aside_and_retrained(cache, capfd):
    good = pretrained("mlp", "digits", epochs=1, progress=False)
    path = checkpoints.Path(good.checkpoint_info["path"])
    path.write_bytes(b"not a checkpoint")
    again = pretrained("mlp", "digits", epochs=1, progress=False)
    assert not again.checkpoint_info["cached"]
    assert "corrupt" in again.checkpoint_info["recovered_from"]
    assert path.with_name(path.name + ".corrupt").read_bytes() == b"not a checkpoint"
    for a, b in zip(good.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)                                  # retrained deterministically
    assert pretrained("mlp", "digits", epochs=1, progress=False).checkpoint_info["cached"]
    assert capfd.readouterr().err == ""


def test_pretrained_without_cache_writes_nothing(cache):
    model = pretrained("cnn1d", epochs=1, progress=False, cache=False)
    assert model.checkpoint_info["dataset"] == "mnist1d"
    assert not (cache / "checkpoints").exists() or not any((cache / "checkpoints").iterdir())


def _labelled_loader(logits: torch.Tensor, targets: torch.Tensor, batch_size: int = 7):
    """A 'model' that returns stored logits row by row: evaluate must reproduce sklearn on exactly these."""
    ids = torch.arange(len(targets)).float().unsqueeze(1)
    batches = [(ids[i:i + batch_size], targets[i:i + batch_size]) for i in range(0, len(targets), batch_size)]
    return (lambda x: logits[x[:, 0].long()]), batches


def test_evaluate_matches_sklearn_accuracy_and_per_class_recall():
    from sklearn.metrics import accuracy_score, recall_score

    gen = torch.Generator().manual_seed(3)
    targets = torch.randint(0, 5, (203,), generator=gen)
    targets[targets == 4] = 3                                   # class 4 has no example: NaN, not 0
    logits = torch.randn(203, 5, generator=gen) + 1.5 * nn.functional.one_hot(targets, 5)
    model, loader = _labelled_loader(logits, targets)
    got = evaluate(model, loader, return_predictions=True)
    pred = logits.argmax(1).numpy()
    assert got["n"] == 203
    assert got["accuracy"] == pytest.approx(accuracy_score(targets.numpy(), pred), abs=1e-12)
    recall = recall_score(targets.numpy(), pred, labels=range(4), average=None, zero_division=0)
    assert got["per_class"][:4] == pytest.approx(list(recall), abs=1e-12)
    assert len(got["per_class"]) == 5 and got["per_class"][4] != got["per_class"][4]     # NaN
    assert torch.equal(got["predictions"], logits.argmax(1))
    assert got["loss"] == pytest.approx(nn.functional.cross_entropy(logits, targets).item(), rel=1e-6)
    assert len(evaluate(model, loader, num_classes=7)["per_class"]) == 7
    assert "predictions" not in evaluate(model, loader)


def test_evaluate_weights_a_mean_loss_by_batch_size_and_checks_its_input():
    targets = torch.tensor([0, 1, 1, 2, 0, 2, 2, 1, 0, 0])
    logits = torch.randn(10, 3, generator=torch.Generator().manual_seed(0))
    model, loader = _labelled_loader(logits, targets, batch_size=4)       # batches of 4, 4, 2
    mean_loss = evaluate(model, loader, loss_fn=nn.CrossEntropyLoss())["loss"]
    assert mean_loss == pytest.approx(nn.functional.cross_entropy(logits, targets).item(), rel=1e-6)
    with pytest.raises(ValueError, match="no examples"):
        evaluate(model, [])
    with pytest.raises(ValueError, match="targets"):
        evaluate(model, loader, num_classes=2)
    with pytest.raises(ValueError, match="inputs, targets"):
        evaluate(model, [torch.zeros(3, 1)])


def test_top1_agreement_on_a_hand_computed_case():
    from coursekit.train import top1_agreement

    x = torch.tensor([[0.0, 1.0], [2.0, 1.5], [3.0, -1.0], [-1.0, -2.0], [0.5, 0.4]])
    a = nn.Identity()                                   # argmax: 1, 0, 0, 0, 0
    b = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        b.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))   # logits (x0, 2 x1): argmax 1, 1, 0, 0, 1
    assert top1_agreement(a, b, [x[:2], x[2:]]) == pytest.approx(3 / 5)
    assert top1_agreement(a, b, [(x, torch.zeros(5))]) == pytest.approx(3 / 5)   # targets are ignored
    assert top1_agreement(b, b, [x]) == 1.0
    b.train()
    top1_agreement(a, b, [x])
    assert b.training                                   # mode restored


def _toy_problem(seed=0, n_batches=6):
    gen = torch.Generator().manual_seed(seed)
    data = [(torch.randn(8, 5, generator=gen), torch.randint(0, 3, (8,), generator=gen)) for _ in range(n_batches)]
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)), data


def test_a_loss_that_sees_the_inputs_trains_exactly_like_a_hand_written_distillation_loop():
    from coursekit.train import wants_inputs

    torch.manual_seed(1)
    teacher = nn.Linear(5, 3).eval()

    def distill(outputs, targets, inputs):             # a fake teacher: CE + MSE to the teacher's logits
        with torch.no_grad():
            soft = teacher(inputs)
        return nn.functional.cross_entropy(outputs, targets) + 0.5 * nn.functional.mse_loss(outputs, soft)

    assert wants_inputs(distill) and not wants_inputs(nn.CrossEntropyLoss())
    assert not wants_inputs(nn.functional.cross_entropy) and wants_inputs(lambda out, y, x, t=2.0: out)
    student, data = _toy_problem()
    ref, _ = _toy_problem()
    history = fit(student, data, epochs=2, optimizer="sgd", lr=0.05, loss_fn=distill, device="cpu", progress=False)

    opt = torch.optim.SGD(ref.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    losses = []
    for _ in range(2):
        total = 0.0
        for x, y in data:
            loss = distill(ref(x), y, x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(y)
        losses.append(total / 48)
    for a, b in zip(student.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)
    assert history["train_loss"] == losses


def test_a_mask_reapplied_after_each_step_keeps_pruned_weights_at_zero():
    from coursekit.train import Callback

    model, data = _toy_problem()
    mask = (torch.arange(35).reshape(7, 5) % 3 != 0).float()          # prune a third of the first layer
    with torch.no_grad():
        model[0].weight.mul_(mask)

    class KeepMask(Callback):
        def __init__(self):
            self.steps = []

        def after_step(self, model, step):
            assert not torch.is_grad_enabled()
            model[0].weight.mul_(mask)
            self.steps.append(step)

    before = model[0].weight.detach().clone()
    keep = KeepMask()
    fit(model, data, epochs=2, optimizer="adam", lr=0.05, device="cpu", progress=False, callbacks=keep)
    w = model[0].weight.detach()
    assert keep.steps == list(range(1, 13))
    assert torch.equal(w[mask == 0], torch.zeros(int((mask == 0).sum())))
    assert not torch.equal(w[mask == 1], before[mask == 1])          # the kept weights did train
    unmasked, _ = _toy_problem()                                      # without the callback Adam revives them
    with torch.no_grad():
        unmasked[0].weight.mul_(mask)
    fit(unmasked, data, epochs=2, optimizer="adam", lr=0.05, device="cpu", progress=False)
    assert (unmasked[0].weight.detach()[mask == 0] != 0).all()


def test_callback_hooks_run_in_order_and_bad_callbacks_are_named():
    model, data = _toy_problem(n_batches=2)
    calls = []

    class Spy:
        def before_epoch(self, model, epoch, optimizer):
            calls.append(("before", epoch, optimizer.param_groups[0]["lr"]))

        def after_step(self, model, step):
            calls.append(("step", step))

        def after_epoch(self, model, epoch, history):
            calls.append(("after", epoch, len(history["train_loss"])))

    fit(model, data, epochs=2, lr=0.01, device="cpu", progress=False, callbacks=[Spy()])
    assert calls == [("before", 1, 0.01), ("step", 1), ("step", 2), ("after", 1, 1),
                     ("before", 2, 0.01), ("step", 3), ("step", 4), ("after", 2, 2)]
    with pytest.raises(TypeError, match="callbacks must be objects with any of before_epoch"):
        fit(model, data, epochs=1, device="cpu", progress=False, callbacks=[print])
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        fit(model, data, epochs=1, device="cpu", progress=False, loss_fn="ce")


def test_finetune_is_sgd_with_a_cosine_rate_per_epoch_bit_exact_with_a_hand_written_loop():
    import math

    from coursekit.train import finetune

    model, data = _toy_problem()
    ref, _ = _toy_problem()
    history = finetune(model, data, 3, lr=0.1, momentum=0.9, val_loader=data[:2])
    opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    for epoch in range(1, 4):
        for group in opt.param_groups:
            group["lr"] = 0.1 * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / 3))
        for x, y in data:
            loss = nn.functional.cross_entropy(ref(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    for a, b in zip(model.state_dict().values(), ref.state_dict().values()):
        assert torch.equal(a, b)
    assert history["epoch"] == [0, 1, 2, 3] and history["lr"][1:] == pytest.approx([0.1, 0.075, 0.025], abs=1e-15)
    assert len(history["val_accuracy"]) == 4 and history["step_sizes"] == [{}] * 4    # no QAT layers here
    assert history["val_accuracy"][-1] == evaluate(model, data[:2])["accuracy"]
