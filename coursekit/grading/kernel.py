"""One fresh IPython kernel that runs a notebook's cells for the sealed grader, cell by cell, with a time limit.

We drive the kernel directly through jupyter_client (not nbclient) because grading must survive what a learner
cell can do to a kernel:

* a cell that runs too long is interrupted (SIGINT to the kernel's process group) and the next cells still run;
  a cell that ignores the interrupt (``signal.signal(SIGINT, SIG_IGN)``) leaves the kernel *stuck*: it is killed
  and the remaining cells are reported as not run;
* a kernel that exits (``os._exit``, a crash, out of memory) is reported as *dead* in the cell that killed it;
* the kernel runs this interpreter (``sys.executable``), in its own session (a Ctrl-C in the terminal reaches only
  the grader, which then kills the kernel), with its stdout/stderr file descriptors sent to /dev/null, a fresh
  ``IPYTHONDIR`` (no learner startup files or history) and a temporary working directory.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from queue import Empty

from jupyter_client import AsyncKernelManager
from jupyter_client.kernelspec import KernelSpec, KernelSpecManager

# How long an interrupted cell may take to stop before the kernel counts as stuck, and how long a kernel may
# take to start (cold imports on a loaded machine).
INTERRUPT_GRACE_S = 10.0
STARTUP_TIMEOUT_S = 120.0
# Output kept per cell: enough for any answer line, bounded against a cell that prints without end.
MAX_STDOUT_CHARS = 64 * 1024 * 1024

_live_lock = threading.Lock()
_live_groups: set[int] = set()


def kill_all_kernels() -> None:
    """Kill every grading kernel this process started and has not stopped yet (used on Ctrl-C)."""
    with _live_lock:
        groups = list(_live_groups)
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class _ThisPython(KernelSpecManager):
    """Every kernel name resolves to ipykernel on the grader's own interpreter (coursekit must import there)."""

    def get_kernel_spec(self, kernel_name):
        return KernelSpec(argv=[sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                          display_name="coursekit sealed grader", language="python", metadata={})


@dataclass
class CellRun:
    """What one cell did: ``status`` is ok, error, timeout (interrupted), dead (the kernel exited), stuck (did
    not stop when interrupted: the kernel was killed) or skipped (not run)."""

    status: str
    stdout: str = ""
    ename: str | None = None
    evalue: str | None = None
    seconds: float = 0.0


class Kernel:
    """``async with Kernel(env, cwd) as k: run = await k.run(source, timeout)``."""

    def __init__(self, env: dict[str, str], cwd: str):
        self.env, self.cwd = env, cwd
        self.km: AsyncKernelManager | None = None
        self.kc = None
        self.pgid: int | None = None
        self.alive = False

    async def __aenter__(self) -> Kernel:  # noqa: PYI034
        self.km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=_ThisPython())
        await self.km.start_kernel(env=self.env, cwd=self.cwd, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                   extra_arguments=["--HistoryManager.hist_file=:memory:"])
        self.pgid = getattr(self.km.provisioner, "pgid", None)
        if self.pgid:
            with _live_lock:
                _live_groups.add(self.pgid)
        self.kc = self.km.client()
        self.kc.start_channels()
        try:
            await self.kc.wait_for_ready(timeout=STARTUP_TIMEOUT_S)
        except BaseException:
            await self.close()
            raise
        self.alive = True
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
        if self.km is not None:
            with contextlib.suppress(Exception):  # already dead, or not answering: killed below
                await asyncio.wait_for(self.km.shutdown_kernel(now=True), 15)
        self._kill_group()
        self.alive = False

    def _kill_group(self) -> None:
        if self.pgid:
            try:
                os.killpg(self.pgid, signal.SIGKILL)  # the kernel and anything a learner cell started
            except (ProcessLookupError, PermissionError):
                pass
            with _live_lock:
                _live_groups.discard(self.pgid)

    async def _is_alive(self) -> bool:
        return bool(await self.km.is_alive())

    async def run(self, source: str, timeout: float, keep_stdout: bool = True) -> CellRun:
        """Execute ``source``; never raises for anything the code does."""
        if not self.alive:
            return CellRun("skipped")
        start = time.monotonic()
        msg_id = self.kc.execute(source, store_history=True, allow_stdin=False, stop_on_error=False)
        run = CellRun("ok")
        chunks: list[str] = []
        size = 0
        deadline = start + timeout
        interrupted_at: float | None = None
        while True:
            now = time.monotonic()
            if interrupted_at is None and now >= deadline:
                interrupted_at = now
                run.status = "timeout"
                with contextlib.suppress(Exception):  # a kernel we cannot interrupt is handled as stuck
                    await self.km.interrupt_kernel()
            if interrupted_at is not None and now >= interrupted_at + INTERRUPT_GRACE_S:
                run.status = "stuck"
                await self.close()
                break
            limit = (interrupted_at + INTERRUPT_GRACE_S if interrupted_at is not None else deadline) - now
            try:
                msg = await self.kc.get_iopub_msg(timeout=max(0.05, min(1.0, limit)))
            except Empty:
                if not await self._is_alive():
                    run.status = "dead"
                    await self.close()
                    break
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status" and content.get("execution_state") == "idle":
                break
            if kind == "stream" and content.get("name") == "stdout" and keep_stdout and size < MAX_STDOUT_CHARS:
                chunks.append(content.get("text", ""))
                size += len(chunks[-1])
            elif kind == "error":
                run.ename, run.evalue = content.get("ename"), content.get("evalue")
                if run.status == "ok":
                    run.status = "error"
        run.stdout = "".join(chunks)
        run.seconds = time.monotonic() - start
        return run
