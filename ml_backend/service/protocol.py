"""The wire protocol between the pose worker and its clients: the one definition (prose: ``docs/protocol.md``).

Framing
    Every message is one frame: a 4-byte big-endian unsigned length ``N`` followed by ``N`` bytes of UTF-8 JSON
    encoding one object. ``N`` is at most :data:`MAX_FRAME` (16 MiB); a larger announced length is a protocol
    violation and the receiver closes the connection (it cannot resynchronise). ``N == 0`` is invalid too.
    JSON is strict: no ``NaN``/``Infinity`` (non-finite floats travel as ``null``). Images and datasets travel as
    file paths, never as bytes.

Session
    The client's first frame must be ``hello``::

        {"id": 0, "method": "hello", "params": {"protocol": 1, "token": "<secret>", "client": "blender"}}

    A wrong or missing token, another first method or a protocol version the server does not speak is answered
    with an error (``unauthorized`` / ``protocol_mismatch``) and the connection is closed. The server closes a
    connection that sends no hello within :data:`HELLO_TIMEOUT_S` seconds.

Requests and responses
    request  ``{"id": <int|str>, "method": "<name>", "params": {...}, "timeout": <seconds, optional>}``
    response ``{"id": <same id>, "result": {...}}`` or ``{"id": <same id>, "error": {"code", "message", "detail"}}``

    Requests on one connection may be answered out of order: match responses by ``id``. ``timeout`` bounds the
    server-side time of a request (default :data:`DEFAULT_TIMEOUT_S`); when it passes the answer is an error with
    code ``timeout``. A frame whose JSON cannot be parsed is answered with ``id: null`` and code ``bad_json``;
    the connection stays usable because framing is intact.

Events (server -> client, no ``id``)
    ``{"event": "job", "job": {...job status...}}`` pushed to connections that asked for them (``job.start`` or
    ``job.subscribe``); polling ``job.status`` works without them.
"""
from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from typing import Any, Optional

__all__ = ["PROTOCOL_VERSION", "MAX_FRAME", "HEADER", "HEADER_SIZE", "HELLO_TIMEOUT_S", "DEFAULT_TIMEOUT_S",
           "MAX_TIMEOUT_S", "PREAUTH_MAX_FRAME", "MAX_ECHO", "MAX_REQUEST", "check_timeout", "ErrorCode",
           "ProtocolError", "RemoteError", "encode", "encode_payload", "Decoder", "make_error",
           "json_clean", "METHODS"]

PROTOCOL_VERSION = 1
MAX_FRAME = 16 * 1024 * 1024
HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size
HELLO_TIMEOUT_S = 10.0
DEFAULT_TIMEOUT_S = 120.0
MAX_TIMEOUT_S = 3600.0  # a request's ``timeout`` is a number of seconds in (0, MAX_TIMEOUT_S]
PREAUTH_MAX_FRAME = 4096  # the largest frame accepted before a successful hello (a hello is ~150 bytes)
MAX_ECHO = 64 * 1024  # bytes of JSON that ``ping`` echoes back
MAX_REQUEST = 1024 * 1024  # the largest request the worker parses; a longer one is skipped unread (see Decoder)


def check_timeout(value: Any) -> float:
    """A request's ``timeout`` as float seconds; raises ValueError (message names the field and the range).

    ``None`` means :data:`DEFAULT_TIMEOUT_S`. Integers are compared before conversion, so a 400-digit number is an
    error, not an ``OverflowError``; infinities and NaN are refused.
    """
    if value is None:
        return DEFAULT_TIMEOUT_S
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"'timeout' must be a number of seconds, got {type(value).__name__}")
    if not (0 < value <= MAX_TIMEOUT_S):  # False for NaN; exact for big ints
        shown = repr(value) if len(repr(value)) <= 30 else repr(value)[:20] + f"... ({len(repr(value))} digits)"
        raise ValueError(f"'timeout' must be in (0, {MAX_TIMEOUT_S:g}] seconds, got {shown}")
    return float(value)

#: Methods of protocol version 1 (``info`` returns the list the running server really has).
METHODS = ("hello", "ping", "info", "estimate_pose", "job.start", "job.status", "job.cancel", "job.list",
           "job.subscribe", "shutdown")


class ErrorCode:
    """Error codes of ``{"error": {"code": ...}}``. Clients should branch on these, never on messages."""

    BAD_FRAME = "bad_frame"  # zero length or otherwise broken framing: the connection is closed
    FRAME_TOO_LARGE = "frame_too_large"  # announced length > MAX_FRAME: the connection is closed
    BAD_JSON = "bad_json"  # not UTF-8 JSON
    BAD_REQUEST = "bad_request"  # JSON, but not a request object (no method, bad id, params not an object)
    UNAUTHORIZED = "unauthorized"  # first message not a hello with the right token: the connection is closed
    PROTOCOL_MISMATCH = "protocol_mismatch"  # the hello asked for a protocol version the server lacks
    UNKNOWN_METHOD = "unknown_method"
    INVALID_PARAMS = "invalid_params"  # a missing or wrongly typed parameter
    NOT_FOUND = "not_found"  # a path, job or database that does not exist
    UNAVAILABLE = "unavailable"  # the method cannot run here (missing package or weights)
    FAILED = "failed"  # the computation ran and failed (unreadable image, corrupt database, ...)
    TIMEOUT = "timeout"
    BUSY = "busy"  # too many requests in flight on this connection
    SHUTTING_DOWN = "shutting_down"
    INTERNAL = "internal"  # a bug: the detail holds the traceback's last lines


