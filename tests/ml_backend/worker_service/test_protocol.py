"""The framing: both implementations agree byte for byte, and the decoder survives thousands of fuzzed inputs."""
from __future__ import annotations

import json
import random
import struct

import pytest

from ml_backend.service import protocol as P
from pose_addon.worker import protocol as X  # the extension's stdlib mirror

MESSAGES = [
    {"id": 1, "method": "ping", "params": {}},
    {"id": "a-b", "method": "estimate_pose", "params": {"image": "/tmp/é ü/x.png", "options": {"k": 3}}},
    {"id": 7, "result": {"cam_from_world": [[1.0, 0.0, 0.0, 1e-300], [0, 1, 0, -2.5], [0, 0, 1, 3], [0, 0, 0, 1]]}},
    {"id": None, "error": {"code": "bad_json", "message": "x", "detail": None}},
    {"event": "job", "job": {"id": "j1", "progress": 0.25, "emoji": "\U0001F600", "nested": [[[[]]]]}},
]


@pytest.mark.parametrize("msg", MESSAGES)
def test_both_sides_encode_identically(msg):
    assert P.encode(msg) == X.encode(msg)
    for enc in (P.encode, X.encode):
        data = enc(msg)
        assert struct.unpack(">I", data[:4])[0] == len(data) - 4
        for Dec in (P.Decoder, X.Decoder):
            d = Dec()
            d.feed(data)
            assert d.next_message() == json.loads(json.dumps(msg))
            assert d.next_message() is None


def test_non_finite_floats_become_null():
    data = P.encode({"x": float("inf"), "y": [float("nan")], "z": 1.5})
    assert json.loads(data[4:]) == {"x": None, "y": [None], "z": 1.5}
    with pytest.raises(ValueError):  # the mirror refuses instead of writing invalid JSON
        X.encode({"x": float("inf")})


def test_oversized_message_is_refused_when_encoding():
    big = {"blob": "x" * (P.MAX_FRAME + 1)}
    with pytest.raises(ValueError):
        P.encode(big)
    with pytest.raises(ValueError):
        X.encode(big)


@pytest.mark.parametrize("Dec,Err", [(P.Decoder, P.ProtocolError), (X.Decoder, X.FrameError)])
def test_error_kinds(Dec, Err):
    d = Dec()
    d.feed(struct.pack(">I", 3) + b"{]x" + struct.pack(">I", 2) + b"[]" + struct.pack(">I", 2) + b"{}")
    for code in ("bad_json", "bad_request"):
        with pytest.raises(Err) as e:
            d.next_message()
        assert e.value.code == code and not e.value.fatal
    assert d.next_message() == {}
    for header, code in ((0, "bad_frame"), (P.MAX_FRAME + 1, "frame_too_large")):
        d = Dec()
        d.feed(struct.pack(">I", header) + b"{}")
        with pytest.raises(Err) as e:
            d.next_message()
        assert e.value.code == code and e.value.fatal
        with pytest.raises(Err):  # stays broken
            d.next_message()
    d = Dec()
    d.feed(struct.pack(">I", 10) + b"{}")  # truncated: waits for more
    assert d.next_message() is None
    d.feed(b'NaN' + b" " * 5)
    with pytest.raises(Err):  # NaN is not JSON
        d.next_message()


def _outcomes(Dec, Err, chunks):
    d = Dec(max_frame=4096)
    out = []
    for c in chunks:
        d.feed(c)
        while True:
            try:
                m = d.next_message()
            except Err as e:
                out.append(("err", e.code))
                if e.fatal:
                    return out
                continue
            if m is None:
                break
            out.append(("msg", json.dumps(m, sort_keys=True)))
    return out


def _random_json(rng, depth=0):
    r = rng.random()
    if depth > 3 or r < 0.3:
        return rng.choice([None, True, False, rng.randint(-10**12, 10**12), rng.uniform(-1e6, 1e6),
                           "".join(chr(rng.randint(1, 0x2FFF)) for _ in range(rng.randint(0, 8)))])
    if r < 0.65:
        return [_random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {str(rng.randint(0, 99)): _random_json(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def test_fuzz_decoder_seeded():
    """5000 seeded cases: valid frames split anywhere, mutated bytes, random garbage. The decoders only ever return
    dicts or raise their protocol error, agree with each other, and decode valid streams exactly."""
    rng = random.Random(1234)
    for case in range(5000):
        msgs = [{"id": i, "v": _random_json(rng)} for i in range(rng.randint(1, 4))]
        stream = b"".join(P.encode(m) for m in msgs)
        kind = case % 4
        if kind == 1:  # flip bytes
            b = bytearray(stream)
            for _ in range(rng.randint(1, 6)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            stream = bytes(b)
        elif kind == 2:  # garbage
            stream = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        elif kind == 3:  # truncate
            stream = stream[:rng.randrange(len(stream))]
        cuts = sorted(rng.randrange(len(stream) + 1) for _ in range(rng.randint(0, 5)))
        chunks = [stream[a:b] for a, b in zip([0] + cuts, cuts + [len(stream)])]
        a = _outcomes(P.Decoder, P.ProtocolError, chunks)
        b = _outcomes(X.Decoder, X.FrameError, chunks)
        assert a == b, case
        if kind == 0:
            assert [json.loads(m) for t, m in a] == json.loads(json.dumps(msgs)), case
