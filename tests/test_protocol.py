"""Wire format: round trips, chunking, and every kind of bad frame dropped and counted."""

from __future__ import annotations

import dataclasses
import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from faasopt import protocol as p

JOB = "default/test"
ALL = set(p.KINDS)


def _result(iteration=3, x=None):
    x = np.arange(6.0).reshape(2, 3) if x is None else x
    return p.Result(
        worker="w0",
        iteration=iteration,
        blocks=(0, 1),
        loss_at_z=(10.0, 11.5),
        gradient_evaluations=(4, 5),
        solver_iterations=(3, 4),
        compute_seconds=0.01,
        idle_seconds=0.002,
        x=x,
    )


def _decode_all(frames, decoder=None):
    decoder = decoder or p.Decoder(JOB, ALL)
    out = [m for f in frames if (m := decoder.feed(f)) is not None]
    return out, decoder


def _answer() -> p.Answer:
    """Two blocks' SGD answer: (loss, rows) each, a 4- and a 2-number part."""
    return p.Answer(
        "w0", 3, (1, 2), 2, (0.5, 64.0, 0.25, 64.0), (4, 2), 0.1, 0.01, np.arange(6.0), "9f3c2a"
    )


def test_subjects_are_per_job():
    s = p.Subjects("team-a", "quickstart")
    assert (s.ctl, s.up, s.hb) == (
        "faasopt.team-a.quickstart.ctl",
        "faasopt.team-a.quickstart.up",
        "faasopt.team-a.quickstart.hb",
    )
    assert s.worker("w3") == "faasopt.team-a.quickstart.ctl.w3"
    assert s.key == "team-a/quickstart"


@pytest.mark.parametrize(
    "message",
    [
        p.Hello("w1", (2, 3), 1234, 0.5, "9f3c2a"),
        p.Iterate(7, (0.5, 2.0), (1e-2, 3e-3), np.linspace(-1, 1, 5)),
        _result(),
        dataclasses.replace(_result(), instance="9f3c2a", leaving=True, seconds_left=0.0),
        p.Finish("converged", np.ones(4)),
        p.Final("w1", (2,), (1.25,), 10_000_000, "9f3c2a"),
        p.Stop("deadline"),
        p.Stop("refused: duplicate-instance", "9f3c2a"),
        p.Heartbeat("w1", "9f3c2a"),
        p.Assign("w0", (0, 1), (2.0, 0.5), 1.8, "fista", 1e-2, 1e-12, 1, 1000, np.zeros((5, 3))),
        p.Assign(
            "w0", (0,), (2.0,), 1.8, "fista", 1e-2, 1e-12, 1, 9, np.zeros((3, 3)), "9f3c2a", 12
        ),
        p.Round(3, "step", np.linspace(-1, 1, 5)),
        p.Round(0, "seed", np.zeros((0, 4)), ("w1", "w2")),
        _answer(),
        dataclasses.replace(_answer(), values=np.arange(11.0), state_sizes=(2, 3), leaving=True),
        p.Handover("w0", (0, 3), (0, 2), np.array([1.0, -1.0]), "9f3c2a", 4),
    ],
)
def test_every_kind_round_trips_exactly(message):
    frames = p.encode(message, JOB, "sender", 1, max_payload=1 << 20)
    (decoded,), decoder = _decode_all(frames)
    assert type(decoded) is type(message)
    for name, value in vars(message).items():
        got = getattr(decoded, name)
        if isinstance(value, np.ndarray):
            assert got.dtype == np.float64 and np.array_equal(got, value)
        else:
            assert got == value
    assert not decoder.rejected


def test_large_vectors_are_chunked_and_reassembled():
    z = np.random.default_rng(0).normal(size=100_000)  # 800 kB
    frames = p.encode(p.Iterate(1, (1.0,), (0.1,), z), JOB, "c", 9, max_payload=64 * 1024)
    assert len(frames) > 12 and all(len(f) <= 64 * 1024 for f in frames)
    decoder = p.Decoder(JOB, ALL)
    out = [decoder.feed(f) for f in reversed(frames)]  # order does not matter
    assert out[:-1] == [None] * (len(frames) - 1)
    assert np.array_equal(out[-1].z, z)
    assert not decoder.rejected


