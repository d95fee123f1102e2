"""coursekit.train: reproducible training loops and a cache of trained reference models.

    >>> from coursekit.data import get_loaders
    >>> from coursekit.models import build_model
    >>> from coursekit.train import seed_everything, fit, evaluate, pretrained
    >>> seed_everything(0)
    >>> train, val, test = get_loaders("digits")
    >>> model = build_model("lenet", "digits")
    >>> history = fit(model, train, val, epochs=5, progress=False)
    >>> evaluate(model, test)["accuracy"]            # doctest: +SKIP
    >>> model = pretrained("lenet", "digits")        # trained once, then loaded from the cache

Plug points for compression (see ``coursekit.train.loop``): ``fit(..., loss_fn=lambda out, y, x: ...)`` gives the
loss the input batch (a distillation teacher), ``fit(..., callbacks=[cb])`` calls ``cb.after_step(model, step)``
after every optimizer step (re-apply a pruning mask); ``finetune`` is SGD + per-epoch cosine on top of ``fit``.
``evaluate`` and ``top1_agreement`` are ``coursekit.metrics``'s (the same objects).
"""
from coursekit.metrics import count_correct, evaluate, per_class_accuracy, top1_agreement
from coursekit.train.checkpoints import (
    CODE_VERSION,
    RECIPES,
    checkpoint_path,
    pretrained,
    recipe,
)
from coursekit.train.device import available_devices, seed_everything, select_device
from coursekit.train.finetuning import cosine_lr, finetune
from coursekit.train.loop import Callback, fit, make_optimizer, wants_inputs

__all__ = [
    "CODE_VERSION", "RECIPES", "Callback", "available_devices", "checkpoint_path",
    "cosine_lr", "count_correct", "evaluate", "finetune", "fit", "make_optimizer", "per_class_accuracy",
    "pretrained", "recipe", "seed_everything", "select_device", "top1_agreement", "wants_inputs",
]
