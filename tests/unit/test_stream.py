"""`runner stream` on a video file made from the shared photos: real process, real HTTP, real signals."""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import cv2
import numpy as np
import pytest

from retinaface.detector import Detector
from retinaface.live.streamer import EXIT_OK, JsonLines
from tests.fixtures.browser import chromium_command
from tests.fixtures.video import make_video, read_frames
from tests.paths import REPO


@pytest.fixture(scope="module")
def model(models_dir):
    return models_dir / "fp32-opt.onnx"


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    # 10 frames per second: slow enough that a loaded 2-core machine still processes several.
    return make_video(tmp_path_factory.mktemp("video") / "faces.avi", frames_per_photo=5, fps=10)


def stream_cmd(model, source, *extra):
    return [
        sys.executable,
        "-m",
        "retinaface.runner",
        "stream",
        "--model",
        str(model),
        "--source",
        str(source),
        *extra,
    ]


def run_stream(*argv, timeout=300):
    return subprocess.run(list(argv), cwd=REPO, capture_output=True, text=True, timeout=timeout)


class Streaming:
    """A `runner stream --http 127.0.0.1:0` process; the URL is read from its first line."""

    def __init__(self, cmd):
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        first = self.proc.stdout.readline()
        found = re.search(r"on (http://127\.0\.0\.1:\d+)/", first)
        assert found, first + self.proc.stderr.read()
        self.url = found.group(1)

    def get(self, path):
        with urllib.request.urlopen(self.url + path, timeout=30) as reply:
            return reply.status, reply.headers.get("Content-Type"), reply.read()

    def metrics(self):
        return json.loads(self.get("/metrics")[2])

    def wait_frames(self, count, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            metrics = self.metrics()
            if metrics["frames"] >= count:
                return metrics
            time.sleep(0.2)
        raise AssertionError("fewer than {} frames processed: {}".format(count, metrics))

    def terminate(self):
        """SIGTERM; returns (exit code, stdout rest, stderr). A runner that ignores the signal
        fails the test loudly (TimeoutExpired after 30 s); how fast it stops is not asserted."""
        self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=30)
        return self.proc.returncode, out, err

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def streaming(model, video, tmp_path):
    started = []

    def start(*extra):
        started.append(
            Streaming(stream_cmd(model, video, "--loop", "--http", "127.0.0.1:0", *extra))
        )
        return started[-1]

    yield start
    for process in started:
        process.kill()


def same_faces(got, want):
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert np.allclose(a["box"], b["box"], atol=0.05)
        assert np.allclose(a["landmarks"], b["landmarks"], atol=0.05)
        assert abs(a["score"] - b["score"]) < 1e-3


def test_json_lines_equal_single_image_detect(model, video, tmp_path):
    """Each line's faces are what `detect` finds on the same frame of the file; nothing is lost."""
    lines = tmp_path / "faces.jsonl"
    result = run_stream(*stream_cmd(model, video, "--jsonl", str(lines)))
    assert result.returncode == EXIT_OK, result.stderr
    # End of the file without --loop: one line naming it, frames processed + dropped = all 20.
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("end of video file {}".format(video)), result.stdout
    processed, dropped = map(
        int, re.search(r"(\d+) frames processed .* (\d+) dropped", last).groups()
    )
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert len(records) == processed >= 2 and processed + dropped == 20
    numbers = [r["frame"] for r in records]
    assert numbers == sorted(set(numbers)) and numbers[-1] == 19  # the last frame is never dropped
    frames = read_frames(video)
    detector = Detector(str(model))
    for record in records:
        want = detector.detect(frames[record["frame"]])
        same_faces(record["faces"], want)
    assert sum(len(r["faces"]) for r in records) > 0


