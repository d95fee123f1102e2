"""Low-rank factorization: truncated SVD of Linear layers, channel SVD and Tucker-2 of convolutions, LoRA.

    from coursekit import lowrank
    two = lowrank.svd_factorize(model.fc1, rank=32)          # Linear -> Linear(in, r) -> Linear(r, out)
    r = lowrank.rank_for_energy(model.fc1.weight, 0.9)        # smallest rank keeping 90% of ||W||_F^2
    lowrank.factorize_model(model, ranks={"fc1": 32})         # in place, via coursekit.surgery
"""
from coursekit.lowrank.conv import factorize_conv, tucker2, tucker2_conv, tucker2_reconstruct
from coursekit.lowrank.explore import rank_explorer, rank_point
from coursekit.lowrank.lora import LoRALinear
from coursekit.lowrank.select import factorize_model, param_cost, select_ranks
from coursekit.lowrank.svd import (
    break_even_rank,
    check_rank,
    energy_kept,
    factorized_params,
    rank_for_energy,
    singular_values,
    svd_factorize,
    svd_factors,
    truncation_error,
)

__all__ = [
    "LoRALinear",
    "break_even_rank",
    "check_rank",
    "energy_kept",
    "factorize_conv",
    "factorize_model",
    "factorized_params",
    "param_cost",
    "rank_explorer",
    "rank_for_energy",
    "rank_point",
    "select_ranks",
    "singular_values",
    "svd_factorize",
    "svd_factors",
    "truncation_error",
    "tucker2",
    "tucker2_conv",
    "tucker2_reconstruct",
]
