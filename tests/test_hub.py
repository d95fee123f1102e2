"""The class-scale workflow end to end: JupyterHub (deploy/jupyterhub/jupyterhub_config.py) on loopback with
configurable-http-proxy from npm (package-lock.json; `npm ci`), nbgrader's exchange and the course service.

Only the authenticator (DummyAuthenticator) and the spawner (SimpleLocalProcessSpawner) are test choices. An
instructor and four students get servers from the hub; chapter 00 is released; each student fetches and submits
through their own server's nbgrader API (blank, partial, full, and an attack that appends to IPython's
``input_transformers_cleanup`` so no later cell, hidden tests included, would run in plain nbgrader); the
instructor collects, runs the sealed ``coursekit course autograde``, releases feedback and exports grades. A fifth
student then sets her nbgrader student id to another student's and submits for her: the hub-signed identity
(coursekit.grading.identity) names both, the submission is rejected, and the other student's grade stays.

Expected grades come from the instructor notebook's points (chapter 00: 2+3+2+3+2+7 = 19; the partial student
answers Exercise 1 only, worth 2). Afterwards no process the hub started is alive and no port it used listens.
"""
import csv
import html
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import psutil
import pytest
import requests

from coursekit.grading import init_course

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "jupyterhub"
CHP = ROOT / "node_modules" / ".bin" / "configurable-http-proxy"
BIN = Path(sys.executable).parent
A = "00_measuring"
COURSE_ID = "coursekit"
INSTRUCTOR, STUDENTS = "grace", ("alice", "bob", "carol", "mallory")
INTRUDER = "eve"  # a student who sets her nbgrader student id to carol's and submits for her
IDENTITY_SECRET = secrets.token_hex(32)  # shared by the hub and the grader (coursekit.grading.identity)
ATTACK = "get_ipython().input_transformers_cleanup.append(lambda lines: ['pass\\n'])"
pytestmark = pytest.mark.slow

