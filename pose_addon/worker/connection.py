"""A non-blocking client connection, pumped by :meth:`Connection.service` from a ``bpy.app.timers`` callback.

No call here ever waits: connect is non-blocking, reads and writes go as far as the socket allows, and every
request carries a deadline checked on each service call. Replies arrive as ``callback(result, error)``
(``error``: ``{"code", "message", "detail"}`` or None).
"""
import errno
import itertools
import select
import socket
import time

from . import protocol as P

READ_CHUNK = 1 << 16
MAX_READ_PER_SERVICE = 8 << 20  # bound the time one timer tick spends reading


class Connection:
    """States: ``connecting`` -> ``handshake`` -> ``ready`` -> ``closed`` (``close_reason`` says why)."""

    def __init__(self, address, token, client_name="blender", connect_timeout=10.0, on_event=None):
        self.address = address
        self.token = token
        self.client_name = client_name
        self.on_event = on_event
        self.state = "connecting"
        self.close_reason = ""
        self.server_info = None
        self._ids = itertools.count(1)
        self._pending = {}  # id -> (callback, deadline)
        self._out = bytearray()
        self._dec = P.Decoder()
        self._deadline = time.monotonic() + connect_timeout
        family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        if family == socket.AF_INET:
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        err = self.sock.connect_ex(address)
        if err not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN, getattr(errno, "WSAEWOULDBLOCK", -1)):
            self._fail("cannot connect to the worker at %s: %s" % (address, errno.errorcode.get(err, err)))
            return
        self._send_msg({"id": 0, "method": "hello",
                        "params": {"protocol": P.PROTOCOL_VERSION, "token": token, "client": client_name}})
        self._pending[0] = (self._on_hello, self._deadline)

    # ----------------------------------------------------------------------------------- API
    @property
    def ready(self):
        return self.state == "ready"

    @property
    def n_pending(self):
        return len(self._pending)

    def request(self, method, params=None, callback=None, timeout=120.0):
        """Queue a request; returns its id. ``callback(result, error)`` runs inside a later :meth:`service`."""
        req_id = next(self._ids)
        if self.state == "closed":
            if callback:
                callback(None, {"code": "disconnected", "message": self.close_reason or "not connected",
                                "detail": None})
            return req_id
        self._send_msg({"id": req_id, "method": method, "params": params or {}, "timeout": timeout})
        self._pending[req_id] = (callback, time.monotonic() + timeout + 5.0)
        return req_id

    def service(self):
        """Do whatever the socket allows now without waiting; run due callbacks. Returns True if anything moved."""
        if self.state == "closed":
            return False
        moved = False
        try:
            r, w, _ = select.select([self.sock], [self.sock] if (self._out or self.state == "connecting") else [],
                                    [], 0)
        except (OSError, ValueError) as e:
            self._fail("socket error: %s" % e)
            return True
        if self.state == "connecting" and w:
            err = self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                self._fail("cannot connect to the worker at %s: %s" % (self.address, errno.errorcode.get(err, err)))
                return True
            self.state = "handshake"
            moved = True
        if self.state != "connecting" and w and self._out:
            try:
                n = self.sock.send(self._out)
                del self._out[:n]
                moved = True
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as e:
                self._fail("connection lost while sending: %s" % e)
                return True
        if r and self.state != "connecting":
            got = 0
            while got < MAX_READ_PER_SERVICE:
                try:
                    data = self.sock.recv(READ_CHUNK)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as e:
                    self._fail("connection lost: %s" % e)
                    return True
                if not data:
                    self._fail("the worker closed the connection")
                    return True
                got += len(data)
                self._dec.feed(data)
                moved = True
                if len(data) < READ_CHUNK:
                    break
            self._dispatch()
        self._expire()
        return moved

    def close(self, reason="closed by the client"):
        if self.state != "closed":
            self._fail(reason)

    # ----------------------------------------------------------------------------------- internals
    def _send_msg(self, msg):
        self._out += P.encode(msg)

    def _dispatch(self):
        while self.state != "closed":
            try:
                msg = self._dec.next_message()
            except P.FrameError as e:
                if e.fatal:
                    self._fail("the worker sent a broken frame: %s" % e)
                    return
                continue
            if msg is None:
                return
            if "event" in msg and "id" not in msg:
                if self.on_event:
                    self.on_event(msg)
                continue
            req_id = msg.get("id")
            if req_id is None and "error" in msg:  # a connection-level error (e.g. refused hello)
                err = msg["error"] or {}
                self._fail("worker: %s" % err.get("message", "error"))
                return
            entry = self._pending.pop(req_id, None)
            if entry is None:
                continue  # a reply after its deadline passed
            cb = entry[0]
            if cb:
                err = msg.get("error")
                cb(None if err else msg.get("result"), err)

    def _expire(self):
        now = time.monotonic()
        if self.state == "connecting" and now > self._deadline:
            self._fail("the worker did not accept the connection in time")
            return
        for req_id, (cb, deadline) in list(self._pending.items()):
            if now > deadline:
                del self._pending[req_id]
                if cb:
                    cb(None, {"code": "timeout", "message": "no reply from the worker in time", "detail": None})

    def _on_hello(self, result, error):
        if error:
            self._fail("the worker refused the connection: %s" % error.get("message"))
            return
        self.server_info = result
        self.state = "ready"

    def _fail(self, reason):
        self.state = "closed"
        self.close_reason = reason
        try:
            self.sock.close()
        except OSError:
            pass
        pending, self._pending = self._pending, {}
        for req_id, (cb, _) in pending.items():
            if cb and req_id != 0:
                cb(None, {"code": "disconnected", "message": reason, "detail": None})
