"""Lottery tickets: iterative magnitude pruning with rewinding (Frankle & Carbin 2019, "The lottery ticket
hypothesis", Algorithm in section 1; rewinding to an early iteration: Frankle et al. 2020, "Linear mode
connectivity and the lottery ticket hypothesis").

Each round: train, prune p of the surviving weights globally by magnitude (so after r rounds the sparsity is
1 - (1 - p)^r), reset the surviving weights to their values at initialisation (or at an early step: the
``rewind`` state), keep the mask. The winning ticket is the final sparse network trained from those values;
the control keeps the same mask but draws fresh random weights. The hypothesis predicts the ticket beats
the control at high sparsity.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from coursekit._validate import check_int, check_probability
from coursekit.prune.magnitude import global_magnitude_prune
from coursekit.prune.mask import apply_mask, get_mask, remove_all
from coursekit.surgery import WEIGHT_LAYER_TYPES, named_layers


def _targets(model):
    return [(layer, "weight") for _, layer in named_layers(model, WEIGHT_LAYER_TYPES)]


def _load_weights(model: nn.Module, state: dict) -> None:
    """Load a dense state dict into a (possibly masked) model: ``weight`` goes to ``weight_orig``."""
    own = model.state_dict()
    with torch.no_grad():
        for key, value in state.items():
            target = key if key in own else key[:-len("weight")] + "weight_orig" if key.endswith("weight") else key
            if target in own:
                own[target].copy_(value)


def lottery_ticket(model: nn.Module, train, evaluate, rounds: int = 3, rate: float = 0.5,
                   rewind: dict | None = None, make_model=None, seed: int = 0) -> dict:
    """Iterative magnitude pruning with rewinding, and the random re-initialisation control.

    ``model``: freshly initialised. ``train(model)`` trains in place (masks stay applied: they are
    reparametrisations); ``evaluate(model) -> float``. ``rewind``: a dense state dict to reset to after each
    round (default: ``model``'s initial weights; pass the weights after a few hundred steps for late
    rewinding). ``make_model()`` builds a fresh model of the same architecture for the control (default:
    a deep copy with reset parameters under ``torch.manual_seed(seed + 1)``).

    Returns ``{"sparsity": [...per round], "ticket": [accuracy per round], "dense": acc, "random_reinit": acc,
    "ticket_model", "control_model"}``; the last entry of ``ticket`` is the final winning ticket.
    """
    rounds = check_int("rounds", rounds, min_value=1)
    rate = check_probability("rate", rate)
    if rewind is None:
        rewind = copy.deepcopy(model.state_dict())
    targets = _targets(model)
    train(model)
    out = {"dense": float(evaluate(model)), "sparsity": [], "ticket": []}
    for r in range(1, rounds + 1):
        sparsity = 1 - (1 - rate) ** r
        global_magnitude_prune(targets, sparsity)
        _load_weights(model, rewind)
        train(model)
        out["sparsity"].append(sparsity)
        out["ticket"].append(float(evaluate(model)))
    masks = [get_mask(m, n) for m, n in targets]
    if make_model is None:
        control = copy.deepcopy(model)
        remove_all(control)
        torch.manual_seed(seed + 1)
        for module in control.modules():
            if hasattr(module, "reset_parameters") and module is not control:
                module.reset_parameters()
    else:
        control = make_model()
    for (module, name), mask in zip(_targets(control), masks):
        apply_mask(module, name, mask)
    train(control)
    out["random_reinit"] = float(evaluate(control))
    out["ticket_model"], out["control_model"] = model, control
    return out
