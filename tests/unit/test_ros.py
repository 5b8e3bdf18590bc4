"""The ROS node's pure parts: settings from flags and ROS parameters, image messages decoded and
checked. The node in a real ROS graph is tests/ros."""

import subprocess
import sys
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from retinaface.errors import ModelError
from retinaface.live.ros import (
    BadFrame,
    RosConfig,
    config_from,
    image_from_compressed,
    image_from_raw,
    model_file,
)
from tests.paths import REPO


def test_flags_win_over_parameters_which_win_over_defaults():
    config = config_from(
        {"model": "a.onnx", "threads": None, "conf": 0.8},
        {
            "model": "b.onnx",
            "threads": 2,
            "conf": 0.7,
            "image_topic": "/cam/image",
            "size": "320x240",
        },
    )
    assert config == RosConfig(
        model="a.onnx", threads=2, conf=0.8, image_topic="/cam/image", size=(320, 240)
    )
    assert config.faces_topic == "/retinaface/faces" and config.annotated_topic is None
    assert config_from({}, {"model": "m.onnx", "max_frames": 3}).max_frames is None  # flag only


@pytest.mark.parametrize(
    "params, message",
    [
        ({"threads": "many"}, "ROS parameter ~threads: 'many' must be a whole number from 1 to 64"),
        ({"threads": True}, "ROS parameter ~threads: True must be a whole number"),
        ({"conf": 1.5}, "ROS parameter ~conf: 1.5 must be a score threshold in (0, 1]"),
        ({"conf": float("nan")}, "ROS parameter ~conf: nan must be a score threshold"),
        ({"image_topic": "/cam image"}, "ROS parameter ~image_topic: '/cam image' is not a ROS"),
        ({"faces_topic": "/a/../b"}, "ROS parameter ~faces_topic: '/a/../b' is not a ROS"),
        ({"backend": "cuda"}, "ROS parameter ~backend: 'cuda' is not one of"),
        ({"size": "big"}, "ROS parameter ~size: size must be WIDTHxHEIGHT"),
        ({"size": [640, -1]}, "ROS parameter ~size: -1 must be a whole number"),
        ({"model": ""}, "ROS parameter ~model: give a model name or path"),
    ],
)
def test_bad_parameters_are_one_line_naming_the_parameter(params, message):
    with pytest.raises(ModelError) as error:
        config_from({}, dict({"model": "m.onnx"}, **params))
    assert str(error.value).startswith(message)


def test_a_model_is_needed_and_flags_are_checked_too():
    with pytest.raises(ModelError, match="no model: give --model NAME|PATH or"):
        config_from({"threads": 2}, {})
    with pytest.raises(ModelError, match="^--threads: 0 must be a whole number"):
        config_from({"model": "m.onnx", "threads": 0}, {})
    with pytest.raises(ModelError, match="^--image-topic: 'a b' is not"):
        config_from({"model": "m.onnx", "image_topic": "a b"}, {})


def test_model_names_resolve_in_a_release_or_the_project(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "int8.onnx").write_bytes(b"x")
    (tmp_path / "build" / "models").mkdir(parents=True)
    (tmp_path / "build" / "models" / "fp32.onnx").write_bytes(b"x")
    assert model_file("int8", str(tmp_path)) == str(tmp_path / "models" / "int8.onnx")
    assert model_file("fp32", str(tmp_path)) == str(tmp_path / "build" / "models" / "fp32.onnx")
    assert model_file("other/x.onnx", str(tmp_path)) == "other/x.onnx"
    with pytest.raises(ModelError, match="model fp32-opt: neither .*models/fp32-opt.onnx nor"):
        model_file("fp32-opt", str(tmp_path))
    with pytest.raises(ModelError, match="a variant name such as fp32-opt"):
        model_file("$(reboot)", str(tmp_path))


def raw(pixels, encoding, step=None, pad=0):
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    step = step or width * channels + pad
    rows = np.zeros((height, step), np.uint8)
    rows[:, : width * channels] = pixels.reshape(height, -1)
    return SimpleNamespace(
        encoding=encoding, height=height, width=width, step=step, data=rows.tobytes()
    )


def test_raw_encodings_become_the_bgr_image_imread_gives():
    bgr = np.random.RandomState(0).randint(0, 256, (5, 7, 3)).astype(np.uint8)
    assert np.array_equal(image_from_raw(raw(bgr, "bgr8")), bgr)
    assert np.array_equal(image_from_raw(raw(bgr[:, :, ::-1], "rgb8")), bgr)
    assert np.array_equal(image_from_raw(raw(bgr, "bgr8", pad=5)), bgr)  # rows padded (step)
    gray = bgr[:, :, 0]
    assert np.array_equal(
        image_from_raw(raw(gray, "mono8")), cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR)
    )


