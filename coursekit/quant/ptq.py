"""Post-training quantization of a whole model: ``QuantConfig`` and ``quantize_model``.

The recipe of Nagel et al. 2021 (sec. 4, "standard PTQ pipeline") and Krishnamoorthi 2018 (sec. 3):

1. copy the model, put it in eval mode and fold BatchNorm into the preceding layers (``fold.py``);
2. replace every quantizable layer (Linear, Conv1d/2d/3d) by a fake-quant module (``modules.py``);
   weights are quantized once (per tensor, per output channel or per group);
3. ``"static"``: run the calibration data through the model so each input-activation observer sees the
   activation distribution, then freeze the activation scales; ``"dynamic"``: activation parameters are
   computed from each batch at run time; ``"weight_only"``: activations stay in float.

``quantize_model`` never modifies its input; it returns a fake-quantized copy carrying a ``quant_summary``.
"""
from __future__ import annotations

import copy
import fnmatch
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from coursekit._progress import progress_bar
from coursekit._validate import check_choice, check_int
from coursekit.quant.fold import fold_batchnorms
from coursekit.quant.modules import (
    QUANTIZABLE,
    FakeQuantizer,
    _QuantLayer,
    activation_quantizer,
    weight_quantizer_for,
)
from coursekit.quant.observers import OBSERVERS
from coursekit.quant.primitives import ROUNDINGS, check_bits
from coursekit.surgery import batches, named_layers, replace_layer

MODES = ("static", "dynamic", "weight_only")
GRANULARITIES = ("per_tensor", "per_channel", "per_group")


@dataclass
class QuantConfig:
    """What to quantize and how.

    * ``mode``: ``"static"`` (weights and calibrated activations), ``"dynamic"`` (weights; activation
      parameters from each batch), ``"weight_only"``.
    * ``weight_bits``/``act_bits`` in 2..16; ``granularity`` of the weights: ``"per_tensor"``,
      ``"per_channel"`` (one scale per output channel) or ``"per_group"`` (``group_size`` consecutive input
      weights share a scale; Linear only).
    * ``symmetric``: symmetric weights (zero point 0); ``act_symmetric``/``act_signed``: activation scheme
      (default: affine uint8, torch's x86 default).
    * ``observer``: activation observer (``"minmax"``, ``"moving_average"``, ``"percentile"``, ``"mse"``,
      ``"entropy"``); ``weight_observer``: ``"minmax"`` or ``"mse"`` (or any per-channel observer).
    * ``rounding``: ``"torch"`` (multiply by the reciprocal, torch qparams) or ``"onnx"`` (divide, ORT qparams).
    * ``skip``: module names (glob patterns such as ``"classifier.*"``) kept in float.
    * ``quantize_outputs``: also fake-quantize layer outputs (needed for the integer-only path).
    * ``fold_bn``: fold BatchNorm layers that follow a conv/linear inside an ``nn.Sequential``.
    """

    mode: str = "static"
    weight_bits: int = 8
    act_bits: int = 8
    granularity: str = "per_channel"
    group_size: int | None = None
    symmetric: bool = True
    act_symmetric: bool = False
    act_signed: bool = False
    observer: str = "minmax"
    weight_observer: str = "minmax"
    rounding: str = "torch"
    skip: tuple = ()
    quantize_outputs: bool = False
    fold_bn: bool = True
    observer_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        check_choice("mode", self.mode, MODES)
        check_bits(self.weight_bits, "weight_bits")
        check_bits(self.act_bits, "act_bits")
        check_choice("granularity", self.granularity, GRANULARITIES)
        check_choice("observer", self.observer, OBSERVERS)
        check_choice("weight_observer", self.weight_observer, ("minmax", "mse", "moving_average"))
        check_choice("rounding", self.rounding, ROUNDINGS)
        if self.granularity == "per_group":
            if self.group_size is None:
                raise ValueError("granularity='per_group' needs group_size (e.g. 32, 64 or 128)")
            check_int("group_size", self.group_size, min_value=1)
        elif self.group_size is not None:
            raise ValueError(f"group_size={self.group_size} is only used with granularity='per_group', "
                             f"got granularity={self.granularity!r}")
        if isinstance(self.skip, str):
            self.skip = (self.skip,)
        self.skip = tuple(self.skip)


@dataclass
class LayerSummary:
    """One quantized layer: name, type, bit widths, granularity and the chosen scales."""

    name: str
    layer_type: str
    weight_bits: int
    act_bits: int | None
    granularity: str
    weight_scale_min: float
    weight_scale_max: float
    act_scale: float | None = None
    act_zero_point: int | None = None


@dataclass
class QuantSummary:
    """What ``quantize_model`` did (also stored as ``model.quant_summary``)."""

    config: QuantConfig
    layers: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    calibration_batches: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        head = (f"{self.config.mode} quantization: {len(self.layers)} layer(s) quantized, "
                f"{len(self.skipped)} kept in float, {self.calibration_batches} calibration batch(es)")
        rows = [(f"{'layer':<28}{'type':<10}{'w bits':>7}{'a bits':>7}  {'granularity':<24}{'w scale':>22}"
                f"{'a scale':>11}{'a zp':>6}")]
        for r in self.layers:
            act = f"{r.act_scale:11.3g}{r.act_zero_point:6d}" if r.act_scale is not None else f"{'-':>11}{'-':>6}"
            rows.append(f"{r.name:<28}{r.layer_type:<10}{r.weight_bits:>7}{r.act_bits or '-':>7}  "
                        f"{r.granularity:<24}{r.weight_scale_min:10.3g}..{r.weight_scale_max:<10.3g}{act}")
        return "\n".join([head, *rows])


