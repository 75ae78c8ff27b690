"""The main job: a camera stream through the segmentation node, results written to disk.

    python -m lednet_ros.tools.demo [--source VIDEO_OR_FOLDER] [--frames 200] [--fps 5] [--out DIR]

Starts our camera publisher and the segmentation node (packaged weights by default) as two
processes talking over real DDS with the shipped Fast DDS profile, records the node's ~/overlay and
~/occupancy in this process, writes overlay PNGs and occupancy.csv (stamp and per-class fractions)
and prints the measured rate and latency. The default input is the street video of Debian's
opencv-doc package.
"""

from __future__ import annotations

import argparse
import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import OccupancyGrid
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from lednet_ros.core.evaluation.scoring import stamp_nanoseconds
from lednet_ros.core.ground.class_groups import DEFAULT_GROUPS
from lednet_ros.core.ground.mapping import costmap_picture
from lednet_ros.core.inference.checkpoint import CheckpointError, read_metadata
from lednet_ros.core.inference.segmenter import default_weights_path
from lednet_ros.core.runtime.images import rgb_from_message
from lednet_ros.msg import ClassInfo, ClassOccupancy
from lednet_ros.tools.cli import PROFILE_VARIABLES, fastdds_profile, profile_environment

DEFAULT_SOURCE = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
CAMERA_TOPICS = {"image": "/camera/image_raw", "camera_info": "/camera/camera_info"}
NODE = "/lednet_segmentation"
START_TIMEOUT_S = 120.0  # the node loads torch and the weights (and may export to ONNX)
IDLE_TIMEOUT_S = 15.0  # no new result for this long: stop waiting
SETTLE_S = 3.0  # after the camera finished, no new result for this long: done
# vtest.avi is filmed from a first-floor window looking down on a square: roughly 4 m high,
# pitched down 0.5 rad (an estimate: the video comes without calibration).
DEMO_POSE = {"ground.camera_height": 4.0, "ground.camera_pitch": 0.5}
# CamVid has no grass class: its lawn comes out as 'tree', which as an obstacle would hide
# everything behind the image's bottom row, so with CamVid weights the demo maps trees in no group.
CAMVID_OBSTACLES = "[{}]".format(", ".join(  # the CamVid obstacle group without tree
    name for name in DEFAULT_GROUPS["camvid"]["classes"]["obstacle"] if name != "tree"))


def ground_parameters(weights) -> dict:
    """Return the demo camera's pose and, for CamVid weights, the obstacle group sans 'tree'."""
    try:
        dataset = read_metadata(weights or default_weights_path()).dataset
    except CheckpointError:  # the node says what is wrong with the file when it starts
        dataset = ""
    obstacles = {"groups.classes.obstacle": CAMVID_OBSTACLES} if dataset == "camvid" else {}
    return {**DEMO_POSE, **obstacles}