def _frame(header: dict, payload: bytes = b"") -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<4sI", b"FOP1", len(text)) + text + payload


GOOD_ITERATE = {"kind": "iterate.v2", "job": JOB, "sender": "c", "msg": 1, "iteration": 1,
                "rho": [1.0], "gradient_tolerance": [0.1], "dtype": "<f8", "shape": [2],
                "nbytes": 16}  # fmt: skip
TWO = np.array([1.0, 2.0]).tobytes()


def _header(message) -> dict:
    (frame,) = p.encode(message, JOB, "w0", 1, 1 << 20)
    return json.loads(frame[8 : 8 + struct.unpack_from("<I", frame, 4)[0]])


STOP = _header(p.Stop("x", "9f3c2a"))
HELLO = _header(p.Hello("w1", (2, 3), 1234, 0.5, "9f3c2a"))
RESULT = _header(_result())
RESULT_X = _result().x.tobytes()


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "truncated"),
        (b"XXXX\x00\x00\x00\x00", "bad-magic"),
        (struct.pack("<4sI", b"FOP1", 1000) + b"{}", "truncated"),
        (struct.pack("<4sI", b"FOP1", 3) + b"{{{", "bad-header"),
        (struct.pack("<4sI", b"FOP1", 2) + b"[]", "bad-header"),
        (_frame({**GOOD_ITERATE, "job": "other/job"}, TWO), "foreign-job"),
        (_frame({**GOOD_ITERATE, "kind": "iterate.v1"}, TWO), "unexpected-kind"),
        (_frame({**GOOD_ITERATE, "kind": "pickle.v1"}, TWO), "unexpected-kind"),
        (_frame({**GOOD_ITERATE, "iteration": "1"}, TWO), "bad-field"),
        (_frame({**GOOD_ITERATE, "iteration": True}, TWO), "bad-field"),
        (_frame({**GOOD_ITERATE, "rho": None}, TWO), "bad-field"),
        (_frame(GOOD_ITERATE, TWO).replace(b'"rho": [1.0]', b'"rho": [NaN]'), "non-finite"),
        (_frame({**GOOD_ITERATE, "rho": [1.0, 2.0]}, TWO), "bad-shape"),
        (_frame({**GOOD_ITERATE, "rho": [0.0]}, TWO), "bad-field"),
        (_frame({**GOOD_ITERATE, "gradient_tolerance": [-1.0]}, TWO), "bad-field"),
        (_frame({**GOOD_ITERATE, "shape": [1, 2]}, TWO), "bad-shape"),
        (_frame({**GOOD_ITERATE, "dtype": "<f4"}, TWO), "bad-dtype"),
        (_frame({**GOOD_ITERATE, "dtype": "|O"}, TWO), "bad-dtype"),
        (_frame({**GOOD_ITERATE, "shape": [3]}, TWO), "truncated"),
        (_frame({**GOOD_ITERATE, "shape": "2"}, TWO), "bad-shape"),
        (_frame(GOOD_ITERATE, np.array([1.0, np.nan]).tobytes()), "non-finite"),
        (_frame(GOOD_ITERATE, np.array([np.inf, 0.0]).tobytes()), "non-finite"),
        (_frame({**GOOD_ITERATE, "chunk": [5, 2]}, TWO), "bad-chunk"),
        (_frame({**GOOD_ITERATE, "chunk": [0, 2], "nbytes": 1 << 40}, TWO), "too-large"),
        (
            _frame({"kind": "stop.v1", "job": JOB, "reason": "x", "nbytes": 2}, b"ab"),
            "unexpected-kind",
        ),
        (_frame({**STOP, "nbytes": 2}, b"ab"), "bad-array"),
        (_frame({**STOP, "instance": 7}, b""), "bad-field"),
        (_frame({k: v for k, v in HELLO.items() if k != "instance"}, b""), "bad-field"),
        (_frame({**HELLO, "instance": "x" * 300}, b""), "bad-field"),
        (_frame({**RESULT, "leaving": 1}, RESULT_X), "bad-field"),
        (_frame({**RESULT, "seconds_left": -1.0}, RESULT_X), "bad-field"),
        (_frame({**RESULT, "seconds_left": "soon"}, RESULT_X), "bad-field"),
    ],
)
def test_bad_frames_are_dropped_and_counted(frame, reason):
    decoder = p.Decoder(JOB, ALL)
    assert decoder.feed(frame) is None
    assert decoder.rejected == {reason: 1}


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"sizes": [2, 3]}, "sizes do not add up to the values"),
        ({"scalars": [0.5]}, "one scalar for two blocks of width 2"),
        ({"state_sizes": [1]}, "a state size for one of two blocks"),
        ({"sizes": [-1, 7]}, "a negative size"),
    ],
)
def test_an_answer_must_add_up(changes, why):
    (frame,) = p.encode(_answer(), JOB, "w0", 1, 1 << 20)
    header = json.loads(frame[8 : 8 + struct.unpack_from("<I", frame, 4)[0]])
    decoder = p.Decoder(JOB, ALL)
    assert decoder.feed(_frame({**header, **changes}, np.zeros(6).tobytes())) is None, why
    assert decoder.rejected == {"bad-shape": 1}


