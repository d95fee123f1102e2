"""JupyterHub for a coursekit class: nbgrader's exchange, a course service running the formgrader, groups and roles.

Settings come from the environment (one place to read them: ``course_settings``), so the same file serves The
Littlest JupyterHub, a plain server, and the end-to-end test (tests/test_hub.py), which adds only a test
authenticator and spawner on top with ``load_subconfig``:

    COURSEKIT_COURSE_DIR   the course made by `coursekit course init` (gradebook, source/, submitted/ ...)
    COURSEKIT_EXCHANGE     nbgrader's exchange folder, shared by every user's server (default /srv/nbgrader/exchange)
    COURSEKIT_INSTRUCTORS  comma-separated hub user names of the graders (group formgrade-coursekit)
    COURSEKIT_STUDENTS     comma-separated hub user names of the students (group nbgrader-coursekit)
    COURSEKIT_SERVICE_PORT the loopback port of the course service (default 9999)
    COURSEKIT_HUB_PORT     the port users open (the proxy's public port; default 8000)
    COURSEKIT_IDENTITY_SECRET_FILE (or COURSEKIT_IDENTITY_SECRET) the secret shared by the hub and the graders
                           only: each student's server gets its user name and HMAC(secret, user), its submissions
                           carry a signed coursekit_identity.json, and `coursekit course autograde` (given the same
                           secret) rejects one filed under another student's id (coursekit/grading/identity.py)

A port that another program already listens on stops the hub with a message naming it (configurable-http-proxy
would otherwise start beside that program, and requests would reach either).

What a real set-up needs, each found in a run of the whole cycle (see README.md beside this file):

* per-student identity: with one operating-system user for everybody, nbgrader would submit every notebook as
  that user; the pre-spawn hook gives each server an nbgrader configuration whose student id is the hub user,
  and (with an identity secret) a key that proves it, since a student can change that id in their own config;
* the formgrader runs as a hub *service* (``/services/coursekit/formgrader``); only the grader group's role has the
  ``access:services!service=coursekit`` scope, so a student who opens it is refused by the hub;
* nbgrader runs ``alembic`` from PATH: this interpreter's bin folder is put first on every server's PATH.
"""
import os
import socket
import sys
from pathlib import Path

from coursekit.grading.identity import KEY_ENV, USER_ENV, load_secret, user_key

COURSE_ID = "coursekit"  # coursekit.grading.config.COURSE_ID (literal: importing it would load the grading config)
HERE = Path(__file__).resolve().parent
BIN = str(Path(sys.executable).parent)


def course_settings(env=os.environ) -> dict:
    """The deployment's settings from the environment; a missing course folder is named with what to do."""
    course = env.get("COURSEKIT_COURSE_DIR", "")
    if not course or not Path(course, "nbgrader_config.py").is_file():
        raise SystemExit(f"COURSEKIT_COURSE_DIR={course!r} is not a course: create one with "
                         "`coursekit course init DIR` and set COURSEKIT_COURSE_DIR=DIR")
    names = lambda key: [n.strip() for n in env.get(key, "").split(",") if n.strip()]
    return {"course": str(Path(course).resolve()), "exchange": env.get("COURSEKIT_EXCHANGE", "/srv/nbgrader/exchange"),
            "instructors": names("COURSEKIT_INSTRUCTORS"), "students": names("COURSEKIT_STUDENTS"),
            "service_port": int(env.get("COURSEKIT_SERVICE_PORT", "9999")),
            "hub_port": int(env.get("COURSEKIT_HUB_PORT", "8000"))}


def port_in_use(port: int) -> bool:
    """Something listens on ``port`` (loopback), or the port cannot be bound on all interfaces."""
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", port)) == 0:
            return True
    with socket.socket() as probe:
        try:
            probe.bind(("", port))
        except OSError:
            return True
    return False


S = course_settings()
for _name, _port in (("COURSEKIT_HUB_PORT", S["hub_port"]), ("COURSEKIT_SERVICE_PORT", S["service_port"])):
    if port_in_use(_port):
        raise SystemExit(f"port {_port} ({_name}) is in use by another program: stop it, or set {_name} to a free "
                         "port; the hub was not started")
Path(S["exchange"]).mkdir(parents=True, exist_ok=True)
os.chmod(S["exchange"], 0o777)  # nbgrader's exchange: everybody writes inbound/, reads outbound/
IDENTITY_SECRET = load_secret()  # stays in the hub: servers get only their own user's key
PATH = BIN + os.pathsep + os.environ.get("PATH", "")
# Every server reads this nbgrader configuration (exchange, course id, student id from JUPYTERHUB_USER).
USER_CONFIG = HERE / "user_config"

c = get_config()  # noqa: F821 - provided by JupyterHub
c.JupyterHub.port = S["hub_port"]
c.JupyterHub.load_groups = {
    f"formgrade-{COURSE_ID}": {"users": S["instructors"]},
    f"nbgrader-{COURSE_ID}": {"users": S["students"]},
}
c.Authenticator.allowed_users = set(S["instructors"] + S["students"])
c.Authenticator.admin_users = set()
c.JupyterHub.load_roles = [
    {"name": "grader", "description": "open the course's formgrader", "groups": [f"formgrade-{COURSE_ID}"],
     "scopes": [f"access:services!service={COURSE_ID}", "read:users:groups", "list:users", "read:groups"]},
    {"name": "student", "description": "use their own server (the default user role)", "groups": [f"nbgrader-{COURSE_ID}"],
     "scopes": ["self"]},
    # the course service adds and lists students for the formgrader (nbgrader's JupyterHub auth plugin)
    {"name": f"{COURSE_ID}-service", "services": [COURSE_ID],
     "scopes": ["read:users", "list:users", "read:groups", "list:groups", f"groups!group=nbgrader-{COURSE_ID}"]},
]
c.JupyterHub.services = [{
    "name": COURSE_ID,
    "url": f"http://127.0.0.1:{S['service_port']}",
    "command": [os.path.join(BIN, "jupyterhub-singleuser"), f"--ServerApp.root_dir={S['course']}",
                "--ServerApp.default_url=/formgrader"],
    "cwd": S["course"],
    "environment": {"PATH": PATH, "JUPYTER_CONFIG_PATH": str(USER_CONFIG), "COURSEKIT_EXCHANGE": S["exchange"],
                    "NBGRADER_ROLE": "instructor"},
    "oauth_no_confirm": True,
}]


def pre_spawn_hook(spawner):
    """Per-student identity and environment for each single-user server."""
    spawner.environment.update({
        "PATH": PATH, "JUPYTER_CONFIG_PATH": str(USER_CONFIG), "COURSEKIT_EXCHANGE": S["exchange"],
        "NBGRADER_STUDENT_ID": spawner.user.name,  # read by user_config/nbgrader_config.py
        "COURSEKIT_FAST": os.environ.get("COURSEKIT_FAST", ""),
    })
    if IDENTITY_SECRET:  # read by coursekit.grading.identity.IdentitySubmit (user_config/nbgrader_config.py)
        spawner.environment.update({USER_ENV: spawner.user.name, KEY_ENV: user_key(IDENTITY_SECRET, spawner.user.name)})


c.Spawner.pre_spawn_hook = pre_spawn_hook
c.Spawner.cmd = [os.path.join(BIN, "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