class ProtocolError(Exception):
    """Raised by :class:`Decoder` for a frame that cannot be decoded. ``fatal``: the stream is unusable."""

    def __init__(self, code: str, message: str, fatal: bool):
        super().__init__(message)
        self.code = code
        self.message = message
        self.fatal = fatal


class RemoteError(Exception):
    """An error response, raised by clients: ``code``, ``message`` and ``detail`` as the server sent them."""

    def __init__(self, code: str, message: str, detail: Any = None):
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.detail = detail


def json_clean(obj: Any) -> Any:
    """``obj`` with tuples as lists, numpy values as Python values and non-finite floats as ``None``."""
    if isinstance(obj, dict):
        return {str(k): json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int, bool)):
        return obj
    tolist = getattr(obj, "tolist", None)  # numpy arrays and scalars, without importing numpy
    if tolist is not None:
        return json_clean(tolist())
    return str(obj)


def encode_payload(msg: dict) -> bytes:
    """The UTF-8 JSON body of a message (compact, strict)."""
    try:
        body = json.dumps(msg, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        body = json.dumps(json_clean(msg), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return body.encode("utf-8")


def encode(msg: dict) -> bytes:
    """One frame: 4-byte big-endian length + UTF-8 JSON. Raises ValueError when the body exceeds MAX_FRAME."""
    body = encode_payload(msg)
    if len(body) > MAX_FRAME:
        raise ValueError(f"message of {len(body)} bytes exceeds the {MAX_FRAME} byte frame limit")
    return HEADER.pack(len(body)) + body


class Decoder:
    """Incremental frame decoder: :meth:`feed` bytes as they arrive, iterate the decoded messages.

    A non-fatal :class:`ProtocolError` (bad JSON, not an object) consumes its frame, so decoding can go on; a
    fatal one (zero or oversized length) leaves the decoder broken: close the connection.

    ``skip_above``: frames longer than this (up to ``max_frame``) are not buffered nor parsed: their bytes are
    dropped as they arrive and a non-fatal ``frame_too_large`` is raised once, so the stream stays in sync. The
    worker uses it to bound the time its event loop spends parsing one request (Python's JSON parser holds the
    GIL: 1 MiB of numbers takes about 0.2 s).
    """

    def __init__(self, max_frame: int = MAX_FRAME, skip_above: Optional[int] = None):
        self.max_frame = max_frame
        self.skip_above = skip_above
        self._skip = 0  # bytes of a skipped frame still to drop
        self._buf = bytearray()
        self.broken: Optional[ProtocolError] = None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        if self.broken is None:
            if self._skip:
                k = min(self._skip, len(data))
                self._skip -= k
                data = data[k:]
            self._buf += data

    def __iter__(self) -> Iterator[dict]:
        return self

    def __next__(self) -> dict:
        msg = self.next_message()
        if msg is None:
            raise StopIteration
        return msg

    def next_message(self) -> Optional[dict]:
        """The next complete message, None when more bytes are needed; raises :class:`ProtocolError`."""
        if self.broken is not None:
            raise self.broken
        buf = self._buf
        if len(buf) < HEADER_SIZE:
            return None
        (n,) = HEADER.unpack_from(buf, 0)
        if n == 0 or n > self.max_frame:
            code = ErrorCode.BAD_FRAME if n == 0 else ErrorCode.FRAME_TOO_LARGE
            self.broken = ProtocolError(code, "empty frame" if n == 0 else
                                        f"frame of {n} bytes exceeds the {self.max_frame} byte limit", True)
            self._buf = bytearray()
            raise self.broken
        if self.skip_above is not None and n > self.skip_above:
            k = min(len(buf) - HEADER_SIZE, n)
            del buf[:HEADER_SIZE + k]
            self._skip = n - k
            raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, f"request of {n} bytes is over the {self.skip_above} "
                                "byte limit for requests: skipped unread", False)
        if len(buf) < HEADER_SIZE + n:
            return None
        body = bytes(buf[HEADER_SIZE:HEADER_SIZE + n])
        del buf[:HEADER_SIZE + n]
        try:
            msg = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise ProtocolError(ErrorCode.BAD_JSON, f"frame is not UTF-8 JSON: {str(e)[:200]}", False) from None
        if not isinstance(msg, dict):
            raise ProtocolError(ErrorCode.BAD_REQUEST, f"a message must be a JSON object, got {type(msg).__name__}",
                                False)
        return msg


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def make_error(req_id: Any, code: str, message: str, detail: Any = None) -> dict:
    return {"id": req_id, "error": {"code": code, "message": message, "detail": detail}}