def test_http_endpoints_and_sigterm(streaming, tmp_path):
    lines = tmp_path / "live.jsonl"
    live = streaming("--jsonl", str(lines))
    before = live.wait_frames(2)
    assert set(before) >= {"frames", "dropped", "fps", "latency_ms", "faces", "source"}
    assert set(before) >= {"model", "backend", "uptime_s"}
    assert before["model"] == "fp32-opt.onnx" and before["backend"] == "onnxruntime"
    assert (
        before["latency_ms"]["p50"] > 0
        and before["latency_ms"]["p90"] >= before["latency_ms"]["p50"]
    )

    status, kind, body = live.get("/snapshot.jpg")
    assert (status, kind) == (200, "image/jpeg")
    assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape == (480, 640, 3)
    assert live.get("/healthz")[0] == 200
    status, kind, page = live.get("/")
    assert status == 200 and b"/snapshot.jpg" in page and b"/metrics" in page
    with pytest.raises(urllib.error.HTTPError) as missing:
        live.get("/nothing")
    assert missing.value.code == 404

    # Three viewers of /stream.mjpg at once, each reading three newer and newer frames.
    viewers = [mjpeg_parts(live.url) for _ in range(3)]
    for viewer in viewers:
        parts = [next(viewer) for _ in range(3)]
        for _, part in parts:
            image = cv2.imdecode(np.frombuffer(part, np.uint8), cv2.IMREAD_COLOR)
            assert image.shape[:2] == (480, 640)
        numbers = [number for number, _ in parts]
        assert numbers == sorted(set(numbers))  # each part is a newer processed frame
    assert live.metrics()["frames"] > before["frames"]

    code, out, err = live.terminate()
    assert code == EXIT_OK, err
    assert "stopped by SIGTERM" in out and "Traceback" not in err
    text = lines.read_text()
    assert text.endswith("\n")
    assert all(json.loads(line)["faces"] is not None for line in text.splitlines())
    for viewer in viewers:
        viewer.close()


