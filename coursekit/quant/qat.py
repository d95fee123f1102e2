"""Quantization-aware training: ``QATConfig``, ``prepare_qat`` and ``convert``.

The recipe of Jacob et al. 2018 (sec. 3) and Krishnamoorthi 2018 (sec. 3.2), with learned step sizes (LSQ,
Esser et al. 2020) as the default quantizer:

1. ``prepare_qat(model, config, calibration_data)`` copies a trained FP32 model and swaps every Linear/Conv for
   a :class:`QATLayer` holding a weight quantizer and an input-activation quantizer (``method="lsq"``: learned
   steps, :class:`~coursekit.quant.lsq.LSQQuantizer`; ``method="ste"``: observer-set ranges with the
   straight-through estimator, :class:`~coursekit.quant.lsq.STEQuantizer`). With ``init="ptq"`` the scales
   start where chapter 02's PTQ puts them (min/max of the calibration data, symmetric per-channel weights), so
   QAT begins at the PTQ model and only has to repair its error.
2. Fine-tune as usual (any training loop): the forward pass sees the rounding and clipping of the deployed
   model, the backward pass goes straight through.
3. ``convert(qat_model)`` freezes the learned scales into the same fake-quant (QDQ) model that
   ``quantize_model`` produces: ``QuantLinear``/``QuantConv`` with frozen ``FakeQuantizer``s, which exports to
   ONNX Q/DQ nodes and runs in ONNX Runtime (``coursekit.export``).

BatchNorm (``QATConfig.bn``): ``"fold"`` (default) folds each BN into the preceding conv with its running
statistics *before* QAT, so the weights that are trained and quantized are exactly the deployed, folded ones and
BN statistics are frozen from the start: stable and cheap for a short fine-tune of a pretrained model (the
regime of this chapter), at the cost of losing BN's batch normalisation while training. ``"simulate"`` keeps BN
training: the conv weight is folded with the *running* statistics and fake-quantized, the conv output is
rescaled and BN applied with batch statistics (Krishnamoorthi 2018 sec. 3.2, fig. 9; Jacob et al. 2018 sec. 3.2;
torch's ``ConvBn2d`` QAT module); :func:`freeze_bn_stats` switches to running statistics late in training.
"""
from __future__ import annotations

import copy
import fnmatch
import itertools
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from coursekit._validate import check_choice
from coursekit.quant.fold import fold_batchnorm, fold_batchnorms
from coursekit.quant.lsq import LSQQuantizer, STEQuantizer, _QATQuantizer
from coursekit.quant.modules import QUANTIZABLE, FakeQuantizer
from coursekit.quant.observers import MinMaxObserver
from coursekit.quant.primitives import calc_qparams, check_bits
from coursekit.quant.ptq import checked_config, quantizable_layers
from coursekit.surgery import BATCHNORM_TYPES, CONV_TYPES, batches, named_layers, replace_layer

METHODS = ("lsq", "ste")
INITS = ("ptq", "lsq")
BN_MODES = ("fold", "simulate")


@dataclass
class QATConfig:
    """How to simulate quantization while training.

    * ``weight_bits``/``act_bits`` in 2..16 (the default for every layer).
    * ``method``: ``"lsq"`` (learned step sizes, Esser et al. 2020) or ``"ste"`` (observer ranges + STE).
    * ``per_channel``: one weight scale per output channel (else per tensor).
    * ``init``: ``"ptq"`` (scales from calibration data, as chapter 02's PTQ; needs ``calibration_data``) or
      ``"lsq"`` (Esser's ``2 mean|x| / sqrt(Qp)`` on the first batch; LSQ only).
    * ``keep_first_last_8bit``: the first and the last quantizable layer use 8-bit weights and activations
      whatever the defaults (they are the most sensitive and hold few parameters; Esser et al. 2020 sec. 3,
      Krishnamoorthi 2018 sec. 3.3).
    * ``layer_bits``: ``{"name or glob": (weight_bits, act_bits)}`` overrides, applied last.
    * ``bn``: ``"fold"`` or ``"simulate"`` (see the module docstring); ``skip``: layer names kept in float.
    """

    weight_bits: int = 8
    act_bits: int = 8
    method: str = "lsq"
    per_channel: bool = True
    init: str = "ptq"
    keep_first_last_8bit: bool = False
    layer_bits: dict = field(default_factory=dict)
    bn: str = "fold"
    skip: tuple = ()

    def __post_init__(self):
        check_bits(self.weight_bits, "weight_bits")
        check_bits(self.act_bits, "act_bits")
        check_choice("method", self.method, METHODS)
        check_choice("init", self.init, INITS)
        check_choice("bn", self.bn, BN_MODES)
        if self.method == "ste" and self.init == "lsq":
            raise ValueError("init='lsq' (Esser's step initialisation) only applies to method='lsq'; "
                             "method='ste' takes its ranges from observers, use init='ptq'")
        if not isinstance(self.layer_bits, dict):
            raise TypeError(f"layer_bits must be a dict {{name: (weight_bits, act_bits)}}, got "
                            f"{type(self.layer_bits).__name__}")
        for name, pair in self.layer_bits.items():
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise ValueError(f"layer_bits[{name!r}]={pair!r} must be a (weight_bits, act_bits) pair")
            check_bits(pair[0], f"layer_bits[{name!r}] weight bits")
            check_bits(pair[1], f"layer_bits[{name!r}] act bits")
        self.skip = (self.skip,) if isinstance(self.skip, str) else tuple(self.skip)

    def bits_for(self, name: str, index: int, count: int) -> tuple[int, int]:
        """``(weight_bits, act_bits)`` of the ``index``-th of ``count`` quantized layers, called ``name``."""
        bits = (self.weight_bits, self.act_bits)
        if self.keep_first_last_8bit and index in (0, count - 1):
            bits = (max(8, self.weight_bits), max(8, self.act_bits))
        for pattern, pair in self.layer_bits.items():
            if name == pattern or fnmatch.fnmatch(name, pattern):
                bits = (int(pair[0]), int(pair[1]))
        return bits