@pytest.mark.parametrize(
    "msg, message",
    [
        (
            SimpleNamespace(encoding="32FC1", height=2, width=2, step=8, data=bytes(16)),
            "encoding '32FC1'",
        ),
        (
            SimpleNamespace(encoding="bgr8", height=480, width=640, step=1920, data=bytes(9)),
            "9 bytes of data for 480 rows",
        ),
        (
            SimpleNamespace(encoding="bgr8", height=2, width=2, step=3, data=bytes(6)),
            "step 3 is shorter",
        ),
        (SimpleNamespace(encoding="mono8", height=0, width=0, step=0, data=b""), "0x0 pixels"),
        (
            SimpleNamespace(
                encoding="mono8", height=1 << 20, width=1 << 20, step=1 << 20, data=b""
            ),
            "pixels: must be 1 to",
        ),
    ],
)
def test_bad_raw_messages_are_bad_frames(msg, message):
    with pytest.raises(BadFrame, match=message):
        image_from_raw(msg)


def test_compressed_frames_decode_like_imread_and_garbage_is_a_bad_frame():
    path = REPO.parent / "shared" / "data" / "images" / "selfie.jpg"
    if not path.is_file():
        path = REPO / "data" / "images" / "selfie.jpg"
    image = image_from_compressed(SimpleNamespace(format="jpeg", data=path.read_bytes()))
    assert np.array_equal(image, cv2.imread(str(path)))
    with pytest.raises(BadFrame, match="OpenCV cannot decode these 5 bytes"):
        image_from_compressed(SimpleNamespace(format="jpeg", data=b"hello"))
    with pytest.raises(BadFrame, match="0 bytes of compressed data"):
        image_from_compressed(SimpleNamespace(format="jpeg", data=b""))


def test_without_rospy_the_command_says_what_to_install():
    """rospy made unimportable: one line, exit 1, no traceback (other commands never need it)."""
    code = (
        "import sys\nsys.modules['rospy'] = None\n"
        "from retinaface.runner import main\n"
        "sys.exit(main(['ros', '--model', 'fp32-opt']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: the ros command needs rospy: on Debian apt install")
    assert len(proc.stderr.splitlines()) == 1
    bad = subprocess.run(
        [sys.executable, "-m", "retinaface.runner", "ros", "--model", "m", "stray"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1
    assert bad.stderr == "error: 'stray': only NAME:=VALUE remappings may follow the flags\n"


# --- on the Pi: setup-pi --ros and the service ------------------------------------------------


@pytest.mark.parametrize("release", ["bullseye", "bookworm"])
def test_setup_pi_ros_script_lists_debians_ros_packages_and_checks_the_venv(release, tmp_path):
    from pi_setup import setup_pi

    path = tmp_path / "setup.sh"
    path.write_text(setup_pi.render_setup(release, "/home/pi/retinaface-pi", ros=True))
    subprocess.run(["bash", "-n", str(path)], check=True)
    check = subprocess.run(["shellcheck", "-s", "bash", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout
    text = path.read_text()
    for package in (
        "python3-rospy",
        "python3-rosmaster",
        "python3-sensor-msgs",
        "python3-std-msgs",
    ):
        assert f"    {package}\n" in text
    assert "import rospy" in text
    plain = setup_pi.render_setup(release, "/home/pi/retinaface-pi")
    assert "python3-rospy" not in plain and "import rospy" not in plain


def test_service_ros_unit_runs_the_node_with_the_master_uri():
    from deploy.errors import DeployError
    from deploy.workflow.service import StreamSettings, exec_start, render_unit

    settings = StreamSettings(
        ros=True,
        model="int8",
        threads=2,
        master_uri="http://10.0.0.5:11311",
        image_topic="/usb_cam/image_raw",
    ).validate()
    unit = render_unit(settings, "/home/pi/rf", "pi", "pi4")
    assert "Environment=ROS_MASTER_URI=http://10.0.0.5:11311\n" in unit
    assert "Environment=ROS_HOME=/home/pi/rf/ros\n" in unit  # rospy's logs: a writable place
    assert exec_start(settings, "/home/pi/rf") == [
        "/home/pi/rf/venv/bin/python",
        "-m",
        "retinaface.runner",
        "ros",
        "--model",
        "/home/pi/rf/current/models/int8.onnx",
        "--image-topic",
        "/usb_cam/image_raw",
        "--threads",
        "2",
    ]
    stream = render_unit(StreamSettings().validate(), "/home/pi/rf", "pi", "pi4")
    assert "ROS_MASTER_URI" not in stream and "runner stream" in stream
    for bad in (dict(master_uri="http://x:1 ExecStartPre=/bin/sh"), dict(image_topic="/a b")):
        with pytest.raises(DeployError):
            StreamSettings(ros=True, **bad).validate()


def test_bullseyes_rospy_gets_the_thread_method_it_calls():
    """rospy 1.15.9 (Debian bullseye) calls Thread.isAlive, gone since Python 3.9: with rospy
    1.15.9 on this Python, SIGTERM ended the node with that AttributeError and exit 1."""
    import threading

    from retinaface.live.ros import _thread_is_alive_alias

    _thread_is_alive_alias()
    thread = threading.Thread(target=lambda: None)
    assert thread.isAlive() is False
    thread.start()
    thread.join()
    assert threading.Thread.isAlive is threading.Thread.is_alive or sys.version_info < (3, 9)