def mjpeg_parts(url):
    """Yield (frame number, JPEG) of each part of a multipart/x-mixed-replace reply, read with http.client."""
    host, port = url.rsplit("/", 1)[-1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", "/stream.mjpg")
    reply = conn.getresponse()
    assert reply.status == 200
    boundary = re.search(r"boundary=(\S+)", reply.headers["Content-Type"]).group(1)
    try:
        while True:
            assert reply.fp.readline().strip() == b"--" + boundary.encode()
            headers = {}
            for line in iter(reply.fp.readline, b"\r\n"):
                key, _, value = line.decode().partition(":")
                headers[key.strip().lower()] = value.strip()
            assert headers["content-type"] == "image/jpeg"
            body = reply.fp.read(int(headers["content-length"]))
            assert reply.fp.read(2) == b"\r\n"
            yield int(headers["x-frame"]), body
    finally:
        conn.close()


def box_green(rgb):
    """Pixels of the green the boxes are drawn in (0, 200, 0), not of a natural green."""
    r, g, b = (rgb[..., i].astype(int) for i in range(3))
    return (g > 100) & (g - np.maximum(r, b) > 60)


def test_chromium_screenshot_shows_boxes(streaming, model, video, tmp_path):
    live = streaming()
    live.wait_frames(2)
    shot = tmp_path / "live.png"
    subprocess.run(
        chromium_command(
            tmp_path / "chromium",
            "--screenshot={}".format(shot),
            "--window-size=1000,800",
            # The page keeps fetching snapshots; virtual time ends the load after 4 s.
            "--virtual-time-budget=4000",
            live.url + "/",
        ),
        capture_output=True,
        timeout=180,
    )
    if os.environ.get("RETINAFACE_SCREENSHOT"):  # how docs/live.png was made
        shot_copy = os.environ["RETINAFACE_SCREENSHOT"]
        with open(shot_copy, "wb") as handle:
            handle.write(shot.read_bytes())
    page = cv2.imread(str(shot), cv2.IMREAD_COLOR)
    assert page is not None and page.shape[:2] == (800, 1000)
    # Find which frame of the video the page shows, and where (the page shows it at 1:1).
    frames = read_frames(video)
    scores = [cv2.minMaxLoc(cv2.matchTemplate(page, f, cv2.TM_CCOEFF_NORMED))[1::2] for f in frames]
    best = int(np.argmax([score for score, _ in scores]))
    score, (x, y) = scores[best]
    assert score > 0.8, score
    shown = page[y : y + 480, x : x + 640]
    # Green the boxes are drawn in, where the raw frame has none, lies on the detected boxes.
    added = box_green(shown[..., ::-1]) & ~box_green(frames[best][..., ::-1])
    outlines = np.zeros((480, 640), np.uint8)
    for face in Detector(str(model)).detect(frames[best]):
        x1, y1, x2, y2 = (int(round(v)) for v in face["box"])
        cv2.rectangle(outlines, (x1, y1), (x2, y2), 1, 5)
        # The score sits on a filled dark-green label just above the box (or inside its top).
        cv2.rectangle(outlines, (x1 - 5, y1 - 40), (x1 + 90, y1 + 25), 1, -1)
    assert outlines.any(), "the frame shown has no faces to draw"
    on_boxes = int((added & (outlines > 0)).sum())
    assert on_boxes > 200 and on_boxes > 0.8 * added.sum(), (on_boxes, int(added.sum()))
    assert b"fps" in live.get("/")[2]
    live.terminate()


def test_bad_source_is_one_line(model, tmp_path):
    missing = tmp_path / "nothere.avi"
    result = run_stream(*stream_cmd(model, missing))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ["error: video file not found: {}".format(missing)]


def test_bad_http_address_is_one_line(model, video):
    result = run_stream(*stream_cmd(model, video, "--http", "localhost:http"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: --http must be HOST:PORT (e.g. 127.0.0.1:8080), not 'localhost:http'"
    ]


def test_json_lines_rotate_with_complete_lines(tmp_path):
    path = tmp_path / "faces.jsonl"
    writer = JsonLines(path, max_bytes=300, keep=2)
    for number in range(40):
        writer.write({"frame": number, "t": 0.0, "faces": []})
    writer.close()
    files = [path, tmp_path / "faces.jsonl.1", tmp_path / "faces.jsonl.2"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in files)
    numbers = []
    for file in reversed(files):
        assert 0 < file.stat().st_size <= 300
        numbers += [json.loads(line)["frame"] for line in file.read_text().splitlines()]
    # The newest lines are kept, in order, none split across files.
    assert numbers == list(range(40 - len(numbers), 40))


def wait_for(condition, what, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.3)
    raise AssertionError("timed out waiting for " + what)


def test_network_source_reconnects_with_back_off(model, video, tmp_path):
    """A second runner reads the first one's /stream.mjpg; the first dies and comes back."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    upstream_cmd = stream_cmd(model, video, "--loop", "--http", f"127.0.0.1:{port}")
    lines, log = tmp_path / "net.jsonl", tmp_path / "net.err"
    upstream = Streaming(upstream_cmd)
    with open(log, "w") as err:
        reader = subprocess.Popen(
            stream_cmd(model, f"http://127.0.0.1:{port}/stream.mjpg", "--jsonl", str(lines)),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    try:
        count = lambda: len(lines.read_text().splitlines()) if lines.exists() else 0  # noqa: E731
        wait_for(lambda: count() >= 2, "frames from the network source")
        upstream.terminate()
        wait_for(lambda: "cannot reach" in log.read_text(), "a failed reconnect")
        assert reader.poll() is None  # a network source is retried, not given up
        seen = count()
        upstream = Streaming(upstream_cmd)
        wait_for(lambda: "reconnected to" in log.read_text(), "the reconnect")
        wait_for(lambda: count() > seen, "frames after the reconnect")
        reader.send_signal(signal.SIGTERM)
        out, _ = reader.communicate(timeout=30)
        assert reader.returncode == EXIT_OK and "stopped by SIGTERM" in out
    finally:
        upstream.kill()
        if reader.poll() is None:
            reader.kill()
            reader.communicate()
    text = log.read_text()
    assert "lost http://127.0.0.1:{}/stream.mjpg; reconnecting".format(port) in text
    assert "next try in 2 s" in text


def test_max_frames_stops_after_that_many(model, video, tmp_path):
    lines = tmp_path / "two.jsonl"
    result = run_stream(
        *stream_cmd(model, video, "--loop", "--max-frames", "2", "--jsonl", str(lines))
    )
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stdout.splitlines()[-1].startswith(
        "stopped by --max-frames 2: 2 frames processed"
    )
    assert len(lines.read_text().splitlines()) == 2


def test_page_escapes_the_source_name(model, video, tmp_path):
    """A file name is text on the page, never markup."""
    odd = tmp_path / "<img src=x onerror=alert(1)>.avi"
    shutil.copy(video, odd)
    live = Streaming(stream_cmd(model, odd, "--loop", "--http", "127.0.0.1:0"))
    try:
        page = live.get("/")[2].decode()
        assert "&lt;img src=x onerror=alert(1)&gt;.avi" in page and "<img src=x" not in page
    finally:
        live.kill()
