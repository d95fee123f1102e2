"""coursekit: the library behind the hands-on course in quantization and model compression.

Layers, lowest first (a module never imports a layer above its own; tests/test_layers.py checks it):

    formats -> quant -> prune -> distill -> lowrank -> export -> bench
            -> data -> models -> train -> suites -> quiz -> grading -> cli

Import the layer you need, e.g. ``from coursekit import formats`` or ``import coursekit.bench as bench``.
"""

__version__ = "0.1.0"

LAYERS = (
    "formats", "quant", "prune", "distill", "lowrank", "export", "bench",
    "data", "models", "train", "suites", "quiz", "grading", "cli",
)
