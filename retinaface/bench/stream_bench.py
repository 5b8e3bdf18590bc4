"""Stream throughput against single-frame latency on this host (`invoke bench-stream`, and
`runner bench --stream` on a Pi through `invoke remote-bench --stream`). Shipped with the runner:
Python 3.7+, numpy 1.16+, cv2 imported lazily.

One run, one model, one size, one process: the single-frame end-to-end time (pre + infer + post,
median) gives the FPS a one-frame-at-a-time loop could reach, 1000 / e2e ms; the stream pipeline
(runner stream's Streamer: capture thread, newest-frame slot, detector) processes a video file
made from photographs (the shared ones here, the probe photograph on a host), replayed three times faster than inference goes, so capture
and decode overlap inference and most frames drop. The two alternate in rounds, so a load from other
processes that changes during the run weighs on both alike.
"""

import tempfile
import time
from pathlib import Path

import numpy as np

from ..detector import Detector
from ..errors import ModelError
from ..names import parse_size

PHOTOS = ("group.jpg", "crowd.jpg", "selfie.jpg", "src_meeting.jpg")
FRAME_SIZE = (640, 480)
WARMUP = 5


def photo_paths(images_dir, names=PHOTOS):
    """The paths of the named photographs in `images_dir`."""
    return [Path(images_dir) / name for name in names]


def letterbox(image, size=FRAME_SIZE):
    """The photo scaled to fit `size` (W, H), centred on black."""
    import cv2

    width, height = size
    scale = min(width / image.shape[1], height / image.shape[0])
    w, h = int(image.shape[1] * scale), int(image.shape[0] * scale)
    canvas = np.zeros((height, width, 3), np.uint8)
    x, y = (width - w) // 2, (height - h) // 2
    canvas[y : y + h, x : x + w] = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return canvas


def make_video(path, photos, frames_per_photo=5, fps=25.0, size=FRAME_SIZE):
    """An MJPG/AVI file of the `photos` (paths), letterboxed to `size` (opencv-headless can
    write it)."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    if not writer.isOpened():
        raise ModelError("OpenCV cannot write an MJPG video to {}".format(path))
    for photo in photos:
        image = cv2.imread(str(photo))
        if image is None:
            raise ModelError("cannot read photo {}".format(photo))
        frame = letterbox(image, size)
        for _ in range(frames_per_photo):
            writer.write(frame)
    writer.release()
    return Path(path)


def single_frame_ms(detector, frames, runs):
    """Median end-to-end ms of `detector.detect` over `runs` frames (cycled), after a warm-up."""
    for index in range(WARMUP):
        detector.detect(frames[index % len(frames)])
    samples = []
    for index in range(runs):
        start = time.perf_counter()
        detector.detect(frames[index % len(frames)])
        samples.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(samples))


def stream_round(model, video, size, threads, frames, warmup_images):
    """(fps, dropped, detect ms p50) of one in-process `runner stream` over `frames` frames."""
    from ..live.streamer import StreamConfig, Streamer

    config = StreamConfig(
        model=str(model),
        source=str(video),
        loop=True,
        max_frames=frames,
        size=tuple(size),
        threads=threads or None,
    )
    streamer = Streamer(config, log=lambda line: None)
    for image in warmup_images:  # the same warm-up the single-frame runs get
        streamer.detector.detect(image)
    try:
        streamer.start()
        streamer.run()
    finally:
        streamer.close()
    detect_ms = streamer.metrics()["detect_ms"]["p50"]
    return streamer.stats.overall_fps(), streamer.frames.dropped, detect_ms


def run_stream_bench(model, photos, size="640x480", threads=None, frames=30, runs=15, rounds=5):
    """Interleaved rounds of single-frame runs and stream segments over a video of `photos`
    (paths), so a load that changes during the run hits both alike; returns the numbers (ms,
    fps, ratio) as a dict."""
    size = parse_size(size) if isinstance(size, str) else tuple(size)
    # The stream's own settings (non-spinning pool), so the ratio is the pipeline's, not ORT's.
    detector = Detector(str(model), size=size, threads=threads, spinning=False)
    with tempfile.TemporaryDirectory(prefix="bench-stream-") as work:
        still = make_video(Path(work) / "probe.avi", photos, frames_per_photo=1, size=size)
        decoded = read_all(still)
        first = single_frame_ms(detector, decoded, runs)
        # A source three times faster than inference (as first measured; the load changes):
        # a new frame is always ready, most drop. Decoding them costs a few % of one core.
        source_fps = min(1000.0, 3 * 1000.0 / first)
        video = make_video(Path(work) / "bench.avi", photos, 10, source_fps, size=size)
        single, stream, inside, dropped = [first], [], [], 0
        for _ in range(rounds):
            fps, lost, detect_ms = stream_round(
                model, video, size, threads, frames, decoded[:WARMUP]
            )
            stream.append(fps)
            inside.append(detect_ms * fps / 1000.0)  # busy share of each frame interval
            dropped += lost
            single.append(single_frame_ms(detector, decoded, runs))
    e2e = float(np.median(single))
    fps = float(np.median(stream))
    return {
        "model": Path(model).name,
        "size": "{}x{}".format(*size),
        "threads": threads,
        "rounds": rounds,
        "e2e_ms_rounds": [round(v, 1) for v in single],
        "e2e_ms": round(e2e, 2),
        "single_frame_fps": round(1000.0 / e2e, 2),
        "source_fps": round(source_fps, 1),
        "stream_fps_rounds": [round(v, 2) for v in stream],
        "stream_fps": round(fps, 2),
        "stream_frames": frames * rounds,
        "stream_dropped": dropped,
        "ratio": round(fps / (1000.0 / e2e), 3),
        # Independent of the load: the stream's own detect time over its frame interval
        # (1.0 = inference never waits for a frame).
        "busy_share_rounds": [round(v, 3) for v in inside],
        "busy_share": round(float(np.median(inside)), 3),
    }


def read_all(path):
    import cv2

    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def format_stream_bench(result):
    return (
        "single frame e2e per round (ms): {e2e_ms_rounds} -> median {e2e_ms} ms "
        "= {single_frame_fps} fps\n"
        "runner stream per round (fps): {stream_fps_rounds} -> median {stream_fps} fps "
        "({stream_frames} frames, source replayed at {source_fps} fps, {stream_dropped} dropped)\n"
        "ratio stream / single frame: {ratio}x (goal >= 0.9x); model {model}, size {size}, "
        "threads {threads}, {rounds} interleaved rounds\n"
        "inference busy share of the stream's frame interval per round: {busy_share_rounds} "
        "-> median {busy_share} (1.0: it never waits for a frame)"
    ).format(**result)
