"""coursekit.grading.identity: the per-user key is HMAC-SHA256 (checked against RFC 4231's published test vectors),
and a submission verifies only for the student whose server signed it, with the notebooks it was signed with."""
import json

import pytest

from coursekit.grading.identity import IDENTITY_FILE, load_secret, sign, submission_mac, user_key, verify

SECRET = b"hub-and-grader-only"


def test_user_key_is_hmac_sha256_rfc4231():
    # RFC 4231, test cases 1 and 2 (key, data) -> HMAC-SHA256
    assert user_key(b"\x0b" * 20, "Hi There") == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    assert user_key("Jefe", "what do ya want for nothing?") == \
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert user_key(SECRET, "alice") != user_key(SECRET, "bob")


def folder(tmp_path, name, text):
    path = tmp_path / name
    path.mkdir()
    (path / "99_demo.ipynb").write_text(text)
    return path


def test_a_submission_verifies_only_for_its_own_student(tmp_path):
    alice = folder(tmp_path, "alice", '{"alice": 1}')
    sign(alice, "coursekit", "99_demo", "alice", user_key(SECRET, "alice"))
    assert verify(alice, "coursekit", "99_demo", "alice", SECRET) is None
    assert json.loads((alice / IDENTITY_FILE).read_text())["user"] == "alice"
    # the same submission filed under bob's id (alice changed her nbgrader student id)
    assert verify(alice, "coursekit", "99_demo", "bob", SECRET) == \
        "submitted from alice's server under bob's id: not accepted (a student can only submit as themselves)"
    # another assignment, or another grader's secret: no
    assert "does not verify" in verify(alice, "coursekit", "98_other", "alice", SECRET)
    assert "does not verify" in verify(alice, "coursekit", "99_demo", "alice", b"another secret")
    # the notebook changed after it was signed
    (alice / "99_demo.ipynb").write_text('{"alice": 2}')
    assert "does not verify" in verify(alice, "coursekit", "99_demo", "alice", SECRET)


def test_a_forged_or_replayed_identity_does_not_verify(tmp_path):
    bob = folder(tmp_path, "bob", '{"bob": 1}')
    sign(bob, "coursekit", "99_demo", "bob", user_key(SECRET, "bob"))
    # mallory claims to be bob, signing with her own key
    forged = folder(tmp_path, "forged", '{"mallory": 1}')
    sign(forged, "coursekit", "99_demo", "bob", user_key(SECRET, "mallory"))
    assert "does not verify" in verify(forged, "coursekit", "99_demo", "bob", SECRET)
    # mallory copies bob's identity file (readable in the exchange) beside her own notebook
    replay = folder(tmp_path, "replay", '{"mallory": 1}')
    (replay / IDENTITY_FILE).write_text((bob / IDENTITY_FILE).read_text())
    assert "does not verify" in verify(replay, "coursekit", "99_demo", "bob", SECRET)
    # the MAC covers every top-level notebook: an extra one breaks it
    (bob / "extra.ipynb").write_text("{}")
    assert "does not verify" in verify(bob, "coursekit", "99_demo", "bob", SECRET)


def test_missing_or_unreadable_identity_is_named(tmp_path):
    plain = folder(tmp_path, "carol", "{}")
    assert verify(plain, "coursekit", "99_demo", "carol", SECRET).startswith(
        f"no {IDENTITY_FILE} in the submission filed under 'carol'")
    for text in ("not json", '{"user": "carol"}', '{"user": 3, "mac": "x"}'):
        (plain / IDENTITY_FILE).write_text(text)
        assert "unreadable" in verify(plain, "coursekit", "99_demo", "carol", SECRET), text


def test_sign_replaces_a_file_the_student_planted(tmp_path):
    path = folder(tmp_path, "alice", "{}")
    (path / IDENTITY_FILE).write_text('{"user": "bob", "mac": "0"}')
    sign(path, "coursekit", "99_demo", "alice", user_key(SECRET, "alice"))
    claim = json.loads((path / IDENTITY_FILE).read_text())
    assert claim == {"user": "alice", "mac": submission_mac(user_key(SECRET, "alice"), "coursekit", "99_demo",
                                                            "alice", path)}


def test_load_secret(tmp_path):
    assert load_secret(env={}) is None
    assert load_secret(env={"COURSEKIT_IDENTITY_SECRET": " s3 "}) == b"s3"
    secret = tmp_path / "secret"
    secret.write_text("from-file\n")
    assert load_secret(secret, env={"COURSEKIT_IDENTITY_SECRET": "env"}) == b"from-file"
    assert load_secret(env={"COURSEKIT_IDENTITY_SECRET_FILE": str(secret)}) == b"from-file"
    with pytest.raises(ValueError, match="cannot read it"):
        load_secret(tmp_path / "missing", env={})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        load_secret(tmp_path / "empty", env={})


def test_bad_arguments():
    with pytest.raises(TypeError, match="secret must be str or bytes"):
        user_key(123, "alice")
    with pytest.raises(ValueError, match="user must not be empty"):
        user_key(SECRET, "")
