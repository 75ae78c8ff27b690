"""Helpers for tests that run ROS 2 nodes over real DDS: no mocks, only rclpy and processes.

conftest.py isolates the session (ROS_DOMAIN_ID, localhost discovery, ROS_LOG_DIR) before rclpy is
imported; processes started here inherit it. Typical in-process use::

    with ros_context() as context:
        node = SegmentationNode(context=context, namespace="/t1", parameter_overrides=[...])
        probe = rclpy.create_node("probe", context=context)
        labels = Collector(probe, Image, "/t1/lednet_segmentation/labels")
        with spinning(context, node, probe):
            publisher = probe.create_publisher(Image, "/t1/image", 10)
            wait_for_subscribers(publisher)
            publisher.publish(make_image(rgb, "rgb8", stamp=(1, 0)))
            (msg,) = labels.wait(1)

and for a node in its own process::

    command = node_command("lednet_ros.nodes.segmentation_node", {"weights": path})
    with NodeProcess(command, tmp_path) as proc:
        ...
        assert "some log line" in proc.output()
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from sensor_msgs.msg import CameraInfo, Image, PointField

DEFAULT_TIMEOUT = 20.0


@contextlib.contextmanager
def ros_context():
    """Yield a fresh rclpy context, shut down on exit (so tests do not share a global one)."""
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        yield context
    finally:
        rclpy.try_shutdown(context=context)


@contextlib.contextmanager
def spinning(context, *nodes):
    """Spin ``nodes`` in a background executor thread; on exit stop it and destroy the nodes."""
    executor = SingleThreadedExecutor(context=context)
    for node in nodes:
        executor.add_node(node)
    thread = threading.Thread(target=executor.spin, name="test_executor", daemon=True)
    thread.start()
    try:
        yield executor
    finally:
        executor.shutdown(timeout_sec=5.0)
        thread.join(timeout=10.0)
        for node in nodes:
            node.destroy_node()


def wait_until(predicate, timeout: float = DEFAULT_TIMEOUT, message: str = "condition",
               interval: float = 0.02):
    """Poll ``predicate`` until it returns a truthy value (returned); AssertionError on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {message}")
        time.sleep(interval)


class Collector:
    """Subscribe to ``topic`` on ``node`` and keep every message received (thread-safe)."""

    def __init__(self, node, msg_type, topic: str, qos=10):
        self.topic = topic
        self._messages = []
        self._lock = threading.Lock()
        self.subscription = node.create_subscription(msg_type, topic, self._store, qos)

    def _store(self, msg) -> None:
        with self._lock:
            self._messages.append(msg)

    @property
    def messages(self) -> list:
        with self._lock:
            return list(self._messages)

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()

    def wait(self, count: int = 1, timeout: float = DEFAULT_TIMEOUT, where=None) -> list:
        """Wait for the first ``count`` messages satisfying ``where`` (all when None).

        Returns them.
        """
        def matching():
            found = [m for m in self.messages if where is None or where(m)]
            return found[:count] if len(found) >= count else None

        return wait_until(matching, timeout, f"{count} message(s) on {self.topic}")


