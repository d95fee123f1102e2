"""The model registry: ``build_model(name, dataset=..., **kwargs)`` and ``list_models()``."""
from __future__ import annotations

from torch import nn

from coursekit._validate import check_choice
from coursekit.data import DatasetInfo, dataset_info
from coursekit.models.cnn import LeNet, ResNet
from coursekit.models.mlp import MLP, LinearHeavy
from coursekit.models.seq1d import CNN1D, MLP1D

MODELS = {
    "mlp": MLP,
    "lenet": LeNet,
    "resnet": ResNet,
    "mlp1d": MLP1D,
    "cnn1d": CNN1D,
    "linear_heavy": LinearHeavy,
}
# The dataset each model is built for when none is given (linear_heavy keeps its own (1024,) input).
DEFAULT_DATASET = {"mlp": "digits", "lenet": "digits", "resnet": "digits", "mlp1d": "mnist1d",
                   "cnn1d": "mnist1d", "linear_heavy": None}


def list_models() -> list[str]:
    """Names accepted by ``build_model``."""
    return list(MODELS)


def build_model(name: str, dataset: str | DatasetInfo | None = None, **kwargs) -> nn.Module:
    """Build model ``name`` sized for ``dataset`` (a name or a ``DatasetInfo``).

    ``input_shape`` and ``num_classes`` come from the dataset unless given as keyword arguments; other keyword
    arguments go to the model class (e.g. ``build_model("lenet", "digits", batchnorm=False)``).
    Without a dataset, the model's default one is used (``DEFAULT_DATASET``).
    """
    check_choice("name", name, MODELS)
    if dataset is None:
        dataset = DEFAULT_DATASET[name]
    if dataset is not None:
        info = dataset if isinstance(dataset, DatasetInfo) else dataset_info(dataset)
        kwargs.setdefault("input_shape", info.input_shape)
        kwargs.setdefault("num_classes", info.num_classes)
    return MODELS[name](**kwargs)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all of them, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)
