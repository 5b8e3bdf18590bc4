"""`runner ros` in a real ROS graph: Debian's rosmaster on loopback, a replay publisher of the
shared photographs, a listener; detections compared with single-image `runner detect`."""

import json
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from tests.paths import REPO
from tests.unit.test_stream import same_faces

IMAGES = REPO.parent / "shared" / "data" / "images"
if not IMAGES.is_dir():
    IMAGES = REPO / "data" / "images"


@pytest.fixture(scope="module")
def model(models_dir):
    return models_dir / "fp32-opt.onnx"


def detect(model, image, folder):
    """What `runner detect --json` finds on one file: the reference for every frame."""
    out = folder / (image.stem + ".json")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "retinaface.runner",
            "detect",
            "--model",
            str(model),
            "--image",
            str(image),
            "--json",
            str(out),
        ],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=300,
    )
    faces = json.loads(out.read_text())["faces"]
    assert faces, f"{image.name}: no face, the comparison would prove nothing"
    return faces


def lines(path, topic=None):
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if topic is None or r["topic"] == topic]


def wait_for(what, check, timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def wait_ready(proc):
    wait_for(f"{proc.name} to be ready", lambda: "ready" in proc.out.read_text(), 120)


def stop(proc, signum=signal.SIGTERM):
    """Send `signum`; (exit code, stdout, stderr)."""
    proc.send_signal(signum)
    code = proc.wait(60)
    return code, proc.out.read_text(), proc.err.read_text()


def frame_of(record):
    name, index = record["frame_id"].rsplit("#", 1)
    return name, int(index)


def check_stamps(records):
    for record in records:
        _, index = frame_of(record)
        assert record["stamp"] == {"secs": 1000 + index, "nsecs": index * 1000}


def test_raw_images_equal_single_image_detect_bad_frames_skipped_sigterm(
    nodes, rosmaster, model, tmp_path
):
    """bgr8, rgb8 and mono8 frames at 4 Hz with malformed messages between them."""
    gray = tmp_path / "portrait_bw1-gray.png"
    cv2.imwrite(
        str(gray), cv2.cvtColor(cv2.imread(str(IMAGES / "portrait_bw1.jpg")), cv2.COLOR_BGR2GRAY)
    )
    want = {
        "group.jpg": detect(model, IMAGES / "group.jpg", tmp_path),
        "selfie.jpg": detect(model, IMAGES / "selfie.jpg", tmp_path),
        "portrait_bw1.jpg": detect(model, gray, tmp_path),  # what mono8 of it holds
    }
    out = tmp_path / "heard.jsonl"
    listener = nodes.tool(
        "listen", "listen", "--out", out, "--faces", "/t1/faces", "--stats", "/t1/stats"
    )
    wait_ready(listener)
    node = nodes.node(
        "--model",
        model,
        "--image-topic",
        "/t1/image",
        "--faces-topic",
        "/t1/faces",
        "--stats-topic",
        "/t1/stats",
        "--threads",
        "1",
    )
    replay = nodes.tool(
        "replay",
        "replay",
        "--topic",
        "/t1/image",
        "--kind",
        "raw",
        "--encodings",
        "bgr8,rgb8,mono8",
        "--rate",
        "4",
        "--cycles",
        "3",
        "--bad",
        *[IMAGES / name for name in want],
    )
    assert replay.wait(300) == 0, replay.err.read_text()
    last = "portrait_bw1.jpg#8"
    wait_for(last, lambda: any(r["data"]["frame_id"] == last for r in lines(out, "/t1/faces")), 60)
    assert "/t1/annotated" not in rosmaster.published()  # off unless asked for

    code, stdout, stderr = stop(node)
    assert code == 0, stderr
    assert "stopped by SIGTERM" in stdout.splitlines()[-1], stdout
    assert "reading /t1/image (sensor_msgs/Image)" in stdout
    assert "skipped a bad image message" in stdout + stderr
    records = [r["data"] for r in lines(out, "/t1/faces")]
    seen = {frame_of(r)[0] for r in records}
    assert seen == set(want)  # every photograph, in each of the three encodings
    # Frames after the malformed messages were processed: the node kept going.
    assert max(frame_of(r)[1] for r in records) == 8 and len(records) >= 6
    check_stamps(records)
    for record in records:
        name, _ = frame_of(record)
        same_faces(record["faces"], want[name])
        image = cv2.imread(str(IMAGES / name))
        assert (record["width"], record["height"]) == (image.shape[1], image.shape[0])
        assert record["model"] == "fp32-opt.onnx" and record["backend"] == "onnxruntime"
    stats = [r["data"] for r in lines(out, "/t1/stats")]
    assert stats and stats[-1]["frames"] == len(records)
    assert 1 <= stats[-1]["bad"] <= 3  # 3 bad messages sent; one may have been dropped unseen
    assert stats[-1]["latency_ms"]["p50"] > 0 and stats[-1]["fps"] > 0


def test_compressed_images_and_annotated_topic_sigint(nodes, rosmaster, model, tmp_path):
    """JPEG and PNG bytes as sensor_msgs/CompressedImage, chosen from the topic's type."""
    names = ("group.jpg", "einstein.png")
    want = {name: detect(model, IMAGES / name, tmp_path) for name in names}
    out, saved = tmp_path / "heard.jsonl", tmp_path / "annotated"
    saved.mkdir()
    listener = nodes.tool(
        "listen",
        "listen",
        "--out",
        out,
        "--faces",
        "/t2/faces",
        "--annotated",
        "/t2/annotated",
        "--save",
        saved,
    )
    wait_ready(listener)
    node = nodes.node(
        "--model",
        model,
        "--image-topic",
        "/t2/image/compressed",
        "--faces-topic",
        "/t2/faces",
        "--annotated-topic",
        "/t2/annotated",
    )
    replay = nodes.tool(
        "replay",
        "replay",
        "--topic",
        "/t2/image/compressed",
        "--kind",
        "compressed",
        "--rate",
        "3",
        "--cycles",
        "2",
        "--bad",
        *[IMAGES / name for name in names],
    )
    assert replay.wait(300) == 0, replay.err.read_text()
    wait_for(
        "the last frame",
        lambda: any(r["data"]["frame_id"] == "einstein.png#3" for r in lines(out, "/t2/faces")),
        60,
    )
    wait_for(
        "its annotated image",
        lambda: any(r["frame_id"] == "einstein.png#3" for r in lines(out, "/t2/annotated")),
        60,
    )
    code, stdout, stderr = stop(node, signal.SIGINT)
    assert code == 0, stderr
    assert "stopped by SIGINT" in stdout.splitlines()[-1], stdout
    assert "reading /t2/image/compressed (sensor_msgs/CompressedImage)" in stdout
    records = [r["data"] for r in lines(out, "/t2/faces")]
    assert {frame_of(r)[0] for r in records} == set(names)
    check_stamps(records)
    for record in records:
        same_faces(record["faces"], want[frame_of(record)[0]])
    # The annotated image is the frame with the faces drawn: equal away from them, not on a box.
    annotated = lines(out, "/t2/annotated")[-1]
    assert annotated["encoding"] == "bgr8"
    drawn = cv2.imread(str(saved / annotated["file"]))
    original = cv2.imread(str(IMAGES / "einstein.png"))
    assert drawn.shape == original.shape
    x1, y1, x2, y2 = [int(round(v)) for v in want["einstein.png"][0]["box"]]
    assert not np.array_equal(drawn[y1 : y2 + 1, x1], original[y1 : y2 + 1, x1])  # the box's edge
    assert np.array_equal(drawn[:5, :5], original[:5, :5])  # a corner far from any face


def test_newest_frame_only_a_burst_is_dropped_not_queued(nodes, model, tmp_path):
    """30 frames back to back: the node skips what it had no time for and ends on the newest."""
    out = tmp_path / "heard.jsonl"
    listener = nodes.tool(
        "listen", "listen", "--out", out, "--faces", "/t3/faces", "--stats", "/t3/stats"
    )
    wait_ready(listener)
    node = nodes.node(
        "--model",
        model,
        "--image-topic",
        "/t3/image",
        "--faces-topic",
        "/t3/faces",
        "--stats-topic",
        "/t3/stats",
        "--threads",
        "1",
    )
    replay = nodes.tool(
        "replay",
        "replay",
        "--topic",
        "/t3/image",
        "--burst",
        "--cycles",
        "30",
        IMAGES / "crowd.jpg",
    )
    assert replay.wait(300) == 0, replay.err.read_text()
    wait_for(
        "the newest frame",
        lambda: any(r["data"]["frame_id"] == "crowd.jpg#29" for r in lines(out, "/t3/faces")),
        60,
    )
    time.sleep(2.5)  # two more stats periods: nothing else is still queued
    code, stdout, _ = stop(node)
    assert code == 0
    records = [r["data"] for r in lines(out, "/t3/faces")]
    indexes = [frame_of(r)[1] for r in records]
    assert indexes == sorted(set(indexes)) and indexes[-1] == 29
    assert len(records) < 30, "every frame of the burst was processed: frames were queued"
    assert lines(out, "/t3/stats")[-1]["data"]["frames"] == len(records)


def test_settings_from_ros_parameters_and_bad_ones(nodes, model, tmp_path):
    """~model, ~conf and ~image_topic as private parameters (_name:=value); flags win."""
    want = detect(model, IMAGES / "group.jpg", tmp_path)
    strict = [face for face in want if face["score"] >= 0.9961]
    assert 0 < len(strict) < len(want), "the threshold would not show in the result"
    out = tmp_path / "heard.jsonl"
    listener = nodes.tool("listen", "listen", "--out", out, "--faces", "/t4/faces")
    wait_ready(listener)
    node = nodes.node(
        "--name",
        "t4",
        "--faces-topic",
        "/t4/faces",
        f"_model:={model}",
        "_conf:=0.9961",
        "_image_topic:=/t4/image",
        "_faces_topic:=/t4/ignored",
    )
    replay = nodes.tool(
        "replay",
        "replay",
        "--topic",
        "/t4/image",
        "--rate",
        "3",
        "--cycles",
        "2",
        IMAGES / "group.jpg",
    )
    assert replay.wait(300) == 0, replay.err.read_text()
    wait_for("a frame", lambda: lines(out, "/t4/faces"), 60)
    assert stop(node)[0] == 0
    for record in lines(out, "/t4/faces"):
        same_faces(record["data"]["faces"], strict)

    # A parameter from the graph is data to check: one line, exit 1, before any work.
    bad = nodes.node("--name", "t4bad", f"_model:={model}", "_threads:=many")
    assert bad.wait(120) == 1
    assert bad.err.read_text().strip().splitlines()[-1] == (
        "error: ROS parameter ~threads: 'many' must be a whole number from 1 to 64"
    )
    assert "Traceback" not in bad.err.read_text()
