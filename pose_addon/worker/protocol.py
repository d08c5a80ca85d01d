"""Standard-library mirror of the worker's wire format (the definition: ``ml_backend/service/protocol.py``,
prose: ``docs/protocol.md``). The extension cannot import ``ml_backend``; a test checks both encode and decode
byte for byte alike.

Frame: 4-byte big-endian length + UTF-8 JSON object, at most :data:`MAX_FRAME` bytes; first message ``hello``.
"""
import json
import struct

PROTOCOL_VERSION = 1
#: arguments that start the worker with its environment's Python (the default of Worker Arguments)
WORKER_ARGS = "-m ml_backend serve"
MAX_FRAME = 16 * 1024 * 1024
HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size

#: Worker exit codes (``ml_backend/service/server.py``) and what a user should do about them.
EXIT_MESSAGES = {
    0: "The worker stopped",
    1: "The worker crashed: open its log for the traceback",
    2: "The worker refused its arguments: check Worker Arguments in the preferences",
    3: "The worker could not listen on a local port: another program may hold it",
    4: "The worker's token file is missing or readable by others",
    5: "The worker environment is incomplete: install it (./dev.sh setup) or pick another Worker Python",
    6: "The worker stopped because it lost its parent process",
}


class FrameError(Exception):
    """Broken framing (``fatal``: close the connection) or a frame that is not a JSON object."""

    def __init__(self, code, message, fatal):
        super().__init__(message)
        self.code = code
        self.fatal = fatal


def encode(msg):
    body = json.dumps(msg, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    if len(body) > MAX_FRAME:
        raise ValueError("message of %d bytes exceeds the %d byte frame limit" % (len(body), MAX_FRAME))
    return HEADER.pack(len(body)) + body


class Decoder:
    """Incremental: ``feed(bytes)``, then ``next_message()`` until it returns None."""

    def __init__(self, max_frame=MAX_FRAME):
        self.max_frame = max_frame
        self._buf = bytearray()
        self.broken = None

    def feed(self, data):
        if self.broken is None:
            self._buf += data

    def next_message(self):
        if self.broken is not None:
            raise self.broken
        if len(self._buf) < HEADER_SIZE:
            return None
        (n,) = HEADER.unpack_from(self._buf, 0)
        if n == 0 or n > self.max_frame:
            self.broken = FrameError("bad_frame" if n == 0 else "frame_too_large",
                                     "empty frame" if n == 0 else "frame of %d bytes exceeds the limit" % n, True)
            self._buf = bytearray()
            raise self.broken
        if len(self._buf) < HEADER_SIZE + n:
            return None
        body = bytes(self._buf[HEADER_SIZE:HEADER_SIZE + n])
        del self._buf[:HEADER_SIZE + n]
        try:
            msg = json.loads(body.decode("utf-8"), parse_constant=_reject)
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise FrameError("bad_json", "frame is not UTF-8 JSON: %s" % str(e)[:200], False) from None
        if not isinstance(msg, dict):
            raise FrameError("bad_request", "a message must be a JSON object", False)
        return msg


def _reject(name):
    raise ValueError("%s is not JSON" % name)
