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


def _many_blocks_result(n: int) -> p.Result:
    rng = np.random.default_rng(n)
    return p.Result(
        "w0",
        3,
        tuple(range(n)),
        tuple(rng.normal(size=n).tolist()),
        tuple(range(n)),
        tuple(range(1, n + 1)),
        0.5,
        0.1,
        rng.normal(size=(n, 4)),
    )


def _many_blocks_answer(n: int) -> p.Answer:
    """n blocks' answer of width 2, 3 numbers a block, and a 1-number state each (it leaves)."""
    rng = np.random.default_rng(n)
    return p.Answer(
        "w0",
        3,
        tuple(range(0, 2 * n, 2)),
        2,
        tuple(rng.normal(size=2 * n).tolist()),
        (3,) * n,
        0.5,
        0.1,
        rng.normal(size=4 * n),
        leaving=True,
        state_sizes=(1,) * n,
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
    _assert_same(decoded, message)
    assert not decoder.rejected


def _assert_same(decoded, message):
    assert type(decoded) is type(message)
    for name, value in vars(message).items():
        got = getattr(decoded, name)
        if isinstance(value, np.ndarray):
            assert got.dtype == np.float64 and np.array_equal(got, value)
        else:
            assert got == value
        if isinstance(value, tuple):  # ints stay ints, floats floats
            assert list(map(type, got)) == list(map(type, value))


def test_per_block_numbers_keep_the_header_small():
    rng = np.random.default_rng(0)
    rho, tolerance = rng.uniform(0.1, 10, 5000).tolist(), rng.uniform(0, 1e-2, 5000).tolist()
    message = p.Iterate(4, tuple(rho), tuple(tolerance), rng.normal(size=50))
    (frame,) = p.encode(message, JOB, "c", 1, max_payload=1 << 20)
    assert struct.unpack_from("<I", frame, 4)[0] < 1024
    (decoded,), decoder = _decode_all([frame])
    _assert_same(decoded, message)
    assert not decoder.rejected


@pytest.mark.parametrize("message", [_many_blocks_result(300), _many_blocks_answer(300)])
def test_per_block_numbers_are_chunked_and_reassembled(message):
    frames = p.encode(message, JOB, "w0", 5, max_payload=2048)
    assert len(frames) > 4 and all(len(f) <= 2048 for f in frames)
    (decoded,), decoder = _decode_all(reversed(frames))
    _assert_same(decoded, message)
    assert not decoder.rejected


def test_the_size_limit_counts_the_per_block_numbers():
    message = p.Iterate(1, (1.0,) * 1000, (0.1,) * 1000, np.zeros(1))  # 2001 numbers
    for max_payload in (1 << 20, 2048):  # one frame, and chunks
        frames = p.encode(message, JOB, "c", 1, max_payload)
        out, decoder = _decode_all(frames, p.Decoder(JOB, ALL, max_message_bytes=8 * 2000))
        assert out == [] and set(decoder.rejected) == {"too-large"}  # counted for each chunk


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
    return struct.pack("<4sI", p.MAGIC, len(text)) + text + payload


def _numbers(*values) -> bytes:
    return np.array(values, dtype=np.float64).tobytes()


GOOD_ITERATE = {"kind": "iterate.v2", "job": JOB, "sender": "c", "msg": 1, "iteration": 1,
                "dtype": "<f8", "shape": [2], "vectors": {"rho": 1, "gradient_tolerance": 1},
                "nbytes": 32}  # fmt: skip
GOOD_PAYLOAD = _numbers(1.0, 2.0, 1.0, 0.1)  # z = [1, 2], rho = [1], gradient_tolerance = [0.1]
NAN, INF = float("nan"), float("inf")


def _parts(message) -> tuple[dict, bytes]:
    """The header and the payload of ``message``'s frame."""
    (frame,) = p.encode(message, JOB, "w0", 1, 1 << 20)
    size = struct.unpack_from("<I", frame, 4)[0]
    return json.loads(frame[8 : 8 + size]), frame[8 + size :]


def _forge(message, **vectors) -> bytes:
    """``message``'s frame with some per-block tuples replaced, unchecked (a faulty peer's)."""
    header, _ = _parts(message)
    tuples = {name: vectors.get(name, getattr(message, name)) for name in header["vectors"]}
    array = np.ravel(getattr(message, message.ARRAY)) if message.ARRAY else ()
    payload = _numbers(*array, *(v for values in tuples.values() for v in values))
    lengths = {name: len(values) for name, values in tuples.items()}
    return _frame({**header, "vectors": lengths, "nbytes": len(payload)}, payload)


STOP, _ = _parts(p.Stop("x", "9f3c2a"))
HELLO, HELLO_PAYLOAD = _parts(p.Hello("w1", (2, 3), 1234, 0.5, "9f3c2a"))
RESULT, RESULT_PAYLOAD = _parts(_result())


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"", "truncated"),
        (b"XXXX\x00\x00\x00\x00", "bad-magic"),
        (struct.pack("<4sI", b"FOP1", 2) + b"{}", "bad-magic"),  # the previous wire format
        (struct.pack("<4sI", p.MAGIC, 1000) + b"{}", "truncated"),
        (struct.pack("<4sI", p.MAGIC, 3) + b"{{{", "bad-header"),
        (struct.pack("<4sI", p.MAGIC, 2) + b"[]", "bad-header"),
        (_frame({**GOOD_ITERATE, "job": "other/job"}, GOOD_PAYLOAD), "foreign-job"),
        (_frame({**GOOD_ITERATE, "kind": "iterate.v1"}, GOOD_PAYLOAD), "unexpected-kind"),
        (_frame({**GOOD_ITERATE, "kind": "pickle.v1"}, GOOD_PAYLOAD), "unexpected-kind"),
        (_frame({**GOOD_ITERATE, "kind": ["iterate.v2"]}, GOOD_PAYLOAD), "unexpected-kind"),
        (_frame({**GOOD_ITERATE, "shape": [0, 2**63]}, _numbers(1.0, 0.1)), "bad-shape"),
        (struct.pack("<4sI", p.MAGIC, 20_001) + b"[" * 20_000 + b"]", "bad-header"),
        (_frame({**GOOD_ITERATE, "iteration": "1"}, GOOD_PAYLOAD), "bad-field"),
        (_frame({**GOOD_ITERATE, "iteration": True}, GOOD_PAYLOAD), "bad-field"),
        (
            _frame(
                {**GOOD_ITERATE, "vectors": {"rho": None, "gradient_tolerance": 1}}, GOOD_PAYLOAD
            ),
            "bad-field",
        ),
        (_frame(GOOD_ITERATE, _numbers(1.0, 2.0, NAN, 0.1)), "non-finite"),
        (
            _frame(
                {**GOOD_ITERATE, "vectors": {"rho": 2, "gradient_tolerance": 1}},
                _numbers(1.0, 2.0, 1.0, 2.0, 0.1),
            ),
            "bad-shape",
        ),
        (_frame(GOOD_ITERATE, _numbers(1.0, 2.0, 0.0, 0.1)), "bad-field"),
        (_frame(GOOD_ITERATE, _numbers(1.0, 2.0, 1.0, -1.0)), "bad-field"),
        (_frame({**GOOD_ITERATE, "shape": [1, 2]}, GOOD_PAYLOAD), "bad-shape"),
        (_frame({**GOOD_ITERATE, "dtype": "<f4"}, GOOD_PAYLOAD), "bad-dtype"),
        (_frame({**GOOD_ITERATE, "dtype": "|O"}, GOOD_PAYLOAD), "bad-dtype"),
        (_frame({**GOOD_ITERATE, "shape": [3]}, GOOD_PAYLOAD), "truncated"),
        (_frame({**GOOD_ITERATE, "shape": "2"}, GOOD_PAYLOAD), "bad-shape"),
        (_frame(GOOD_ITERATE, _numbers(1.0, NAN, 1.0, 0.1)), "non-finite"),
        (_frame(GOOD_ITERATE, _numbers(INF, 0.0, 1.0, 0.1)), "non-finite"),
        (_frame({**GOOD_ITERATE, "chunk": [5, 2]}, GOOD_PAYLOAD), "bad-chunk"),
        (_frame({**GOOD_ITERATE, "chunk": [0, 2], "nbytes": 1 << 40}, GOOD_PAYLOAD), "too-large"),
        (
            _frame({"kind": "stop.v1", "job": JOB, "reason": "x", "nbytes": 2}, b"ab"),
            "unexpected-kind",
        ),
        (_frame({**STOP, "nbytes": 2}, b"ab"), "bad-array"),
        (_frame({**STOP, "instance": 7}, b""), "bad-field"),
        (_frame({k: v for k, v in HELLO.items() if k != "instance"}, HELLO_PAYLOAD), "bad-field"),
        (_frame({**HELLO, "instance": "x" * 300}, HELLO_PAYLOAD), "bad-field"),
        (_frame({**RESULT, "leaving": 1}, RESULT_PAYLOAD), "bad-field"),
        (_frame({**RESULT, "seconds_left": -1.0}, RESULT_PAYLOAD), "bad-field"),
        (_frame({**RESULT, "seconds_left": "soon"}, RESULT_PAYLOAD), "bad-field"),
    ],
)
def test_bad_frames_are_dropped_and_counted(frame, reason):
    decoder = p.Decoder(JOB, ALL)
    assert decoder.feed(frame) is None
    assert decoder.rejected == {reason: 1}


