"""coursekit.models: a small, readable model zoo.

    >>> from coursekit.models import build_model, list_models
    >>> model = build_model("lenet", "digits")          # input (1, 8, 8), 10 classes

``mlp`` / ``lenet`` / ``resnet`` for images (digits, MNIST, CIFAR-10), ``mlp1d`` / ``cnn1d`` for MNIST-1D, and
``linear_heavy`` (4 x Linear(1024, 1024)), the GEMM-bound model of the INT8 speed benchmarks.
"""
from coursekit.models.cnn import BasicBlock, LeNet, ResNet
from coursekit.models.mlp import MLP, LinearHeavy
from coursekit.models.registry import DEFAULT_DATASET, MODELS, build_model, count_parameters, list_models
from coursekit.models.seq1d import CNN1D, MLP1D

__all__ = [
    "CNN1D", "DEFAULT_DATASET", "MLP", "MLP1D", "MODELS", "BasicBlock", "LeNet", "LinearHeavy", "ResNet",
    "build_model", "count_parameters", "list_models",
]