# ----------------------------------------------------------------------------------------------- modules
class QATLayer(nn.Module):
    """A Linear or Conv layer whose weight and input pass through trainable fake quantizers."""

    def __init__(self, layer: nn.Module, weight_quantizer: _QATQuantizer, input_quantizer: _QATQuantizer | None):
        super().__init__()
        if type(layer) not in QUANTIZABLE:
            raise TypeError(f"QATLayer wraps a Linear or Conv1d/2d/3d, got {type(layer).__name__}")
        self.layer = layer
        self.weight_quantizer = weight_quantizer
        self.input_quantizer = input_quantizer

    def float_weight(self) -> torch.Tensor:
        """The float weight the weight quantizer sees (the BN-folded one for :class:`QATConvBn`)."""
        return self.layer.weight

    def _linear_op(self, x, weight, bias):
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, weight, bias)
        return self.layer._conv_forward(x, weight, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        return self._linear_op(x, self.weight_quantizer(self.float_weight()), self.layer.bias)

    def deployed_layer(self) -> nn.Module:
        """A float copy of the layer as it is deployed (BN folded for :class:`QATConvBn`)."""
        return copy.deepcopy(self.layer)


class QATConvBn(QATLayer):
    """Conv + BatchNorm trained with simulated folding (Krishnamoorthi 2018 sec. 3.2, fig. 9).

    The weight quantizer sees ``W gamma / sqrt(running_var + eps)`` (the folded weight deployment will use);
    the conv output is divided by that factor again and BN applied, with batch statistics while training
    (running statistics after :func:`freeze_bn_stats` and in eval mode). ``deployed_layer`` is
    ``fold_batchnorm(conv, bn)``, computed with the same float operations as the folded weight here.
    """

    def __init__(self, conv: nn.Module, bn: nn.Module, weight_quantizer, input_quantizer):
        super().__init__(conv, weight_quantizer, input_quantizer)
        if not isinstance(conv, CONV_TYPES) or not isinstance(bn, BATCHNORM_TYPES):
            raise TypeError("QATConvBn needs a Conv1d/2d/3d followed by a BatchNorm1d/2d/3d")
        self.bn = bn
        self.bn_frozen = False

    def _factor(self) -> torch.Tensor:
        gamma = self.bn.weight if self.bn.weight is not None else torch.ones_like(self.bn.running_var)
        return gamma * torch.rsqrt(self.bn.running_var + self.bn.eps)

    def float_weight(self) -> torch.Tensor:
        w = self.layer.weight
        return w * self._factor().reshape([-1] + [1] * (w.dim() - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_quantizer is not None:
            x = self.input_quantizer(x)
        y = self._linear_op(x, self.weight_quantizer(self.float_weight()), None)
        y = y / self._factor().reshape([1, -1] + [1] * (y.dim() - 2))
        if self.layer.bias is not None:
            y = y + self.layer.bias.reshape([1, -1] + [1] * (y.dim() - 2))
        return self.bn(y)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.bn_frozen:
            self.bn.eval()
        return self

    def deployed_layer(self) -> nn.Module:
        return fold_batchnorm(self.layer, self.bn)


def freeze_bn_stats(model: nn.Module) -> nn.Module:
    """Use running BN statistics from now on in every :class:`QATConvBn` (late QAT; Krishnamoorthi 2018 sec. 3.2)."""
    for m in model.modules():
        if isinstance(m, QATConvBn):
            m.bn_frozen = True
            m.bn.eval()
    return model


def freeze_observers(model: nn.Module) -> nn.Module:
    """Stop updating the activation ranges of every ``STEQuantizer`` (LSQ steps keep learning)."""
    for m in model.modules():
        if isinstance(m, STEQuantizer) and m.track == "ema":
            m.freeze()
    return model


def qat_layers(model: nn.Module) -> dict[str, QATLayer]:
    """The :class:`QATLayer` modules of a prepared model, by name."""
    return dict(named_layers(model, types=QATLayer))


def step_sizes(model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """Current scales of every QAT layer: ``{name: {"weight": (C,) tensor, "input": (1,) tensor}}``."""
    out = {}
    for name, m in qat_layers(model).items():
        entry = {"weight": m.weight_quantizer.qparams()[0]}
        if m.input_quantizer is not None and bool(m.input_quantizer.initialized):
            entry["input"] = m.input_quantizer.qparams()[0]
        out[name] = entry
    return out


# ----------------------------------------------------------------------------------------------- prepare
def _quantizers(layer: nn.Module, w_bits: int, a_bits: int, config: QATConfig):
    if config.per_channel and layer.weight.dim() < 2:
        raise ValueError(f"per_channel=True needs a weight with an output-channel axis; "
                         f"{type(layer).__name__} has weight shape {tuple(layer.weight.shape)}")
    axis = 0 if config.per_channel else None
    if config.method == "lsq":
        wq = LSQQuantizer(w_bits, signed=True, per_channel=config.per_channel, axis=0)
        aq = LSQQuantizer(a_bits, signed=None, activation=True)
    else:
        wq = STEQuantizer(w_bits, symmetric=True, signed=True, axis=axis, track="current")
        aq = STEQuantizer(a_bits, symmetric=False, signed=False, track="ema")
    return wq, aq


def _init_weight(wq: _QATQuantizer, weight: torch.Tensor, init: str) -> None:
    w = weight.detach()
    if isinstance(wq, STEQuantizer):
        wq.update_qparams(w)
    elif init == "lsq":
        wq.initialize(w)
    else:  # chapter 02's weight scales: symmetric min/max (per channel)
        obs = MinMaxObserver(wq.bits, symmetric=True, signed=True, axis=wq.axis)
        obs.update(w)
        wq.set_step(obs.qparams()[0])


def _init_activation(aq: _QATQuantizer) -> None:
    """Initial activation scale from the calibration range (chapter 02's static PTQ: min/max)."""
    lo, hi = aq.calib_observer.range()
    if isinstance(aq, STEQuantizer):
        scale, zp = calc_qparams(lo, hi, aq.qmin, aq.qmax, aq.symmetric)
        aq.scale, aq.zero_point = scale.reshape(-1), zp.reshape(-1).to(torch.int64)
        aq.initialized.fill_(True)
        aq.observer.min_val, aq.observer.max_val = lo.clone(), hi.clone()  # the moving average starts here
        aq.observer.num_batches = 1
        return
    signed = bool(lo < 0)
    aq._set_range(signed)  # LSQ: zero point 0; signed data -> symmetric signed range, else [0, 2^b - 1]
    aq.set_step(calc_qparams(lo, hi, aq.qmin, aq.qmax, symmetric=signed)[0], signed=signed)


def _swap_conv_bn(module: nn.Module, pairs: list) -> None:
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        for first, second in itertools.pairwise(names):
            conv, bn = module._modules[first], module._modules[second]
            if type(conv) in CONV_TYPES and isinstance(bn, BATCHNORM_TYPES) and bn.running_mean is not None:
                pairs.append((module, first, second))
    for child in module.children():
        _swap_conv_bn(child, pairs)


def prepare_qat(model: nn.Module, config: QATConfig | None = None, calibration_data=None) -> nn.Module:
    """A QAT copy of ``model`` (the input is untouched), in training mode, ready to fine-tune.

    ``calibration_data``: batches of inputs or ``(input, target)`` pairs (a DataLoader works) used to set the
    initial activation scales; required for ``config.init="ptq"``. The copy carries ``qat_config`` and, per
    layer, the chosen bit widths in ``qat_bits``. Raises ValueError for a model without quantizable layers.
    """
    config = checked_config(model, config, QATConfig)
    if config.init == "ptq" and calibration_data is None:
        raise ValueError("init='ptq' sets the initial scales from calibration_data (input batches, e.g. a few "
                         "training batches); pass calibration_data, or use QATConfig(init='lsq')")

    qmodel = fold_batchnorms(model) if config.bn == "fold" else copy.deepcopy(model)
    bn_pairs = []
    if config.bn == "simulate":
        _swap_conv_bn(qmodel, bn_pairs)
    names, skipped = quantizable_layers(qmodel, config.skip)
    if not names:
        raise ValueError("the model has no quantizable layers (Linear, Conv1d/2d/3d)"
                         + (f"; all were skipped by config.skip: {skipped}" if skipped else ""))
    pair_of = {id(seq._modules[first]): (seq, first, second) for seq, first, second in bn_pairs}
    bits = {}
    for index, name in enumerate(names):
        layer = qmodel.get_submodule(name)
        w_bits, a_bits = config.bits_for(name, index, len(names))
        wq, aq = _quantizers(layer, w_bits, a_bits, config)
        if id(layer) in pair_of:
            seq, _, second = pair_of[id(layer)]
            new = QATConvBn(layer, seq._modules[second], wq, aq)
            seq._modules[second] = nn.Identity()
        else:
            new = QATLayer(layer, wq, aq)
        _init_weight(wq, new.float_weight(), config.init)
        replace_layer(qmodel, name, new)
        bits[name] = (w_bits, a_bits)
    if calibration_data is not None:
        _calibrate(qmodel, calibration_data, initialize=config.init == "ptq")
    qmodel.qat_config = config
    qmodel.qat_bits = bits
    return qmodel.train()


def _calibrate(qmodel: nn.Module, calibration_data, initialize: bool) -> None:
    quantizers = [m.input_quantizer for m in qat_layers(qmodel).values() if m.input_quantizer is not None]
    for q in quantizers:
        q.calib_observer = MinMaxObserver(q.bits, signed=True)
        q.calibrating = True
    qmodel.eval()
    seen = 0
    try:
        with torch.no_grad():
            for x in batches(calibration_data):
                if x.numel():
                    if x.is_floating_point() and not torch.isfinite(x).all():
                        raise ValueError(f"calibration batch {seen} contains NaN/inf values")
                    qmodel(x)
                    seen += 1
        if seen == 0:
            raise ValueError("calibration_data is empty: give at least one non-empty batch of inputs")
        for q in quantizers:
            if q.calib_observer.num_batches == 0:
                raise ValueError("a quantized layer was never reached by the calibration data; skip it via "
                                 "QATConfig.skip or check the model's forward")
            if initialize:
                _init_activation(q)
    finally:
        for q in quantizers:
            q.calibrating = False
            q.calib_observer = None


# ----------------------------------------------------------------------------------------------- convert
def _frozen(q: _QATQuantizer) -> FakeQuantizer:
    """A chapter-02 ``FakeQuantizer`` in the frozen state with ``q``'s current range and scales."""
    symmetric = q.symmetric if isinstance(q, STEQuantizer) else q.signed
    fq = FakeQuantizer(q.bits, symmetric=symmetric, signed=q.signed, axis=q.axis)
    if (fq.qmin, fq.qmax) != (q.qmin, q.qmax):  # cannot happen with quant_range; guard the invariant
        raise RuntimeError(f"range mismatch {(fq.qmin, fq.qmax)} vs {(q.qmin, q.qmax)}")
    scale, zero_point = q.qparams()
    fq.scale = scale.to(torch.float32).clone()
    fq.zero_point = zero_point.to(torch.int32).clone()
    fq.calibrating = False
    fq._cache_scalars()
    return fq


def convert(model: nn.Module) -> nn.Module:
    """The trained QAT model as chapter 02's fake-quant (QDQ) model, with frozen scales, in eval mode.

    Every :class:`QATLayer` becomes a ``QuantLinear``/``QuantConv`` (BN folded for :class:`QATConvBn`) whose
    ``FakeQuantizer``s hold the learned scales; the result exports with ``coursekit.export.export_onnx``.
    The input is not modified. Raises ValueError when ``model`` was never prepared with :func:`prepare_qat`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    layers = qat_layers(model)
    if not layers:
        raise ValueError("convert() needs a model returned by prepare_qat (it has no QAT layers); "
                         "for post-training quantization use quantize_model instead")
    for name, m in layers.items():
        for role, q in (("weight", m.weight_quantizer), ("input", m.input_quantizer)):
            if q is not None and not bool(q.initialized):
                raise ValueError(f"the {role} quantizer of layer {name!r} was never initialised: run at least "
                                 "one forward pass (or pass calibration_data to prepare_qat) before convert()")
    qmodel = copy.deepcopy(model).eval()
    for name, m in qat_layers(qmodel).items():
        wq = m.weight_quantizer
        if isinstance(wq, STEQuantizer) and wq.track == "current" and wq.observing:
            with torch.no_grad():  # the range of the weights as they are now (after the last optimizer step)
                wq.update_qparams(m.float_weight())
        layer = m.deployed_layer()
        aq = _frozen(m.input_quantizer) if m.input_quantizer is not None else None
        replace_layer(qmodel, name, QUANTIZABLE[type(layer)](layer, _frozen(m.weight_quantizer), aq))
    for attr in ("qat_config", "qat_bits"):
        if hasattr(model, attr):
            setattr(qmodel, attr, getattr(model, attr))
    return qmodel.eval()
