"""coursekit.bench.fakeclock: timers written against time.perf_counter follow the fake clock; the others do not."""
import time

import pytest

from coursekit.bench.fakeclock import WALL_EPOCH, FakeClock


def _timer(fn, clock_name="perf_counter"):
    read = getattr(time, clock_name)
    start = read()
    fn()
    return read() - start


def test_perf_counter_follows_advance_and_reads_are_counted():
    clock = FakeClock()
    real_perf_counter = time.perf_counter
    with clock.installed():
        assert time.perf_counter() == 1000.0
        clock.advance(0.25)
        assert time.perf_counter() == 1000.25
        assert time.perf_counter_ns() == 1_000_250_000_000
        assert _timer(lambda: clock.advance(0.002)) == pytest.approx(0.002, abs=1e-12)
    assert time.perf_counter is real_perf_counter  # restored
    assert clock.reads == {"perf_counter": 4, "perf_counter_ns": 1}


def test_namespace_rebinding_covers_module_and_from_imports():
    clock = FakeClock(start=0.0)
    from time import perf_counter

    namespace = {"time": time, "perf_counter": perf_counter, "other": 3}
    with clock.installed(namespace):
        assert namespace["time"] is not time and namespace["time"].sleep is time.sleep
        clock.advance(1.0)
        assert namespace["perf_counter"]() == 1.0
        # the wall clock moves in 1/64 s ticks, process time never moves: timers reading them get wrong numbers
        assert namespace["time"].time() == WALL_EPOCH + 1.0
        clock.advance(0.01)
        assert namespace["time"].time() == WALL_EPOCH + 1.0
        assert namespace["time"].process_time() == 0.0
        assert time.time() > 1.7e9 and time.time() != WALL_EPOCH + 1.0  # the real module's wall clock untouched
    assert namespace == {"time": time, "perf_counter": perf_counter, "other": 3}
    assert clock.reads == {"perf_counter": 1, "time": 2, "process_time": 1}


def test_bad_input():
    with pytest.raises(ValueError, match="seconds"):
        FakeClock().advance(-1)
    with pytest.raises(ValueError, match="name"):
        FakeClock().clock("sleep")
    with pytest.raises(TypeError, match="namespace"), FakeClock().installed(namespace=[1]):
        pass