def start_process(module: str, parameters: dict, log_path: Path) -> subprocess.Popen:
    """``python -m lednet_ros.<module>`` with ROS parameters and the camera remappings."""
    command = [sys.executable, "-m", f"lednet_ros.{module}", "--ros-args"]
    for name, value in parameters.items():
        command += ["-p", f"{name}:={value}"]
    for name, topic in CAMERA_TOPICS.items():
        command += ["-r", f"{name}:={topic}"]
    with open(log_path, "w") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def stop_process(process: subprocess.Popen | None) -> None:
    """Ctrl-C, as a user would, then kill if it does not stop."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class ResultRecorder(Node):
    """Subscribes to the node's outputs; writes every Nth overlay and each occupancy CSV row."""

    def __init__(self, out: Path, save_every: int):
        super().__init__("lednet_demo_recorder")
        self.out, self.save_every = out, save_every
        self.class_info = None
        self.frames_published = 0
        self.overlays_received = 0
        self.overlays_written = []
        self.costmaps_written = []
        self._overlay_of_stamp = {}  # stamp -> index of the saved overlay awaiting its costmap
        self.last_overlay = None
        self.occupancy_rows = 0
        self.fraction_sums = None
        self.latencies_ms = []
        self.arrivals = []
        self.node_status = {}
        self._csv_file = self._csv = None
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.create_subscription(ClassInfo, f"{NODE}/class_info", self._on_class_info, latched)
        self.create_subscription(Image, f"{NODE}/overlay", self._on_overlay, 10)
        self.create_subscription(ClassOccupancy, f"{NODE}/occupancy", self._on_occupancy, 10)
        self.create_subscription(OccupancyGrid, f"{NODE}/costmap", self._on_costmap, 10)
        self.create_subscription(Image, CAMERA_TOPICS["image"], self._on_camera_image, 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_class_info(self, msg: ClassInfo) -> None:
        if self._csv is None:
            self._csv_file = open(self.out / "occupancy.csv", "w", newline="")
            self._csv = csv.writer(self._csv_file)
            self._csv.writerow(["stamp", *msg.class_names])
        self.class_info = msg

    def _on_camera_image(self, msg: Image) -> None:
        self.frames_published += 1

    def _on_occupancy(self, msg: ClassOccupancy) -> None:
        now = time.time()
        stamp = stamp_nanoseconds(msg.header.stamp.sec, msg.header.stamp.nanosec) / 1e9
        self.arrivals.append(now)
        self.latencies_ms.append(1000.0 * (now - stamp))
        fractions = np.asarray(msg.fractions, dtype=np.float64)
        if self.fraction_sums is None:
            self.fraction_sums = np.zeros_like(fractions)
        self.fraction_sums += fractions
        if self._csv is not None:
            self._csv.writerow([f"{stamp:.6f}", *(f"{f:.6f}" for f in fractions)])
        self.occupancy_rows += 1

    def _on_overlay(self, msg: Image) -> None:
        if self.overlays_received % self.save_every == 0:
            self._write_overlay(msg, self.overlays_received)
        else:
            self.last_overlay = (msg, self.overlays_received)
        self.overlays_received += 1

    def _write_overlay(self, msg: Image, index: int) -> None:
        path = self.out / f"overlay_{index:04d}.png"
        cv2.imwrite(str(path), cv2.cvtColor(rgb_from_message(msg), cv2.COLOR_RGB2BGR))
        self.overlays_written.append(path)
        self._overlay_of_stamp[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = index
        self.last_overlay = None

    def _on_costmap(self, msg: OccupancyGrid) -> None:
        """Write the bird's-eye costmap of a saved overlay's frame, beside it (forward up)."""
        index = self._overlay_of_stamp.pop((msg.header.stamp.sec, msg.header.stamp.nanosec),
                                           None)
        if index is None:
            return
        grid = np.asarray(msg.data, dtype=np.int8).reshape(msg.info.height, msg.info.width)
        path = self.out / f"costmap_{index:04d}.png"
        picture = cv2.resize(costmap_picture(grid), None, fx=3, fy=3,
                             interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
        self.costmaps_written.append(path)

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith(NODE) and status.name.endswith("segmentation"):
                self.node_status = {kv.key: kv.value for kv in status.values}

    def finish(self) -> None:
        """Write the last overlay (if not yet written) and close the CSV."""
        if self.last_overlay is not None:
            self._write_overlay(*self.last_overlay)
        if self._csv_file is not None:
            self._csv_file.close()

    def processed_rate(self) -> float:
        if len(self.arrivals) < 2:
            return 0.0
        return (len(self.arrivals) - 1) / (self.arrivals[-1] - self.arrivals[0])


def spin_until(node: Node, done, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        rclpy.spin_once(node, timeout_sec=0.1)
    return True


def parse_arguments(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE,
                        help="video file or image folder (default: %(default)s)")
    parser.add_argument("--frames", type=int, default=200,
                        help="frames to publish (default: %(default)s)")
    parser.add_argument("--fps", type=float, default=5.0,
                        help="camera rate (default: %(default)s)")
    parser.add_argument("--weights", default="",
                        help="weights file (default: the packaged CamVid weights)")
    parser.add_argument("--save-every", type=int, default=20,
                        help="write every Nth overlay, and the last (default: %(default)s)")
    parser.add_argument("--out", type=Path, default=Path("demo_output"),
                        help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    for option, value in (("--frames", args.frames), ("--save-every", args.save_every)):
        if value < 1:
            parser.error(f"{option} must be at least 1, got {value}")
    if args.fps <= 0:
        parser.error(f"--fps must be positive, got {args.fps}")
    return args


def report(recorder: ResultRecorder, args) -> None:
    skipped = recorder.frames_published - recorder.occupancy_rows
    print(f"camera: {recorder.frames_published} frames published at {args.fps:g} Hz")
    print(f"node: {recorder.occupancy_rows} frames segmented at {recorder.processed_rate():.2f} "
          f"Hz; "
          f"{max(skipped, 0)} not segmented (the node drops stale frames: the newest wins)")
    if recorder.latencies_ms:
        p50, p95 = np.percentile(recorder.latencies_ms, [50, 95])
        print(f"latency, camera stamp to occupancy received here: p50 {p50:.0f} ms, "
              f"p95 {p95:.0f} ms")
    status = recorder.node_status
    if status:
        print(f"node diagnostics: {status.get('device')} {status.get('engine')}, input "
              f"{status.get('input size')}, inference p50 {status.get('inference p50 (ms)')} ms, "
              f"p95 {status.get('inference p95 (ms)')} ms")
    if recorder.fraction_sums is not None:
        names = list(recorder.class_info.class_names)
        mean = recorder.fraction_sums / recorder.occupancy_rows
        top = np.argsort(-mean)[:5]
        print("mean class fractions: "
              + ", ".join(f"{names[i]} {100 * mean[i]:.1f}%" for i in top))
    print(f"wrote {args.out / 'occupancy.csv'} ({recorder.occupancy_rows} rows), "
          f"{len(recorder.overlays_written)} overlays ({args.out}/overlay_*.png) and "
          f"{len(recorder.costmaps_written)} bird's-eye costmaps beside them "
          f"({args.out}/costmap_*.png)")


def main(argv=None) -> int:
    args = parse_arguments(argv)
    if not args.source.exists():
        print(f"demo: input {args.source} does not exist. The default is the street video of "
              "Debian's opencv-doc package: sudo apt-get install opencv-doc (.ci/setup does it); "
              "or pass --source VIDEO_OR_FOLDER.", file=sys.stderr)
        return 2
    profile = fastdds_profile()
    if profile is not None:
        for name, value in profile_environment(profile).items():  # this process and children
            os.environ.setdefault(name, value)
    print("Fast DDS profile: " + (", ".join(f"{name}={os.environ[name]}" for name in
                                            PROFILE_VARIABLES if name in os.environ)
                                  or "none (Fast DDS defaults)"))
    args.out.mkdir(parents=True, exist_ok=True)
    for stale in [*args.out.glob("overlay_*.png"), *args.out.glob("costmap_*.png")]:
        stale.unlink()

    node = camera = None
    rclpy.init()
    recorder = ResultRecorder(args.out, args.save_every)
    try:
        node = start_process("nodes.segmentation_node", {
            "weights": args.weights or "''", **ground_parameters(args.weights)},
            args.out / "node.log")
        started = spin_until(recorder, lambda: recorder.class_info or node.poll() is not None,
                             START_TIMEOUT_S)
        if recorder.class_info is None:
            why = "exited" if started else f"sent no class_info within {START_TIMEOUT_S:.0f} s"
            print(f"demo: the segmentation node {why}; see {args.out / 'node.log'}:\n"
                  + (args.out / "node.log").read_text()[-2000:], file=sys.stderr)
            return 1
        info = recorder.class_info
        print(f"node ready: {info.dataset} weights {info.weights}, {len(info.class_names)} "
              f"classes, input {info.input_width}x{info.input_height}")
        camera = start_process("nodes.camera_publisher", {
            "source": str(args.source), "fps": float(args.fps), "max_frames": args.frames,
            "frame_id": "camera", "wait_for_subscribers": 2,  # the node and the recorder
        }, args.out / "camera.log")
        print(f"camera: publishing up to {args.frames} frames of {args.source} at {args.fps:g} Hz")
        last_result, last_count = time.monotonic(), 0
        while time.monotonic() - last_result < IDLE_TIMEOUT_S:
            rclpy.spin_once(recorder, timeout_sec=0.1)
            if recorder.occupancy_rows != last_count:
                last_result, last_count = time.monotonic(), recorder.occupancy_rows
            camera_done = camera.poll() is not None
            settled = time.monotonic() - last_result > SETTLE_S
            if camera_done and (recorder.occupancy_rows >= recorder.frames_published or settled):
                break
            if camera_done and camera.returncode != 0:
                print(f"demo: the camera publisher failed; see {args.out / 'camera.log'}",
                      file=sys.stderr)
                break
            if node.poll() is not None:
                print(f"demo: the segmentation node stopped; see {args.out / 'node.log'}",
                      file=sys.stderr)
                break
        spin_until(recorder, lambda: False, 1.5)  # the last diagnostics and overlays
    except KeyboardInterrupt:
        print("demo: interrupted", file=sys.stderr)
    finally:
        stop_process(camera)
        stop_process(node)
        recorder.finish()
        recorder.destroy_node()
        rclpy.try_shutdown()
    report(recorder, args)
    return 0 if recorder.occupancy_rows else 1


if __name__ == "__main__":
    sys.exit(main())
