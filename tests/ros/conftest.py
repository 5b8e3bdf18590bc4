"""The ROS tier: a real rosmaster on loopback and real nodes, each in its own process group."""

import os
import signal
import subprocess
import sys

import pytest

from tests.fixtures.ros import RosMaster, ros_python_path
from tests.paths import REPO

TOOL = REPO / "tests" / "fixtures" / "ros_tool.py"


@pytest.fixture(scope="session")
def ros_path(tmp_path_factory):
    return ros_python_path(tmp_path_factory.mktemp("ros-python"))


@pytest.fixture(scope="module")
def rosmaster(tmp_path_factory):
    master = RosMaster(tmp_path_factory.mktemp("ros-home"))
    yield master
    master.stop()


class Nodes:
    """Processes of one test in the ROS graph; whatever is still running at the end is killed."""

    def __init__(self, master, ros_path, folder):
        self.env = dict(master.env, PYTHONPATH=f"{REPO}{os.pathsep}{ros_path}")
        self.folder = folder
        self.procs = []

    def start(self, name, *argv):
        out = open(self.folder / f"{name}.out", "w")
        err = open(self.folder / f"{name}.err", "w")
        proc = subprocess.Popen(
            [sys.executable, *map(str, argv)],
            cwd=REPO,
            env=self.env,
            stdout=out,
            stderr=err,
            start_new_session=True,
            text=True,
        )
        proc.name, proc.out, proc.err = (
            name,
            self.folder / f"{name}.out",
            self.folder / f"{name}.err",
        )
        self.procs.append(proc)
        return proc

    def node(self, *flags):
        return self.start("node", "-m", "retinaface.runner", "ros", *flags)

    def tool(self, name, *argv):
        return self.start(name, TOOL, *argv)

    def kill_all(self):
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)


@pytest.fixture
def nodes(rosmaster, ros_path, tmp_path):
    graph = Nodes(rosmaster, ros_path, tmp_path)
    yield graph
    graph.kill_all()
