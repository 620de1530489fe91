"""aster_nb.guard: what a program run by :func:`run_guarded` can and cannot do, for real
(a forked child under the seccomp filter), and how its answers and failures come back."""

from __future__ import annotations

import os
import signal
import socket
import threading

import pytest

from aster_nb.guard import GuardUnavailable, ProgramFailed, filter_program, run_guarded


def _attempts(secret_fd: int, *, fork: bool = True) -> dict[str, str]:
    """What each way out does where it runs: ``ok`` or the error it met."""
    tries = {
        "open": lambda: open(__file__, "rb").close(),
        "fd opened before the fork": lambda: os.fstat(secret_fd),
        "socket": lambda: socket.socket().close(),
        "thread": lambda: threading.Thread(target=lambda: None).start(),
    }
    if fork:  # never in the test's own process: the child would run the rest of pytest
        tries["fork"] = os.fork
    out = {}
    for name, attempt in tries.items():
        try:
            attempt()
        except Exception as e:
            out[name] = type(e).__name__
        else:
            out[name] = "ok"
    return out


def test_the_child_can_open_fork_connect_and_thread_nothing() -> None:
    secret = os.open(__file__, os.O_RDONLY)
    try:
        header, _ = run_guarded(lambda send: (_attempts(secret), b""), max_payload=0)
        # the same attempts here, unguarded, all succeed: the refusals are the guard's
        unguarded = _attempts(secret, fork=False)
        assert os.fstat(secret).st_size > 0  # still open here: the child closed its copy
    finally:
        os.close(secret)
    assert set(unguarded.values()) == {"ok"}, unguarded
    assert header == {
        "open": "PermissionError",
        "fd opened before the fork": "OSError",
        "fork": "PermissionError",
        "socket": "PermissionError",
        "thread": "RuntimeError",
    }


def test_frames_stream_and_the_answer_comes_back() -> None:
    seen: list[dict] = []

    def child(send):
        for step in range(3):
            send({"step": step, "loss": 1.0 / (step + 1)})
        return {"n": 3}, b"\x01" * 24

    header, payload = run_guarded(child, max_payload=24, on_frame=seen.append)
    assert header == {"n": 3} and payload == b"\x01" * 24
    assert [f["step"] for f in seen] == [0, 1, 2]


class _Rule(Exception):
    pass


def test_failures_say_what_happened() -> None:
    def raises(send):
        raise _Rule("too many tensors")

    with pytest.raises(ProgramFailed) as e:
        run_guarded(raises, max_payload=0, kinds=(_Rule,))
    assert e.value.kind == "_Rule" and e.value.detail == "too many tensors"
    assert "the program raised" in str(e.value) and "too many tensors" in str(e.value)

    with pytest.raises(ProgramFailed, match="killed by signal 9 before answering"):
        run_guarded(lambda send: os.kill(os.getpid(), signal.SIGKILL), max_payload=0)
    with pytest.raises(ProgramFailed, match="exited with status 7 before answering"):
        run_guarded(lambda send: os._exit(7), max_payload=0)
    with pytest.raises(ProgramFailed, match="larger than allowed"):
        run_guarded(lambda send: ({}, b"x" * 100), max_payload=99)


def test_an_unknown_architecture_is_refused_not_run_unguarded() -> None:
    with pytest.raises(GuardUnavailable, match="no syscall table for 'mips'"):
        filter_program("mips")
    assert len(filter_program("aarch64")) % 8 == 0 and filter_program("x86_64")


def _forge(head: bytes) -> None:
    """Write a frame to the answer pipe by hand, as a program can: the pipe is the only
    descriptor above stderr the child keeps."""
    import struct

    for fd in range(3, 1 << 16):
        try:
            os.fstat(fd)
        except OSError:
            continue
        os.write(fd, struct.pack("=QQ", len(head), 0) + head)
        return


def _forging(head: bytes):
    def child(send):
        _forge(head)
        return {}, b""

    return child


class RuleBroken(Exception):
    pass


def test_what_a_program_forges_is_refused_or_counts_against_it() -> None:
    with pytest.raises(ProgramFailed, match="malformed frame"):
        run_guarded(_forging(b'{"frame": "x"}'), max_payload=0, on_frame=lambda f: None)
    with pytest.raises(ProgramFailed, match="malformed"):
        run_guarded(_forging(b"[" * 200_000), max_payload=0)
    with pytest.raises(ProgramFailed, match="malformed answer"):  # the guard was loaded
        run_guarded(_forging(b'{"guard": "pretend"}'), max_payload=0)

    def own_rule(send):
        class RuleBroken(Exception):  # the program's class of the evaluator's name
            pass

        raise RuleBroken("I am merely invalid")

    with pytest.raises(ProgramFailed) as e:
        run_guarded(own_rule, max_payload=0, kinds=(RuleBroken,))
    assert e.value.kind == ""

    def real_rule(send):
        raise RuleBroken("holds a stranger tensor")

    with pytest.raises(ProgramFailed) as e:
        run_guarded(real_rule, max_payload=0, kinds=(RuleBroken,))
    assert e.value.kind == "RuleBroken" and e.value.detail == "holds a stranger tensor"


def test_a_flood_of_frames_reaches_the_caller_bounded() -> None:
    seen: list[dict] = []

    def child(send):
        for i in range(500):
            send({"i": i})
        return {"done": True}, b""

    header, _ = run_guarded(child, max_payload=0, on_frame=seen.append, max_frames=50)
    assert header == {"done": True} and [f["i"] for f in seen] == list(range(50))