def wait_for_subscribers(publisher, count: int = 1, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Wait until ``publisher`` has matched at least ``count`` subscriptions (discovery done)."""
    wait_until(lambda: publisher.get_subscription_count() >= count, timeout,
               f"{count} subscriber(s) on {publisher.topic_name}")


def wait_for_publishers(node, topic: str, count: int = 1, timeout: float = DEFAULT_TIMEOUT):
    """Wait until the graph, as ``node`` sees it, has ``count`` publishers on ``topic``."""
    wait_until(lambda: node.count_publishers(topic) >= count, timeout,
               f"{count} publisher(s) on {topic}")


def pinhole_camera_info(width: int, height: int, fx: float, fy: float, cx: float, cy: float
                        ) -> CameraInfo:
    """Return a sensor_msgs/CameraInfo of a pinhole camera without distortion (K and P)."""
    info = CameraInfo(width=width, height=height, distortion_model="plumb_bob", d=[0.0] * 5)
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    return info


def make_image(array: np.ndarray, encoding: str, stamp=(0, 0), frame_id: str = "camera",
               row_padding: int = 0) -> Image:
    """Return a sensor_msgs/Image of ``array`` (H x W or H x W x C, any dtype, little-endian).

    Each row is followed by ``row_padding`` bytes of 0xAB (to test that readers honour ``step``).
    """
    height, width = array.shape[:2]
    rows = np.ascontiguousarray(array).reshape(height, -1).view(np.uint8)
    padding = np.full((height, row_padding), 0xAB, dtype=np.uint8)
    data = np.concatenate([rows, padding], axis=1)
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=0,
                step=data.shape[1])
    msg.header.stamp.sec, msg.header.stamp.nanosec = stamp
    msg.header.frame_id = frame_id
    msg.data = data.tobytes()
    return msg


def set_parameters(node, remote_node: str, values: dict, timeout: float = DEFAULT_TIMEOUT,
                   atomically: bool = False):
    """Set parameters of ``remote_node`` (fully qualified name) through its parameter services.

    Calls from ``node`` (which must be spinning). Returns the SetParametersResult list, in order
    (one result when ``atomically``).
    """
    client = AsyncParameterClient(node, remote_node)  # its service clients live on ``node``
    if not client.wait_for_services(timeout_sec=timeout):
        raise AssertionError(f"parameter services of {remote_node} not available")
    parameters = [Parameter(k, value=v) for k, v in values.items()]
    if atomically:
        future = client.set_parameters_atomically(parameters)
    else:
        future = client.set_parameters(parameters)
    wait_until(future.done, timeout, f"set_parameters on {remote_node}")
    result = future.result()
    return [result.result] if atomically else list(result.results)


def _ros_arg_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def node_command(module: str, parameters: dict | None = None, remappings: dict | None = None,
                 ros_args=()) -> list[str]:
    """Argv running ``python -m module`` with -p name:=value and -r from:=to ROS arguments."""
    command = [sys.executable, "-m", module, "--ros-args"]
    for name, value in (parameters or {}).items():
        command += ["-p", f"{name}:={_ros_arg_value(value)}"]
    for source, target in (remappings or {}).items():
        command += ["-r", f"{source}:={target}"]
    return command + list(ros_args)


def process_environment(extra: dict | None = None) -> dict:
    """Return this process's environment (ROS isolation included) for a child process.

    PYTHONPATH leads to the same lednet_ros package the tests import, so a child runs the code
    under test.
    """
    env = dict(os.environ)
    spec = importlib.util.find_spec("lednet_ros")
    package_parents = [str(Path(p).parent) for p in spec.submodule_search_locations]
    env["PYTHONPATH"] = os.pathsep.join(
        package_parents + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.update(extra or {})
    return env


def run_process(command: list[str], cwd, timeout: float = 120.0, env=None):
    """Run ``command`` to completion (stdout and stderr captured as text)."""
    return subprocess.run(command, cwd=cwd, env=env or process_environment(),
                          capture_output=True, text=True, timeout=timeout)


class NodeProcess:
    """A node in its own process for the duration of a ``with`` block; output goes to a file.

    On exit it is sent SIGINT (as Ctrl-C would) and killed if still alive after ``stop_timeout``;
    ``returncode`` then holds its exit status.
    """

    def __init__(self, command: list[str], workdir, env=None, stop_timeout: float = 15.0):
        self.command = command
        self.workdir = Path(workdir)
        self.env = env or process_environment()
        self.stop_timeout = stop_timeout
        self.log_path = self.workdir / f"node_process_{id(self)}.log"
        self.process = None
        self.returncode = None

    def __enter__(self) -> "NodeProcess":
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(self.command, cwd=self.workdir, env=self.env,
                                        stdout=self._log, stderr=subprocess.STDOUT)
        return self

    def output(self) -> str:
        """Everything the process has written so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.returncode = self.process.returncode
        self._log.close()
        return self.returncode

    def __exit__(self, *exc_info) -> None:
        self.stop()


def points_from_message(msg) -> np.ndarray:
    """Return the structured array a PointCloud2 describes, read only from its fields and data."""
    types = {PointField.UINT8: np.uint8, PointField.UINT32: np.uint32,
             PointField.FLOAT32: np.float32, PointField.INT16: np.int16}
    dtype = np.dtype({"names": [f.name for f in msg.fields],
                      "formats": [types[f.datatype] for f in msg.fields],
                      "offsets": [f.offset for f in msg.fields], "itemsize": msg.point_step})
    return np.frombuffer(bytes(msg.data), dtype=dtype, count=msg.width * msg.height)
