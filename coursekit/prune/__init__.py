"""coursekit.prune: magnitude, global, random and N:M masks (reparametrised like ``torch.nn.utils.prune``),
sparsity reports, sensitivity scans, the cubic gradual-pruning schedule, lottery tickets, sparse storage
byte counts, MAC counts, and structured channel pruning that physically shrinks the model.

Papers: Han et al. 2015 (magnitude), Zhu & Gupta 2017 (schedule), Frankle & Carbin 2019 (lottery tickets),
Mishra et al. 2021 (2:4), Li et al. 2017 and Fang et al. 2023 (channel pruning / DepGraph).
"""
from coursekit.prune.channel import (
    Dependency,
    channel_dependencies,
    channel_importance,
    channel_prune,
    kept_count,
    prunable_layers,
    remove_channels,
    sort_channels,
)
from coursekit.prune.lottery import lottery_ticket
from coursekit.prune.macs import count_macs
from coursekit.prune.magnitude import global_magnitude_prune, magnitude_mask, magnitude_prune, random_prune
from coursekit.prune.mask import (
    apply_mask,
    effective,
    get_mask,
    is_pruned,
    pruned_parameters,
    remove,
    remove_all,
)
from coursekit.prune.nm import is_nm_sparse, nm_mask, nm_prune
from coursekit.prune.report import nonzero_weights, sparsity, sparsity_report
from coursekit.prune.schedule import GradualPruning, cubic_schedule
from coursekit.prune.sensitivity import plot_sensitivity, sensitivity_scan
from coursekit.prune.storage import FORMATS, csr_break_even, model_storage_bytes, storage_bytes

__all__ = [
    "FORMATS",
    "Dependency",
    "GradualPruning",
    "apply_mask",
    "channel_dependencies",
    "channel_importance",
    "channel_prune",
    "count_macs",
    "csr_break_even",
    "cubic_schedule",
    "effective",
    "get_mask",
    "global_magnitude_prune",
    "is_nm_sparse",
    "is_pruned",
    "kept_count",
    "lottery_ticket",
    "magnitude_mask",
    "magnitude_prune",
    "model_storage_bytes",
    "nm_mask",
    "nm_prune",
    "nonzero_weights",
    "plot_sensitivity",
    "prunable_layers",
    "pruned_parameters",
    "random_prune",
    "remove",
    "remove_all",
    "remove_channels",
    "sensitivity_scan",
    "sort_channels",
    "sparsity",
    "sparsity_report",
    "storage_bytes",
]
