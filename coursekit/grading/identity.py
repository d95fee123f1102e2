"""Who submitted a notebook, proved to the grader: a keyed MAC (HMAC-SHA256, RFC 2104) written beside each
submission by the nbgrader exchange, checked by ``coursekit course autograde``.

With one operating-system user for every student, nbgrader's exchange cannot tell who wrote a submission: a
student can set any ``CourseDirectory.student_id`` in their own nbgrader configuration and submit as someone else.
The hub knows who is logged in, so (deploy/jupyterhub/jupyterhub_config.py):

* the hub and the grader share a secret (``COURSEKIT_IDENTITY_SECRET``, or a file only they read);
* the hub gives each student's server its user name and a per-user key ``k_u = HMAC(secret, user)``
  (:func:`user_key`); a student only ever sees their own key, and cannot derive another student's;
* :class:`IdentitySubmit` (nbgrader's default ``ExchangeSubmit`` plus one file) writes ``coursekit_identity.json``
  ``{"user": u, "mac": HMAC(k_u, course | assignment | u | notebooks)}`` into every copy it makes; the MAC binds the
  submitted notebooks' SHA-256, so the file another student can read in the exchange is useless for their own work;
* ``nbgrader collect`` copies the whole inbound folder to ``submitted/<student id>/<assignment>/``, and
  :func:`verify` recomputes the MAC for the id the submission is filed under.

The check is as strong as the isolation between students' servers: where a student can read another server's
environment (one OS user *and* a terminal), it stops a changed student id, not a determined attacker.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

IDENTITY_FILE = "coursekit_identity.json"
SECRET_ENV, SECRET_FILE_ENV = "COURSEKIT_IDENTITY_SECRET", "COURSEKIT_IDENTITY_SECRET_FILE"
USER_ENV, KEY_ENV = "COURSEKIT_IDENTITY_USER", "COURSEKIT_IDENTITY_KEY"


def _bytes(name: str, value) -> bytes:
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode()
    else:
        raise TypeError(f"{name} must be str or bytes, got {type(value).__name__}")
    if not data:
        raise ValueError(f"{name} must not be empty")
    return data


def user_key(secret, user: str) -> str:
    """``HMAC-SHA256(secret, user)`` in hex: the key the hub gives ``user``'s server (and only theirs)."""
    return hmac.new(_bytes("secret", secret), _bytes("user", user), hashlib.sha256).hexdigest()


def _notebooks(folder: Path) -> str:
    return "\n".join(f"{p.name} {hashlib.sha256(p.read_bytes()).hexdigest()}"
                     for p in sorted(Path(folder).glob("*.ipynb")) if p.is_file())


def submission_mac(key: str, course: str, assignment: str, user: str, folder) -> str:
    """HMAC-SHA256 under ``key`` of the course, assignment, user and every top-level notebook's SHA-256 in ``folder``."""
    message = "\n".join([course, assignment, user, _notebooks(Path(folder))])
    return hmac.new(_bytes("key", key), message.encode(), hashlib.sha256).hexdigest()


def sign(folder, course: str, assignment: str, user: str, key: str) -> Path:
    """Write ``folder/coursekit_identity.json`` for ``user`` (replacing any file of that name the student put there)."""
    path = Path(folder) / IDENTITY_FILE
    if path.exists():
        path.unlink()
    path.write_text(json.dumps({"user": user, "mac": submission_mac(key, course, assignment, user, folder)}))
    return path


def verify(folder, course: str, assignment: str, student: str, secret) -> str | None:
    """``None`` when ``folder`` (``submitted/<student>/<assignment>``) carries a valid identity for ``student``;
    otherwise the reason, naming both ids when the submission came from another student's server."""
    path = Path(folder) / IDENTITY_FILE
    try:
        claim = json.loads(path.read_text())
        user, mac = claim["user"], claim["mac"]
        if not isinstance(user, str) or not isinstance(mac, str):
            raise TypeError
    except FileNotFoundError:
        return (f"no {IDENTITY_FILE} in the submission filed under {student!r}: it was not submitted through the "
                "course hub's exchange (or was altered); ask the student to submit again from their own server")
    except (ValueError, KeyError, TypeError):
        return f"{IDENTITY_FILE} of the submission filed under {student!r} is unreadable (altered)"
    if user != student:
        return (f"submitted from {user}'s server under {student}'s id: not accepted (a student can only submit "
                "as themselves)")
    expected = submission_mac(user_key(secret, student), course, assignment, student, folder)
    if not hmac.compare_digest(expected, mac):
        return (f"the identity of the submission filed under {student!r} does not verify: it was forged, or the "
                "notebook was changed after submission")
    return None


def load_secret(path=None, env=os.environ) -> bytes | None:
    """The shared secret: the file ``path``, else ``$COURSEKIT_IDENTITY_SECRET_FILE``, else
    ``$COURSEKIT_IDENTITY_SECRET``; ``None`` when none is configured (identities are then not checked)."""
    path = path or env.get(SECRET_FILE_ENV)
    if path:
        try:
            data = Path(path).read_bytes().strip()
        except OSError as exc:
            raise ValueError(f"--identity-secret-file {path}: cannot read it ({exc.strerror})") from None
        if not data:
            raise ValueError(f"--identity-secret-file {path} is empty: put the hub's identity secret in it")
        return data
    value = env.get(SECRET_ENV, "").strip()
    return value.encode() if value else None


def _submit_class():
    from nbgrader.exchange.default.submit import ExchangeSubmit

    class IdentitySubmit(ExchangeSubmit):
        """nbgrader's default submit, plus ``coursekit_identity.json`` signed with this server's key (from the hub)
        in every copy (the exchange's inbound folder and the student's cache)."""

        def do_copy(self, src, dest, log=None):
            super().do_copy(src, dest, log=log)
            user, key = os.environ.get(USER_ENV), os.environ.get(KEY_ENV)
            if user and key:
                sign(dest, self.coursedir.course_id, self.coursedir.assignment_id, user, key)
            else:
                self.log.warning(f"{USER_ENV}/{KEY_ENV} are not set (server not started by the course hub): "
                                 "the submission carries no identity, and a grader who checks identities rejects it")

    return IdentitySubmit


def __getattr__(name: str):  # nbgrader is imported only by servers that submit
    if name == "IdentitySubmit":
        cls = globals()["IdentitySubmit"] = _submit_class()
        return cls
    raise AttributeError(name)


__all__ = ["IDENTITY_FILE", "load_secret", "sign", "submission_mac", "user_key", "verify"]  # and IdentitySubmit (lazy: nbgrader)