def test_an_assignment_must_match_its_blocks():
    frames = p.encode(
        p.Assign("w0", (0,), (1.0,), 1.0, "lbfgs", 1e-2, 0.0, 1, 9, np.zeros((3, 2))),
        JOB,
        "c",
        1,
        1 << 20,
    )
    header = json.loads(frames[0][8 : 8 + struct.unpack_from("<I", frames[0], 4)[0]])
    bad = _frame({**header, "blocks": [0, 1]}, np.zeros(6).tobytes())
    decoder = p.Decoder(JOB, ALL)
    assert decoder.feed(frames[0]) is not None and decoder.feed(bad) is None
    assert decoder.rejected == {"bad-shape": 1}


def test_kinds_a_side_does_not_expect_are_dropped():
    decoder = p.Decoder(JOB, accept={p.Iterate.KIND})
    (frame,) = p.encode(_result(), JOB, "w0", 1, 1 << 20)
    assert decoder.feed(frame) is None
    assert decoder.rejected == {"unexpected-kind": 1}


def test_duplicate_and_flooding_chunks_are_bounded():
    z = np.arange(1000.0)
    decoder = p.Decoder(JOB, ALL, max_pending=4)
    frames = p.encode(p.Iterate(1, (1.0,), (0.1,), z), JOB, "c", 1, max_payload=2048)
    assert decoder.feed(frames[0]) is None
    assert decoder.feed(frames[0]) is None
    assert decoder.rejected["duplicate-chunk"] == 1
    for msg_id in range(2, 10):  # a flood of first chunks of messages that never complete
        first = p.encode(p.Iterate(1, (1.0,), (0.1,), z), JOB, "c", msg_id, 2048)[0]
        decoder.feed(first)
    assert len(decoder._pending) == 4
    assert decoder.rejected["chunk-evicted"] == 5


def test_encoding_refuses_non_finite_scalars():
    with pytest.raises(ValueError):
        p.encode(p.Iterate(1, (float("nan"),), (0.1,), np.zeros(2)), JOB, "c", 1, 1 << 20)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300))
def test_decoder_never_raises_on_garbage(data):
    decoder = p.Decoder(JOB, ALL)
    assert decoder.feed(data) is None
    assert sum(decoder.rejected.values()) == 1


@settings(max_examples=1000, deadline=None)
@given(st.integers(0, 400), st.integers(0, 10**6))
def test_decoder_never_raises_on_mutated_frames(position, value):
    (frame,) = p.encode(_result(), JOB, "w0", 1, 1 << 20)
    data = bytearray(frame)
    data[position % len(data)] = value % 256
    decoder = p.Decoder(JOB, ALL)
    message = decoder.feed(bytes(data))
    assert message is not None or sum(decoder.rejected.values()) == 1