def _vectors(**lengths) -> dict:
    return {**GOOD_ITERATE, "vectors": lengths}


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (_frame(_vectors(rho=2, gradient_tolerance=1), GOOD_PAYLOAD), "truncated"),
        (_frame(_vectors(rho=1, gradient_tolerance=0), GOOD_PAYLOAD), "truncated"),
        (_frame(_vectors(rho=1, gradient_tolerance=1), GOOD_PAYLOAD + _numbers(0.5)), "truncated"),
        (_frame(_vectors(rho=2), GOOD_PAYLOAD), "bad-field"),
        (
            _frame({k: v for k, v in GOOD_ITERATE.items() if k != "vectors"}, GOOD_PAYLOAD),
            "bad-field",
        ),
        (_frame(_vectors(rho=1, gradient_tolerance=1, z=0), GOOD_PAYLOAD), "bad-field"),
        (_frame({**STOP, "vectors": {"blocks": 0}}), "bad-field"),
        (_frame({**GOOD_ITERATE, "vectors": [1, 1]}, GOOD_PAYLOAD), "bad-field"),
        (_frame(_vectors(rho=-1, gradient_tolerance=2), GOOD_PAYLOAD[:-8]), "bad-field"),
        (_frame(_vectors(rho=1.0, gradient_tolerance=1), GOOD_PAYLOAD), "bad-field"),
        (_frame(_vectors(rho=True, gradient_tolerance=1), GOOD_PAYLOAD), "bad-field"),
        (_forge(_result(), blocks=(0, 1.5)), "bad-field"),
        (_forge(_result(), solver_iterations=(3, 2.0**60)), "bad-field"),
        (_forge(_answer(), sizes=(4.5, 1.5)), "bad-field"),
        (_forge(_result(), loss_at_z=(10.0, NAN)), "non-finite"),
        (_forge(_result(), gradient_evaluations=(INF, 5)), "non-finite"),
        (_forge(p.Final("w1", (2,), (1.25,), 1, "9f3c2a"), loss_at_z=(-INF,)), "non-finite"),
    ],
)
def test_malformed_per_block_numbers_are_dropped_and_counted(frame, reason):
    decoder = p.Decoder(JOB, ALL)
    assert decoder.feed(frame) is None
    assert decoder.rejected == {reason: 1}


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"sizes": (2, 3)}, "sizes do not add up to the values"),
        ({"scalars": (0.5,)}, "one scalar for two blocks of width 2"),
        ({"state_sizes": (1,)}, "a state size for one of two blocks"),
        ({"sizes": (-1, 7)}, "a negative size"),
    ],
)
def test_an_answer_must_add_up(changes, why):
    decoder = p.Decoder(JOB, ALL)
    assert decoder.feed(_forge(_answer(), **changes)) is None, why
    assert decoder.rejected == {"bad-shape": 1}


def test_an_assignment_must_match_its_blocks():
    assign = p.Assign("w0", (0,), (1.0,), 1.0, "lbfgs", 1e-2, 0.0, 1, 9, np.zeros((3, 2)))
    (frame,) = p.encode(assign, JOB, "c", 1, 1 << 20)
    decoder = p.Decoder(JOB, ALL)
    assert decoder.feed(frame) is not None and decoder.feed(_forge(assign, blocks=(0, 1))) is None
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
