"""coursekit: the library behind the hands-on course in quantization and model compression.

Layers, lowest first (a module never imports a layer above its own; tests/test_layers.py checks it):

    surgery -> metrics -> formats -> quant -> prune -> distill -> lowrank -> share -> export -> bench
            -> data -> models -> train -> llm -> serve -> pipeline -> suites -> quiz -> grading -> cli

``surgery`` (walk and replace layers, iterate batches) and ``metrics`` (evaluate, top-1 agreement) are single
modules at the bottom that import only torch.

Import the layer you need, e.g. ``from coursekit import formats`` or ``import coursekit.bench as bench``.
"""

__version__ = "0.1.0"

LAYERS = (
    "surgery", "metrics", "formats", "quant", "prune", "distill", "lowrank", "share", "export", "bench",
    "data", "models", "train", "llm", "serve", "pipeline", "suites", "quiz", "grading", "cli",
)