def quantizable_layers(model: nn.Module, skip: tuple = ()) -> tuple[list[str], list[str]]:
    """Names of the Linear/Conv layers to quantize, and of those ``skip`` (names or glob patterns) excludes.

    A layer nested inside one already listed (e.g. the conv inside a QAT conv+BN wrapper) is not listed again.
    """
    chosen, skipped = [], []
    for name, _ in named_layers(model, types=tuple(QUANTIZABLE), exact=True):
        if not any(name.startswith(n + ".") for n in chosen + skipped):
            if any(fnmatch.fnmatch(name, pat) or name.startswith(pat + ".") for pat in skip):
                skipped.append(name)
            else:
                chosen.append(name)
    return chosen, skipped


def _wrap(layer: nn.Module, config: QuantConfig) -> _QuantLayer:
    wq = weight_quantizer_for(layer, config.weight_bits, config.granularity, config.group_size, config.symmetric,
                              config.weight_observer, config.rounding)
    act = None
    out = None
    if config.mode != "weight_only":
        kwargs = {"bits": config.act_bits, "symmetric": config.act_symmetric, "signed": config.act_signed,
                      "observer": config.observer, "rounding": config.rounding, "dynamic": config.mode == "dynamic",
                      "observer_kwargs": config.observer_kwargs}
        act = activation_quantizer(**kwargs)
        out = activation_quantizer(**kwargs) if config.quantize_outputs else None
    return QUANTIZABLE[type(layer)](layer, wq, act, out)


def checked_config(model, config, config_class):
    """``config`` (or a default ``config_class()``) after checking both arguments' types."""
    config = config_class() if config is None else config
    if not isinstance(config, config_class):
        raise TypeError(f"config must be a {config_class.__name__}, got {type(config).__name__}")
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return config


def quantize_model(model: nn.Module, config: QuantConfig | None = None, calibration_data=None,
                   progress: bool = False) -> nn.Module:
    """Fake-quantized copy of ``model`` (the input is left untouched), with ``.quant_summary`` attached.

    ``calibration_data``: an iterable of input tensors or ``(input, target)`` batches (a DataLoader works);
    required for ``mode="static"``, ignored otherwise. Raises ValueError for an empty calibration set, NaN/inf
    in the calibration data, or a model without quantizable (Linear/Conv) layers.
    """
    config = checked_config(model, config, QuantConfig)
    if config.mode == "static" and calibration_data is None:
        raise ValueError("mode='static' needs calibration_data (an iterable of input batches)")

    qmodel = fold_batchnorms(model) if config.fold_bn else copy.deepcopy(model)
    qmodel.eval()
    names, skipped = quantizable_layers(qmodel, config.skip)
    if not names:
        kinds = ", ".join(t.__name__ for t in QUANTIZABLE)
        raise ValueError(f"the model has no quantizable layers ({kinds})"
                         + (f"; skipped by config.skip: {skipped}" if skipped else ""))
    for name in names:
        replace_layer(qmodel, name, _wrap(qmodel.get_submodule(name), config))

    n_batches = 0
    if config.mode == "static":
        n_batches = _calibrate(qmodel, calibration_data, progress)
    summary = QuantSummary(config, [_layer_summary(n, qmodel.get_submodule(n), config) for n in names],
                           skipped, n_batches)
    qmodel.quant_summary = summary
    return qmodel


def calibrating_quantizers(model: nn.Module) -> list[FakeQuantizer]:
    return [m for m in model.modules() if isinstance(m, FakeQuantizer) and m.calibrating]


def _calibrate(qmodel: nn.Module, calibration_data, progress: bool) -> int:
    n = 0
    iterator = batches(calibration_data)
    if progress:  # shown on a terminal or in Jupyter only, on stdout, never stderr
        total = len(calibration_data) if hasattr(calibration_data, "__len__") else None
        iterator = progress_bar(iterator, desc="calibrating", total=total, leave=True)
    with torch.no_grad():
        for x in iterator:
            if x.numel() == 0:
                continue
            if x.is_floating_point() and not torch.isfinite(x).all():
                raise ValueError(f"calibration batch {n} contains NaN/inf values")
            qmodel(x)
            n += 1
    if n == 0:
        raise ValueError("calibration_data is empty: give at least one non-empty batch of inputs")
    for q in calibrating_quantizers(qmodel):
        if q.observer.num_batches == 0:
            raise ValueError("a quantized layer was never reached by the calibration data; skip it via "
                             "config.skip or check the model's forward")
        q.freeze()
    return n


def _layer_summary(name: str, module: _QuantLayer, config: QuantConfig) -> LayerSummary:
    wq, aq = module.weight_quantizer, module.input_quantizer
    static_act = aq is not None and not aq.dynamic
    return LayerSummary(
        name=name, layer_type=type(module.layer).__name__, weight_bits=config.weight_bits,
        act_bits=config.act_bits if aq is not None else None, granularity=wq.granularity(),
        weight_scale_min=float(wq.scale.min()), weight_scale_max=float(wq.scale.max()),
        act_scale=float(aq.scale.reshape(-1)[0]) if static_act else None,
        act_zero_point=int(aq.zero_point.reshape(-1)[0]) if static_act else None,
    )
