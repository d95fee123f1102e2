"""coursekit.bench.energy: RAPL deltas (with wrap-around) on a fake powercap tree, and the labelled estimate."""
import os

import pytest

from coursekit.bench import energy


def _domain(root, name, uj, max_uj=None):
    d = root / name
    d.mkdir(parents=True)
    (d / "energy_uj").write_text(f"{uj}\n")
    if max_uj is not None:
        (d / "max_energy_range_uj").write_text(f"{max_uj}\n")
    return d


def test_packages_skip_subdomains_and_unreadable(tmp_path):
    _domain(tmp_path, "intel-rapl:0", 5)
    _domain(tmp_path, "intel-rapl:0:0", 3)  # the cores sub-domain is inside package 0 already
    bad = tmp_path / "intel-rapl:1"
    bad.mkdir()
    (bad / "energy_uj").write_text("not a number")
    assert [d.name for d in energy.rapl_packages(tmp_path)] == ["intel-rapl:0"]
    assert energy.rapl_packages(tmp_path / "missing") == []


def test_measured_energy_is_the_counter_difference_summed_over_packages(tmp_path):
    p0 = _domain(tmp_path, "intel-rapl:0", 1_000_000, 2**32)
    p1 = _domain(tmp_path, "intel-rapl:1", 2**32 - 500_000, 2**32)  # wraps during the work
    steps = iter(range(1, 4))

    def work():  # each call the packages use 0.25 J and 0.5 J
        k = next(steps)
        (p0 / "energy_uj").write_text(str(1_000_000 + 250_000 * k))
        (p1 / "energy_uj").write_text(str((2**32 - 500_000 + 500_000 * k) % 2**32))

    result = energy.measure_energy(work, calls=3, root=tmp_path)
    assert result.source == "rapl"
    assert result.joules == pytest.approx(3 * 0.75)
    assert result.joules_per_call == pytest.approx(0.75)


def test_counter_going_backwards_without_range_is_an_error(tmp_path):
    d = _domain(tmp_path, "intel-rapl:0", 100)
    with pytest.raises(RuntimeError, match="max_energy_range_uj"):
        energy.rapl_delta_uj([100], [50], [d])


def test_estimate_without_counters_is_labelled_and_follows_cpu_time(tmp_path):
    result = energy.measure_energy(lambda: sum(i * i for i in range(20_000)), calls=20, tdp_w=120.0, root=tmp_path)
    assert result.source == "estimate" and "ESTIMATE" in result.note
    cores = os.cpu_count() or 1
    assert result.joules == pytest.approx(120.0 / cores * result.cpu_seconds)
    assert result.cpu_seconds > 0


def test_estimate_formula_and_bad_input():
    assert energy.estimate_joules(2.0, tdp_w=64.0, cores=16) == pytest.approx(8.0)  # 4 W per core x 2 s
    assert energy.estimate_joules(1.0, cores=4) == pytest.approx(energy.DEFAULT_WATTS_PER_CORE)
    with pytest.raises(ValueError, match="cpu_seconds"):
        energy.estimate_joules(-1.0)
    with pytest.raises(ValueError, match="calls"):
        energy.measure_energy(lambda: None, calls=0)
    with pytest.raises(TypeError, match="fn must be callable"):
        energy.measure_energy(3)