TEST_CONFIG = '''import os
c = get_config()  # noqa: F821
load_subconfig(os.environ["COURSEKIT_DEPLOY_CONFIG"])  # noqa: F821
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = os.environ["COURSEKIT_TEST_HOMES"] + "/{username}"
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ["COURSEKIT_TEST_HUB_PORT"])
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:" + os.environ["COURSEKIT_TEST_PROXY_API_PORT"]
c.ConfigurableHTTPProxy.command = [os.environ["COURSEKIT_TEST_CHP"]]
c.JupyterHub.db_url = "sqlite:///" + os.environ["COURSEKIT_TEST_STATE"] + "/hub.sqlite"
c.JupyterHub.cookie_secret_file = os.environ["COURSEKIT_TEST_STATE"] + "/cookie_secret"
c.JupyterHub.services.append({"name": "e2e", "api_token": os.environ["COURSEKIT_TEST_TOKEN"]})
c.JupyterHub.load_roles.append({"name": "e2e", "services": ["e2e"],
                                "scopes": ["admin:users", "admin:servers", "tokens", "list:users", "read:groups"]})
deploy_hook = c.Spawner.pre_spawn_hook

def hook(spawner):
    os.makedirs(spawner.home_dir, exist_ok=True)
    deploy_hook(spawner)

c.Spawner.pre_spawn_hook = hook
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180
if os.geteuid() == 0:  # CI runs as root; a real hub runs servers as their own users
    c.Spawner.args = ["--allow-root"]
    c.JupyterHub.services[0]["command"].append("--allow-root")
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def run(cwd: Path, env: dict, *args: str) -> str:
    done = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{args}: {done.stdout[-1500:]}\n{done.stderr[-3000:]}"
    return done.stdout + done.stderr


class Hub:
    def __init__(self, tmp: Path, course: Path, exchange: Path, ports: dict | None = None):
        assert CHP.exists(), f"{CHP} is missing: run `npm ci` in {ROOT} (.ci/run does)"
        self.tmp, self.token = tmp, secrets.token_hex(16)
        self.ports = {k: free_port() for k in ("proxy", "hub", "api", "service")} | (ports or {})
        (tmp / "state").mkdir()
        (tmp / "config.py").write_text(TEST_CONFIG)
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
                    "COURSEKIT_DEPLOY_CONFIG": str(DEPLOY / "jupyterhub_config.py"),
                    "COURSEKIT_COURSE_DIR": str(course), "COURSEKIT_EXCHANGE": str(exchange),
                    "COURSEKIT_INSTRUCTORS": INSTRUCTOR, "COURSEKIT_STUDENTS": ",".join((*STUDENTS, INTRUDER)),
                    "COURSEKIT_SERVICE_PORT": str(self.ports["service"]), "COURSEKIT_TEST_HOMES": str(tmp / "home"),
                    "COURSEKIT_HUB_PORT": str(self.ports["proxy"]), "COURSEKIT_TEST_HUB_PORT": str(self.ports["hub"]),
                    "COURSEKIT_TEST_PROXY_API_PORT": str(self.ports["api"]), "COURSEKIT_TEST_CHP": str(CHP),
                    "COURSEKIT_TEST_STATE": str(tmp / "state"), "COURSEKIT_TEST_TOKEN": self.token,
                    "COURSEKIT_FAST": "1", "COURSEKIT_IDENTITY_SECRET": IDENTITY_SECRET}
        self.url = f"http://127.0.0.1:{self.ports['proxy']}"
        self.log = (tmp / "hub.log").open("w")
        saved = signal.getsignal(signal.SIGINT)  # an ignored SIGINT (a background CI shell) would be inherited,
        if saved is signal.SIG_IGN:  # and the hub relies on it to stop its servers
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        try:
            self.proc = subprocess.Popen(
                [str(BIN / "jupyterhub"), "-f", str(tmp / "config.py")], cwd=tmp / "state", env=self.env,
                stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            signal.signal(signal.SIGINT, saved)
        try:
            self.wait(lambda: self.api("get", "/users", timeout=5).status_code == 200, 120, "the hub to answer")
        except BaseException:
            self.stop()
            raise

    def logs(self) -> str:
        self.log.flush()
        return (self.tmp / "hub.log").read_text()[-4000:]

    def wait(self, ready, seconds: float, what: str):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the hub exited ({self.proc.returncode}):\n{self.logs()}")
            try:
                if ready():
                    return
            except requests.RequestException:
                pass
            time.sleep(0.5)
        pytest.fail(f"timed out waiting for {what}:\n{self.logs()}")

    def api(self, method: str, path: str, token: str | None = None, **kw) -> requests.Response:
        return requests.request(method, f"{self.url}/hub/api{path}", timeout=kw.pop("timeout", 60),
                                headers={"Authorization": f"token {token or self.token}"}, **kw)

    def spawn(self, user: str) -> str:
        """Start ``user``'s server; return a token of theirs."""
        r = self.api("post", f"/users/{user}/server")
        assert r.status_code in (201, 202), (r.status_code, r.text)
        token = self.api("post", f"/users/{user}/tokens", json={"note": "e2e"}).json()["token"]
        return token

    def ready(self, user: str) -> bool:
        return bool(self.api("get", f"/users/{user}").json().get("servers", {}).get("", {}).get("ready"))

    def server(self, user: str, token: str, method: str, path: str, **kw) -> requests.Response:
        return requests.request(method, f"{self.url}/user/{user}{path}", timeout=300,
                                headers={"Authorization": f"token {token}"}, **kw)

    def stop(self):
        if self.log.closed:
            return
        self.proc.send_signal(signal.SIGTERM)  # the hub stops the servers, the service and the proxy it started
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            raise
        finally:
            self.log.close()


def answers_from(source_nb, ids) -> dict:
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in source_nb.cells
            if c.metadata.get("nbgrader", {}).get("solution") and c.metadata["nbgrader"]["grade_id"] in ids}


def test_hub_release_submit_autograde_feedback_export(tmp_path):
    course, exchange = tmp_path / "course", tmp_path / "exchange"
    init_course(course)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "COURSEKIT_EXCHANGE": str(exchange),
           "JUPYTER_CONFIG_PATH": str(DEPLOY / "user_config"), "COURSEKIT_IDENTITY_SECRET": IDENTITY_SECRET}
    exchange.mkdir()
    os.chmod(exchange, 0o777)
    run(course, env, str(BIN / "nbgrader"), "generate_assignment", A, "--force")
    run(course, env, str(BIN / "nbgrader"), "release_assignment", A, "--force")

    hub = Hub(tmp_path, course, exchange)
    started: list[psutil.Process] = []
    ports = set(hub.ports.values())
    try:
        tokens = {user: hub.spawn(user) for user in (INSTRUCTOR, *STUDENTS, INTRUDER)}
        for user in tokens:
            hub.wait(lambda u=user: hub.ready(u), 240, f"{user}'s server")
            url = hub.api("get", f"/users/{user}").json()["servers"][""]["url"]
            assert url == f"/user/{user}/"
        hub.wait(lambda: listening(hub.ports["service"]), 120, "the course service")
        started = [psutil.Process(hub.proc.pid), *psutil.Process(hub.proc.pid).children(recursive=True)]
        ports |= {c.laddr.port for p in started for c in p.net_connections("inet") if c.status == "LISTEN"}

        # the formgrader: open to the grader group, refused to a student
        grader = requests.get(f"{hub.url}/services/{COURSE_ID}/formgrader", timeout=120,
                              headers={"Authorization": f"token {tokens[INSTRUCTOR]}"})
        assert grader.status_code == 200 and "formgrade" in grader.text.lower(), grader.status_code
        assert "frame-ancestors 'none'" in grader.headers.get("Content-Security-Policy", "")  # own tab, never framed
        student = requests.get(f"{hub.url}/services/{COURSE_ID}/formgrader", timeout=120, allow_redirects=False,
                               headers={"Authorization": f"token {tokens['alice']}"})
        assert student.status_code == 403, student.status_code

        source = nbformat.read(course / "source" / A / f"{A}.ipynb", as_version=4)
        all_ids = {c.metadata["nbgrader"]["grade_id"] for c in source.cells
                   if c.metadata.get("nbgrader", {}).get("solution")}
        plans = {"alice": {}, "bob": answers_from(source, {"ex1_memory"}), "carol": answers_from(source, all_ids),
                 "mallory": "attack"}
        for user, plan in plans.items():
            r = hub.server(user, tokens[user], "post", "/assignments/fetch",
                           data={"course_id": COURSE_ID, "assignment_id": A})
            assert r.status_code == 200 and A in r.text, (user, r.status_code, r.text[:500])
            path = f"/api/contents/{A}/{A}.ipynb"
            nb = hub.server(user, tokens[user], "get", path).json()["content"]
            if plan == "attack":
                nb["cells"].insert(1, nbformat.v4.new_code_cell(ATTACK))
            for cell in nb["cells"]:
                gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
                if plan != "attack" and gid in plan:
                    cell["source"] = plan[gid]
            put = hub.server(user, tokens[user], "put", path, json={"type": "notebook", "content": nb})
            assert put.status_code == 200, put.text
            r = hub.server(user, tokens[user], "post", "/assignments/submit",
                           data={"course_id": COURSE_ID, "assignment_id": A})
            assert r.status_code == 200 and '"success": false' not in r.text, (user, r.text[:1000])
        inbound = sorted(p.name.split("+")[0] for p in (exchange / COURSE_ID / "inbound").iterdir())
        assert inbound == sorted(STUDENTS)  # one submission each, under each student's own id

        run(course, env, str(BIN / "nbgrader"), "collect", A)
        out = run(course, env, str(BIN / "coursekit"), "course", "autograde", A, "--course", str(course),
                  "--workers", "2")
        assert "rejected 0" in out, out
        run(course, env, str(BIN / "nbgrader"), "release_feedback", A)
        feedback = {}
        for user in STUDENTS:
            r = hub.server(user, tokens[user], "post", "/assignments/fetch_feedback",
                           data={"course_id": COURSE_ID, "assignment_id": A})
            assert r.status_code == 200, r.text[:500]
            pages = list((tmp_path / "home" / user / A / "feedback").glob("*/*.html"))
            assert len(pages) == 1, (user, pages)
            feedback[user] = html.unescape(re.sub(r"<[^>]+>", " ", pages[0].read_text()))
        hidden = [line.strip() for c in source.cells if "### BEGIN HIDDEN TESTS" in c.source
                  for line in c.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0].splitlines()
                  if len(line.strip()) >= 12]
        assert hidden
        for user, text in feedback.items():
            assert not [line for line in hidden if line in text], user
            assert "BEGIN HIDDEN" not in text

        # eve sets her nbgrader student id to carol's in her own folder and submits a blank notebook for carol:
        # nbgrader files it under carol, the hub's identity says it came from eve's server, carol's grade stays
        r = hub.server(INTRUDER, tokens[INTRUDER], "post", "/assignments/fetch",
                       data={"course_id": COURSE_ID, "assignment_id": A})
        assert r.status_code == 200 and A in r.text, r.text[:500]
        config = "c = get_config()\nc.CourseDirectory.student_id = 'carol'\n"
        put = hub.server(INTRUDER, tokens[INTRUDER], "put", "/api/contents/nbgrader_config.py",
                         json={"type": "file", "format": "text", "content": config})
        assert put.status_code in (200, 201), put.text
        r = hub.server(INTRUDER, tokens[INTRUDER], "post", "/assignments/submit",
                       data={"course_id": COURSE_ID, "assignment_id": A})
        assert r.status_code == 200 and '"success": false' not in r.text, r.text[:1000]
        assert len([p for p in (exchange / COURSE_ID / "inbound").iterdir() if p.name.startswith("carol+")]) == 2
        run(course, env, str(BIN / "nbgrader"), "collect", "--update", A)
        done = subprocess.run([str(BIN / "coursekit"), "course", "autograde", A, "--course", str(course), "--student",
                               "carol"], cwd=course, env=env, capture_output=True, text=True, timeout=600, check=False)
        out = done.stdout + done.stderr
        assert done.returncode == 1 and "REJECTED, gradebook unchanged: submitted from eve's server under carol's id" in out, out

        run(course, env, str(BIN / "nbgrader"), "export")
        with open(course / "grades.csv", newline="") as f:
            grades = {r["student_id"]: (float(r["score"]), float(r["max_score"])) for r in csv.DictReader(f)}
        assert grades == {"alice": (0.0, 19.0), "bob": (2.0, 19.0), "carol": (19.0, 19.0), "mallory": (0.0, 19.0)}
        assert "19 / 19" in feedback["carol"] and "0 / 19" in feedback["mallory"]
    finally:
        hub.stop()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                                                   for p in started) or any(listening(p) for p in ports)):
            time.sleep(0.5)
        alive = [(p.pid, p.name()) for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        for p in started:  # never leave them behind (the asserts below still fail)
            if p.is_running():
                p.kill()
    assert not alive, f"still running after the hub stopped: {alive}"
    assert not [p for p in ports if listening(p)], "ports still listening"


def test_a_hub_port_in_use_stops_the_hub_with_a_message(tmp_path):
    course, exchange = tmp_path / "course", tmp_path / "exchange"
    init_course(course)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(pytest.fail.Exception, match=r"the hub exited \(1\)") as failure:
            Hub(tmp_path, course, exchange, ports={"proxy": port})
    message = f"port {port} (COURSEKIT_HUB_PORT) is in use by another program: stop it, or set COURSEKIT_HUB_PORT"
    assert message in str(failure.value)
