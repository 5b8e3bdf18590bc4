"""The live view under hostile visitors on loopback (a real LiveServer, real sockets; bounded
in count and time): a connection cap with clean refusals, a total deadline for a request's
headers, and an optional token for the pictures (issue 21 item 4)."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest

from retinaface.live import http as live_http
from retinaface.live.http import FrameBoard, LiveServer

JPEG = b"\xff\xd8fake-jpeg\xff\xd9"


@pytest.fixture
def serve():
    servers = []

    def make(**kwargs):
        board = FrameBoard()
        board.publish(JPEG, 7)
        server = LiveServer("127.0.0.1", 0, board, lambda: {"fps": 1.0}, lambda: True, **kwargs)
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


def _get(server, path, headers=None):
    conn = http.client.HTTPConnection(*server.address, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _slow(server, opened):
    """A visitor that sends half a request line and then nothing."""
    sock = socket.create_connection(server.address, timeout=10)
    sock.sendall(b"GET /metrics HT")
    opened.append(sock)
    return sock


def test_connections_past_the_cap_are_refused_with_503_and_no_thread(serve):
    server = serve(max_connections=4)
    opened = []
    try:
        for _ in range(4):
            _slow(server, opened)
        for _ in range(200):
            if threading.active_count() >= 4 + 2:
                break
            time.sleep(0.02)
        threads = threading.active_count()
        extra = [socket.create_connection(server.address, timeout=10) for _ in range(20)]
        opened += extra
        answers = [sock.recv(200) for sock in extra]
        assert all(a.startswith(b"HTTP/1.0 503 Service Unavailable") for a in answers)
        assert server.httpd.refused == 20
        assert threading.active_count() <= threads  # refusals start no thread
    finally:
        for sock in opened:
            sock.close()
    # once the slow ones are gone, a visitor is served again
    for _ in range(200):
        status, body = _get(server, "/metrics")
        if status == 200:
            break
        time.sleep(0.02)
    assert status == 200 and json.loads(body) == {"fps": 1.0}


def test_a_header_trickling_a_byte_at_a_time_is_cut_off_at_the_total_deadline(serve, monkeypatch):
    monkeypatch.setattr(live_http, "HEADER_DEADLINE_S", 1.0)  # per recv it stays 10 s
    server = serve()
    request = b"GET /metrics HTTP/1.0\r\nX-Pad: " + b"a" * 60 + b"\r\n\r\n"
    sock = socket.create_connection(server.address, timeout=10)
    sent = 0
    try:
        for byte in request:  # one byte every 0.1 s: each recv waits far less than 10 s
            sock.sendall(bytes([byte]))
            sent += 1
            time.sleep(0.1)
        reply = sock.recv(200)
    except (BrokenPipeError, ConnectionResetError):
        reply = b""
    finally:
        sock.close()
    assert sent < len(request) or not reply.startswith(b"HTTP/1.0 200")
    assert b"200 OK" not in reply


def test_a_token_guards_the_pictures_but_not_health_and_numbers(serve):
    server = serve(token="s3cret")
    assert _get(server, "/snapshot.jpg")[0] == 401
    assert _get(server, "/snapshot.jpg?token=wrong")[0] == 401
    assert _get(server, "/stream.mjpg")[0] == 401
    assert _get(server, "/snapshot.jpg?token=s3cret") == (200, JPEG)
    assert _get(server, "/snapshot.jpg", {"Authorization": "Bearer s3cret"}) == (200, JPEG)
    assert _get(server, "/metrics")[0] == 200
    assert _get(server, "/healthz")[0] == 200
    page = _get(server, "/?token=s3cret")[1].decode()
    assert 'get("token")' in page  # the page passes its token on to /snapshot.jpg


def test_without_a_token_the_pictures_are_open(serve):
    server = serve()
    assert _get(server, "/snapshot.jpg") == (200, JPEG)


def test_the_token_comes_from_the_flag_or_the_first_line_of_a_file(tmp_path):
    from retinaface.errors import SettingError as SourceError
    from retinaface.live.streamer import read_http_token

    secret = tmp_path / "token"
    secret.write_text("abcdefgh12\nignored\n")
    assert read_http_token(None, str(secret)) == "abcdefgh12"
    assert read_http_token("abcdefgh12", None) == "abcdefgh12"
    assert read_http_token(None, None) is None
    for bad in ("short", "has space in it", "tab\there12"):
        with pytest.raises(SourceError, match="--http-token: 8 or more printable"):
            read_http_token(bad, None)
    with pytest.raises(SourceError, match="not both"):
        read_http_token("abcdefgh12", str(secret))
    with pytest.raises(SourceError, match="cannot read"):
        read_http_token(None, str(tmp_path / "missing"))
