"""The Java deployment (deploy/java): DJL's ONNX Runtime engine and a Spring Boot service, built and tested by Maven
against the fixture Python writes (the INT8 digits model, the test set and Python ONNX Runtime's logits).

Without Java 17 and Maven the Maven tests skip and say what to install, except under ``COURSEKIT_REQUIRE_JAVA=1``
(set by .ci/run), where they fail: CI must never skip the Java path silently.
"""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from coursekit.data import get_loaders
from coursekit.export import op_counts, ort_run, ort_session
from coursekit.serve.fixture import export_java_fixture

pytestmark = pytest.mark.slow

JAVA_DIR = Path(__file__).resolve().parents[1] / "deploy" / "java"
INSTALL = "Java 17 and Maven: apt install openjdk-17-jdk maven"
MAVEN_TIMEOUT_S = 900  # the first run downloads the dependencies (~210 MB) into ~/.m2


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("java-fixture")
    summary = export_java_fixture(out, model="lenet", fast=True)
    assert summary["model_path"] == out / "model.onnx" and summary["fixture_path"] == out / "fixture.json"
    return out


@pytest.fixture(scope="module")
def record(fixture_dir):
    return json.loads((fixture_dir / "fixture.json").read_text())


def run(command: list[str], timeout: float, cwd=None) -> subprocess.CompletedProcess:
    """``command`` with its output captured as text; the caller checks the exit status."""
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)


def java_major(java: str) -> int:
    """The major version of ``java`` (17 for "17.0.15"), from ``java -version``."""
    text = run([java, "-version"], timeout=60).stderr
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not match:
        return 0
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def require_java() -> tuple[str, str]:
    """Paths of java and mvn; skips (or fails under COURSEKIT_REQUIRE_JAVA=1) naming what to install."""
    java, mvn = shutil.which("java"), shutil.which("mvn")
    problem = None
    if java is None or mvn is None:
        problem = " and ".join(name for name, path in (("java", java), ("mvn", mvn)) if path is None) + " not found"
    elif java_major(java) < 17:
        problem = f"{java} is older than Java 17"
    if problem:
        message = f"{problem}: the Java deployment tests need {INSTALL}"
        if os.environ.get("COURSEKIT_REQUIRE_JAVA") == "1":
            pytest.fail(f"COURSEKIT_REQUIRE_JAVA=1 and {message}")
        pytest.skip(message)
    return java, mvn


def test_fixture_holds_the_test_set_and_onnx_runtimes_answers(fixture_dir, record):
    inputs = np.asarray(record["inputs"], dtype=np.float32)
    test = get_loaders("digits", fast=True).test
    x = torch.cat([b for b, _ in test]).numpy()
    y = torch.cat([t for _, t in test]).numpy()
    assert inputs.shape == (len(y), 64) and record["input_shape"] == [1, 8, 8]
    assert np.array_equal(inputs, x.reshape(len(x), -1))  # JSON round trip is exact for float32
    assert record["labels"] == y.tolist() and record["n"] == len(y)
    logits = ort_run(ort_session(fixture_dir / "model.onnx"), inputs.reshape(-1, 1, 8, 8))
    assert np.array_equal(np.asarray(record["logits"], dtype=np.float32), logits)
    assert record["classes"] == logits.argmax(1).tolist()
    assert record["accuracy"] == pytest.approx(float((logits.argmax(1) == y).mean()), abs=0)


def test_fixture_model_is_a_qdq_int8_graph_close_to_torch(fixture_dir, record):
    from coursekit.train import pretrained

    counts = op_counts(fixture_dir / "model.onnx")
    assert counts.get("QuantizeLinear", 0) >= 4 and counts.get("DequantizeLinear", 0) >= 4
    model = pretrained("lenet", "digits", fast=True, progress=False)
    with torch.no_grad():
        ref = model(torch.tensor(record["inputs"]).reshape(-1, 1, 8, 8)).numpy()
    ours = np.asarray(record["logits"], dtype=np.float32)
    assert (ref.argmax(1) == ours.argmax(1)).mean() >= 0.95  # INT8 PTQ keeps almost every top-1
    assert np.abs(ref - ours).max() < 0.25 * np.abs(ref).max()


def test_fixture_rejects_an_unknown_model(tmp_path):
    with pytest.raises(ValueError, match="model"):
        export_java_fixture(tmp_path, model="resnet50")
    with pytest.raises(ValueError, match="calibration_batches"):
        export_java_fixture(tmp_path, calibration_batches=0)


def surefire_counts() -> dict[str, tuple[int, int, int, int]]:
    """{test class: (run, failures, errors, skipped)} from Maven Surefire's reports."""
    counts = {}
    for report in (JAVA_DIR / "target" / "surefire-reports").glob("*.txt"):
        text = report.read_text()
        name = re.search(r"Test set: (\S+)", text).group(1)
        numbers = re.search(r"Tests run: (\d+), Failures: (\d+), Errors: (\d+), Skipped: (\d+)", text)
        counts[name.rsplit(".", 1)[-1]] = tuple(int(v) for v in numbers.groups())
    return counts


def test_maven_build_and_java_tests_agree_with_python_onnx_runtime(fixture_dir, record):
    java, mvn = require_java()
    reports = JAVA_DIR / "target" / "surefire-reports"
    shutil.rmtree(reports, ignore_errors=True)
    # `package` runs the JUnit tests (parity on the whole test set; the REST service over HTTP) and builds the jar
    build = run([mvn, "-B", "-q", "package", f"-Dcoursekit.fixture={fixture_dir}"], MAVEN_TIMEOUT_S, cwd=JAVA_DIR)
    assert build.returncode == 0, f"mvn package failed:\n{build.stdout[-6000:]}\n{build.stderr[-3000:]}"
    counts = surefire_counts()
    assert set(counts) == {"ParityTest", "PredictControllerTest"}, counts
    assert all(run >= 4 and failures == errors == skipped == 0 for run, failures, errors, skipped in counts.values())

    jar = str(JAVA_DIR / "target" / "coursekit-digits.jar")
    cli = run([java, "-jar", jar, "evaluate", "--fixture", str(fixture_dir), "--repeats", "1", "--warmup", "20"], 300)
    assert cli.returncode == 0, cli.stderr
    correct, n = map(int, re.search(r"^accuracy: [0-9.]+ \((\d+)/(\d+)\)$", cli.stdout, re.MULTILINE).groups())
    assert n == record["n"] and correct / n == record["accuracy"]
    assert f"same top-1 {n}/{n}," in cli.stdout
    assert re.search(r"^latency per image: p50 [0-9.]+ ms, p99 [0-9.]+ ms", cli.stdout, re.MULTILINE), cli.stdout


    missing = run([java, "-jar", jar, "evaluate", "--fixture", str(fixture_dir / "nothing-here")], 120)
    assert missing.returncode == 1 and "no fixture in" in missing.stderr and "export_java_fixture" in missing.stderr
    usage = run([java, "-jar", jar, "evaluate", "--threads", "0"], 120)
    assert usage.returncode == 2 and "--threads is 0" in usage.stderr
