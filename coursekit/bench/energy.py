"""Energy per inference: measured from RAPL counters where the CPU exposes them, estimated otherwise (and labelled).

Intel (since Sandy Bridge) and AMD (since Zen) CPUs count the energy their package and cores use in *Running
Average Power Limit* (RAPL) registers; Linux shows them as ``/sys/class/powercap/intel-rapl:N/energy_uj``
(microjoules, wrapping around at ``max_energy_range_uj``; the AMD driver uses the same ``intel-rapl`` names).
Energy of a piece of work is the counter difference around it (Khan et al., "RAPL in Action", TOMPECS 2018):

    E = sum over packages of (energy_uj_after - energy_uj_before) mod max_energy_range_uj.

The counters often are readable by root only (since Linux 5.10, CVE-2020-8694), and virtual machines and
containers usually hide them. Then ``measure_energy`` *estimates* instead, and says so in ``source``:

    E ~ (TDP / cores) x CPU seconds of this process,

the power share of the cores this process kept busy, at their thermal design power. It ignores idle power,
memory and turbo, so it is only an order of magnitude; compare variants measured the same way, never an
estimate with a measurement.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from coursekit._validate import check_int, check_positive

POWERCAP = Path("/sys/class/powercap")
DEFAULT_WATTS_PER_CORE = 10.0  # a server core near full load; pass tdp_w= for your CPU (its data sheet)


@dataclass
class EnergyResult:
    """Energy of ``calls`` calls: ``joules`` in total, ``source`` is ``"rapl"`` (measured) or ``"estimate"``."""

    joules: float
    seconds: float
    cpu_seconds: float
    calls: int
    source: str
    note: str

    @property
    def joules_per_call(self) -> float:
        return self.joules / self.calls

    @property
    def watts(self) -> float:
        return self.joules / self.seconds if self.seconds > 0 else float("nan")


def rapl_packages(root=POWERCAP) -> list[Path]:
    """The readable top-level RAPL domains (``intel-rapl:0``, ``intel-rapl:1``, ...: one per CPU package)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for domain in sorted(root.glob("intel-rapl:*")):
        if domain.name.count(":") != 1:  # intel-rapl:0:0 is a sub-domain (cores, dram) already in the package
            continue
        try:
            int((domain / "energy_uj").read_text())
        except (OSError, ValueError):
            continue
        found.append(domain)
    return found


def read_rapl_uj(domains: list[Path]) -> list[int]:
    """Current ``energy_uj`` of each domain, in microjoules."""
    return [int((d / "energy_uj").read_text()) for d in domains]


def rapl_delta_uj(before: list[int], after: list[int], domains: list[Path]) -> int:
    """Energy used between two readings, in microjoules, allowing each counter to wrap around once."""
    total = 0
    for b, a, d in zip(before, after, domains):
        span = a - b
        if span < 0:
            try:
                span += int((d / "max_energy_range_uj").read_text())
            except (OSError, ValueError):
                raise RuntimeError(f"RAPL counter {d} went backwards and has no max_energy_range_uj") from None
        total += span
    return total


def estimate_joules(cpu_seconds: float, tdp_w: float | None = None, cores: int | None = None) -> float:
    """The labelled estimate: ``tdp_w / cores * cpu_seconds`` (default: DEFAULT_WATTS_PER_CORE per core)."""
    cpu_seconds = check_positive("cpu_seconds", cpu_seconds, allow_zero=True)
    cores = check_int("cores", cores if cores is not None else os.cpu_count() or 1, min_value=1)
    tdp_w = check_positive("tdp_w", tdp_w) if tdp_w is not None else DEFAULT_WATTS_PER_CORE * cores
    return tdp_w / cores * cpu_seconds


def measure_energy(fn: Callable[[], object], calls: int = 100, *, tdp_w: float | None = None,
                   root=POWERCAP) -> EnergyResult:
    """Run ``fn`` ``calls`` times; the energy used, from RAPL when readable, else the estimate (``source`` says).

    RAPL counts the whole package, other programs included: on a busy machine the measurement is an upper bound.
    """
    calls = check_int("calls", calls, min_value=1)
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    domains = rapl_packages(root)
    before = read_rapl_uj(domains) if domains else []
    cpu0, t0 = time.process_time(), time.perf_counter()
    for _ in range(calls):
        fn()
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - cpu0
    if domains:
        joules = rapl_delta_uj(before, read_rapl_uj(domains), domains) / 1e6
        return EnergyResult(joules, seconds, cpu_seconds, calls, "rapl",
                            f"measured: RAPL counters of {len(domains)} package(s), whole package incl. other work")
    cores = os.cpu_count() or 1
    watts = tdp_w if tdp_w is not None else DEFAULT_WATTS_PER_CORE * cores
    return EnergyResult(estimate_joules(cpu_seconds, watts, cores), seconds, cpu_seconds, calls, "estimate",
                        f"ESTIMATE (no readable RAPL counters): {watts:g} W / {cores} cores x CPU time")
