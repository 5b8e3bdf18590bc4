"""The live view of `runner stream` over HTTP (stdlib only; torch-free, Python 3.7+).

One JPEG per processed frame is published to a FrameBoard; every viewer reads the same bytes,
so more viewers cost socket writes in their own threads, never extra encoding or inference.

Visitors are not trusted: at most MAX_CONNECTIONS are served at once (more are refused with a
503 and closed, no thread started), a request's headers must arrive within HEADER_DEADLINE_S in
total (not per recv: a header trickling a byte every few seconds is cut off), and with a token
/snapshot.jpg and /stream.mjpg need it (`?token=` or `Authorization: Bearer`).
"""

import hmac
import html
import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BOUNDARY = "retinaface-frame"
VIEWER_WAIT_S = 0.5  # how long a viewer thread sleeps between checks for a new frame or a stop
CLIENT_TIMEOUT_S = 10  # a viewer that stops reading is dropped after this long
HEADER_DEADLINE_S = 10  # the whole request line and headers, from accept
MAX_CONNECTIONS = 32  # served at once; a 32-bit Pi runs out of thread stacks in the hundreds
BUSY = b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class FrameBoard(object):
    """The newest annotated JPEG and its sequence number, shared by all viewers."""

    def __init__(self):
        self._changed = threading.Condition()
        self.jpeg = None
        self.frame = None  # the source frame number of `jpeg`
        self.seq = 0
        self.closed = False

    def publish(self, jpeg, frame):
        with self._changed:
            self.jpeg, self.frame = jpeg, frame
            self.seq += 1
            self._changed.notify_all()

    def wait_newer(self, seq, timeout=VIEWER_WAIT_S):
        """(seq, jpeg, frame) once a newer JPEG exists; (seq, None, None) on timeout or close."""
        with self._changed:
            self._changed.wait_for(lambda: self.seq != seq or self.closed, timeout)
            if self.seq != seq and self.jpeg is not None:
                return self.seq, self.jpeg, self.frame
            return seq, None, None

    def close(self):
        with self._changed:
            self.closed = True
            self._changed.notify_all()


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>retinaface live</title>
<style>
body {{ font-family: sans-serif; margin: 16px; background: #111; color: #eee; }}
#view {{ max-width: 100%; max-height: 80vh; background: #222; display: block; }}
table {{ margin-top: 8px; border-collapse: collapse; }}
td {{ padding: 2px 12px 2px 0; }}
</style></head>
<body>
<h3>{title}</h3>
<img id="view" alt="latest annotated frame">
<table id="numbers"></table>
<p><a href="/stream.mjpg">/stream.mjpg</a> &middot; <a href="/metrics">/metrics</a></p>
<script>
// The picture is /snapshot.jpg fetched again as soon as the last one arrived: a page that
// always finishes loading (a plain MJPEG <img> never does), and one request per frame shown.
var view = document.getElementById("view");
var token = new URLSearchParams(location.search).get("token");  // passed on, if the page had it
var auth = token ? "&token=" + encodeURIComponent(token) : "";
function nextFrame() {{ view.src = "/snapshot.jpg?t=" + Date.now() + auth; }}
view.onload = function () {{ setTimeout(nextFrame, 30); }};
view.onerror = function () {{ setTimeout(nextFrame, 500); }};
function showNumbers() {{
  fetch("/metrics").then(function (r) {{ return r.json(); }}).then(function (m) {{
    var rows = [["fps", m.fps], ["faces", m.faces], ["frames", m.frames],
                ["dropped", m.dropped], ["latency p50 / p90 ms",
                 m.latency_ms.p50 + " / " + m.latency_ms.p90],
                ["model", m.model + " (" + m.backend + ")"], ["source", m.source],
                ["uptime s", m.uptime_s]];
    var table = document.getElementById("numbers");
    table.textContent = "";
    rows.forEach(function (row) {{
      var tr = table.insertRow(); tr.insertCell().textContent = row[0];
      tr.insertCell().textContent = row[1];
    }});
  }}).catch(function () {{}});
}}
nextFrame(); showNumbers(); setInterval(showNumbers, 1000);
</script>
</body></html>
"""


class _DeadlineReader(io.RawIOBase):
    """Socket reads that share one deadline: each recv waits only for the time left."""

    def __init__(self, sock, seconds):
        self._sock = sock
        self._deadline = time.monotonic() + seconds

    def readable(self):
        return True

    def readinto(self, buffer):
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("request headers took too long")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


def _token_of(path, headers):
    """The token a request offers: `?token=` in the query or `Authorization: Bearer`."""
    from urllib.parse import parse_qs, urlsplit

    offered = parse_qs(urlsplit(path).query).get("token", [""])[0]
    bearer = headers.get("Authorization", "")
    if not offered and bearer.startswith("Bearer "):
        offered = bearer[len("Bearer ") :].strip()
    return offered


def make_handler(board, metrics, healthy, token=None):
    """A request handler class bound to the board and two callables (metrics dict, bool);
    with `token`, /snapshot.jpg and /stream.mjpg answer 401 without it."""

    class LiveHandler(BaseHTTPRequestHandler):
        timeout = CLIENT_TIMEOUT_S
        server_version = "retinaface-live"

        def setup(self):
            BaseHTTPRequestHandler.setup(self)
            self.rfile = io.BufferedReader(_DeadlineReader(self.connection, HEADER_DEADLINE_S))

        def log_message(self, *args):  # no access log on stderr (journald would fill up)
            pass

        def _allowed(self):
            if token is None:
                return True
            offered = _token_of(self.path, self.headers).encode("utf-8", "replace")
            return hmac.compare_digest(offered, token.encode("utf-8"))

        def do_GET(self):
            self.connection.settimeout(CLIENT_TIMEOUT_S)  # headers are in: back to per-write
            path = self.path.split("?", 1)[0]
            routes = {
                "/": self._page,
                "/index.html": self._page,
                "/stream.mjpg": self._mjpeg,
                "/snapshot.jpg": self._snapshot,
                "/metrics": self._metrics,
                "/healthz": self._healthz,
            }
            route = routes.get(path)
            if route is None:
                self._send(404, "text/plain", b"not found\n")
                return
            if path in ("/snapshot.jpg", "/stream.mjpg") and not self._allowed():
                self._send(401, "text/plain", b"token required (?token=...)\n")
                return
            try:
                route()
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass  # the viewer went away

        def _send(self, status, content_type, body, frame=None):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if frame is not None:
                self.send_header("X-Frame", str(frame))
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def _page(self):
            title = "retinaface live: {}".format(metrics().get("source", ""))
            body = PAGE.format(title=html.escape(title)).encode("utf-8")
            self._send(200, "text/html; charset=utf-8", body)

        def _snapshot(self):
            jpeg, frame = board.jpeg, board.frame
            if jpeg is None:
                self._send(503, "text/plain", b"no frame yet\n")
            else:
                self._send(200, "image/jpeg", jpeg, frame)

        def _metrics(self):
            body = (json.dumps(metrics(), sort_keys=True) + "\n").encode("utf-8")
            self._send(200, "application/json", body)

        def _healthz(self):
            if healthy():
                self._send(200, "text/plain", b"ok\n")
            else:
                self._send(503, "text/plain", b"no frame processed recently\n")

        def _mjpeg(self):
            self.send_response(200)
            self.send_header(
                "Content-Type", "multipart/x-mixed-replace; boundary={}".format(BOUNDARY)
            )
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            seq = 0
            while not board.closed:
                seq, jpeg, frame = board.wait_newer(seq)
                if jpeg is None:
                    continue
                head = (
                    "--{}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n"
                    "X-Frame: {}\r\n\r\n".format(BOUNDARY, len(jpeg), frame)
                )
                self.wfile.write(head.encode("ascii") + jpeg + b"\r\n")
                self.wfile.flush()

    return LiveHandler


class _BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most `slots` at once; past that (or when no thread can be
    started) the connection gets a 503 and is closed at once, with no thread and no traceback."""

    daemon_threads = True
    slots = MAX_CONNECTIONS
    refused = 0  # connections turned away (a count for tests and logs)

    def server_activate(self):
        ThreadingHTTPServer.server_activate(self)
        self._free = threading.BoundedSemaphore(self.slots)

    def process_request(self, request, client_address):
        if not self._free.acquire(False):
            self._refuse(request)
            return
        try:
            ThreadingHTTPServer.process_request(self, request, client_address)
        except RuntimeError:  # "can't start new thread"
            self._free.release()
            self._refuse(request)

    def process_request_thread(self, request, client_address):
        try:
            ThreadingHTTPServer.process_request_thread(self, request, client_address)
        finally:
            self._free.release()

    def _refuse(self, request):
        self.refused += 1
        try:
            request.setblocking(False)
            request.send(BUSY)
        except OSError:
            pass
        self.shutdown_request(request)


class LiveServer(object):
    """A ThreadingHTTPServer on its own thread; `stop()` ends it and every viewer within ~1 s."""

    def __init__(
        self, host, port, board, metrics, healthy, token=None, max_connections=MAX_CONNECTIONS
    ):
        self.board = board
        handler = make_handler(board, metrics, healthy, token)
        self.httpd = _BoundedHTTPServer((host, port), handler, bind_and_activate=False)
        self.httpd.slots = max_connections
        try:
            self.httpd.server_bind()
            self.httpd.server_activate()
        except OSError:
            self.httpd.server_close()
            raise
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, name="live-http"
        )
        self.thread.daemon = True

    @property
    def address(self):
        host, port = self.httpd.server_address[:2]
        return host, port

    def start(self):
        self.thread.start()

    def stop(self):
        self.board.close()
        self.httpd.shutdown()
        self.httpd.server_close()
