"""The `coursekit` command: help everywhere, clear errors, real results (through subprocesses, as a user runs it)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SUBCOMMANDS = [["doctor"], ["bench"], ["build"], ["check"], ["course"], ["course", "init"], ["drill"],
               ["quiz"], ["quiz", "stats"], ["quiz", "export"], ["grade"]]


def coursekit(*args, timeout=600, **env):
    return subprocess.run([sys.executable, "-m", "coursekit", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env={**os.environ, **env}, check=False)


@pytest.mark.parametrize("command", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help(command):
    done = coursekit(*command, "--help")
    assert done.returncode == 0 and "usage: coursekit" in done.stdout and len(done.stdout) > 200


def test_doctor_reports_this_cpu():
    done = coursekit("doctor", "--json")
    report = json.loads(done.stdout)
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    assert ("avx512_vnni" in report["cpu"]["isa"]) == (" avx512_vnni" in flags)
    int8 = next(p for p in report["accelerated"] if p["path"] == "CPU INT8")
    assert int8["accelerated"] == bool({"avx512_vnni", "avx_vnni", "amx_int8"} & set(report["cpu"]["isa"]))
    text = coursekit("doctor").stdout
    assert "Reduced precision on this machine" in text and "CPU INT8" in text


def test_bench_errors_name_the_problem():
    done = coursekit("bench", "--suite", "nope")
    assert done.returncode == 2 and "suite='nope'" in done.stderr and "basics" in done.stderr
    if not torch.cuda.is_available():
        done = coursekit("bench", "--device", "cuda")
        assert done.returncode == 2 and "no CUDA GPU" in done.stderr and "--device cpu" in done.stderr
    done = coursekit("bench", "--threads", "0")
    assert done.returncode == 2 and "threads" in done.stderr


@pytest.mark.slow
def test_bench_basics_writes_json_with_records(tmp_path):
    out = tmp_path / "basics.json"
    done = coursekit("bench", "--suite", "basics", "--fast", "--repeats", "3", "--quiet", "--json", str(out),
                     "--plot", str(tmp_path / "basics.png"))
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["suite"] == "basics" and result["hardware"]["cpu"]["isa"] is not None
    keys = {"model", "variant", "device", "batch", "threads", "latency_ms_min", "latency_ms_median",
            "size_bytes", "accuracy"}
    assert all(keys <= set(r) for r in result["records"])
    assert {(r["model"], r["batch"]) for r in result["records"]} == {
        (m, b) for m in ("linear_heavy", "lenet_digits") for b in (1, 64)}
    sizes = {r["variant"]: r["size_bytes"] for r in result["records"] if r["model"] == "linear_heavy"}
    assert 3.8 < sizes["fp32"] / sizes["int8_dynamic"] < 4.1 and 1.9 < sizes["fp32"] / sizes["fp16"] < 2.1
    accuracy = {r["variant"]: r["accuracy"] for r in result["records"] if r["model"] == "lenet_digits"}
    assert accuracy["fp32"] > 0.9 and abs(accuracy["int8_dynamic"] - accuracy["fp32"]) < 0.02
    assert (tmp_path / "basics.png").stat().st_size > 1000


def test_check_errors_and_build_check(tmp_path):
    done = coursekit("check", str(tmp_path / "missing.ipynb"))
    assert done.returncode == 2 and "does not exist" in done.stderr
    stray = tmp_path / "notes.ipynb"
    stray.write_text("{}")
    done = coursekit("check", str(stray))
    assert done.returncode == 2 and "not a course notebook" in done.stderr and "00_measuring" in done.stderr
    done = coursekit("build", "--check")
    assert done.returncode == 0, done.stdout + done.stderr


def test_course_init_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    done = coursekit("course", "init", str(tmp_path))
    assert done.returncode == 2 and "not empty" in done.stderr
    assert (tmp_path / "mine.txt").read_text() == "keep me"
    target = tmp_path / "course"
    done = coursekit("course", "init", str(target))
    assert done.returncode == 0 and (target / "source" / "00_measuring" / "00_measuring.ipynb").exists()
    assert "nbgrader generate_assignment" in done.stdout


def test_ctrl_c_exits_130_with_one_line(tmp_path):
    import signal
    import time

    db = tmp_path / "p.sqlite"
    proc = subprocess.Popen([sys.executable, "-m", "coursekit", "drill", "--db", str(db), "--n", "2"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 60
    while not db.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    time.sleep(0.5)  # the drill is now waiting for the first answer
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert stderr.strip().splitlines() == ["coursekit drill: interrupted; every answer given so far is saved"]
