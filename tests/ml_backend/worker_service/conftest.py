"""A worker process per test module, raw-socket helpers."""
from __future__ import annotations

import json
import socket
import struct

import pytest

from ml_backend.client import WorkerClient
from ml_backend.service import protocol as P


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    d = tmp_path_factory.mktemp("worker")
    with WorkerClient.spawn(data_dir=str(d), log_file=str(d / "worker.log"),
                            extra_args=("--hello-timeout", "1.5")) as w:
        w.data_dir = d
        yield w


class Raw:
    """A bare socket speaking frames by hand."""

    def __init__(self, w, hello: bool = True):
        self.s = socket.create_connection((w.ready["address"], w.ready["port"]), timeout=10)
        self.dec = P.Decoder()
        if hello:
            self.send({"id": 0, "method": "hello", "params": {"protocol": P.PROTOCOL_VERSION, "token": w.token}})
            assert "result" in self.recv()

    def send(self, msg) -> None:
        self.s.sendall(P.encode(msg))

    def send_raw(self, data: bytes) -> None:
        self.s.sendall(data)

    def recv(self, timeout: float = 10.0):
        """The next message, or None when the server closed the connection."""
        self.s.settimeout(timeout)
        while True:
            m = self.dec.next_message()
            if m is not None:
                return m
            data = self.s.recv(65536)
            if not data:
                return None
            self.dec.feed(data)

    def closed_by_server(self, timeout: float = 10.0) -> bool:
        self.s.settimeout(timeout)
        try:
            while True:
                data = self.s.recv(65536)
                if not data:
                    return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False

    def close(self):
        self.s.close()


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def jframe(obj) -> bytes:
    return frame(json.dumps(obj).encode())
