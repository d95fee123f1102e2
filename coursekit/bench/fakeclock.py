"""A deterministic clock for testing timing code without waiting, and without depending on the machine's load.

A timer is correct when its numbers follow the clock it reads. ``FakeClock`` stands in for the ``time`` module's
clocks: time only moves when the code under test calls ``advance`` (a stub model "runs" for a scripted number of
seconds), and every read is counted by clock name, so a test can say *which* clock a timer read::

    clock = FakeClock()
    def stub_model():
        clock.advance(0.002)            # this call "takes" 2 ms
    with clock.installed(globals()):    # the timer's `time.perf_counter()` now reads the fake clock
        samples = my_timer(stub_model)
    clock.reads                         # Counter({'perf_counter': 40})

``time.perf_counter``/``perf_counter_ns`` follow the fake time exactly. ``time.time``/``time_ns`` (the wall clock)
advance with it but only in steps of ``wall_resolution`` seconds (1/64 s, the classic Windows tick), and
``process_time`` never moves (a stub burns no CPU), so a timer that reads the wrong clock gets visibly wrong numbers.

``installed(namespace)`` patches only ``perf_counter``/``perf_counter_ns`` on the real ``time`` module (other
threads of the process, such as an event loop reading ``time.monotonic``, must keep the real clocks). In
``namespace`` (a module's or notebook's globals) it rebinds the name ``time`` to a stand-in module with every fake
clock, and any name bound to a real clock function (``from time import perf_counter``) to its fake twin.
"""
from __future__ import annotations

import contextlib
import math
import time as _time
import types
from collections import Counter
from collections.abc import Iterator

from coursekit._validate import check_positive

CLOCKS = ("perf_counter", "perf_counter_ns", "monotonic", "monotonic_ns", "time", "time_ns", "process_time",
          "process_time_ns")
PATCHED_IN_MODULE = ("perf_counter", "perf_counter_ns")  # safe to patch process-wide for a moment
WALL_EPOCH = 1.7e9  # the fake wall clock's reading at fake time 0 (seconds since 1970, late 2023)


class FakeClock:
    """Fake time in seconds, moved only by :meth:`advance`; counts reads per clock name in ``reads``."""

    def __init__(self, start: float = 1000.0, wall_resolution: float = 1 / 64):
        self.now = float(check_positive("start", start, allow_zero=True))
        self.wall_resolution = check_positive("wall_resolution", wall_resolution)
        self.reads: Counter[str] = Counter()

    def advance(self, seconds: float) -> None:
        """Let ``seconds`` of fake time pass (what a stub model calls to "run")."""
        self.now += check_positive("seconds", seconds, allow_zero=True)

    def _read(self, name: str) -> float:
        self.reads[name] += 1
        if name.startswith("process_time"):
            return 0.0
        if name.startswith("time"):
            return WALL_EPOCH + math.floor(self.now / self.wall_resolution) * self.wall_resolution
        return self.now

    def clock(self, name: str):
        """The fake version of ``time.<name>`` (one of ``CLOCKS``)."""
        if name not in CLOCKS:
            raise ValueError(f"name={name!r} is not a clock of the time module; choose one of {CLOCKS}")
        if name.endswith("_ns"):
            return lambda: round(self._read(name) * 1e9)
        return lambda: self._read(name)

    def module(self) -> types.ModuleType:
        """A stand-in for the ``time`` module: fake clocks, everything else (``sleep``, ``strftime``) real."""
        fake = types.ModuleType("time")
        fake.__dict__.update({k: v for k, v in vars(_time).items() if not k.startswith("__")})
        fake.__dict__.update({name: self.clock(name) for name in CLOCKS})
        return fake

    @contextlib.contextmanager
    def installed(self, namespace: dict | None = None) -> Iterator[FakeClock]:
        """Make timing code read this clock for the duration of the block (see the module docstring)."""
        if namespace is not None and not isinstance(namespace, dict):
            raise TypeError(f"namespace must be a dict of globals (e.g. globals()), got {type(namespace).__name__}")
        real = {name: getattr(_time, name) for name in CLOCKS}
        saved_module = {name: real[name] for name in PATCHED_IN_MODULE}
        saved_names: dict[str, object] = {}
        try:
            for name in PATCHED_IN_MODULE:
                setattr(_time, name, self.clock(name))
            if namespace is not None:
                fakes = {id(fn): self.clock(name) for name, fn in real.items()}
                for key, value in list(namespace.items()):
                    if value is _time:
                        saved_names[key] = value
                        namespace[key] = self.module()
                    elif id(value) in fakes and any(value is fn for fn in real.values()):
                        saved_names[key] = value
                        namespace[key] = fakes[id(value)]
            yield self
        finally:
            for name, fn in saved_module.items():
                setattr(_time, name, fn)
            if namespace is not None:
                namespace.update(saved_names)


__all__ = ["CLOCKS", "FakeClock"]
