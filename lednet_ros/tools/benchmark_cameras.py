r"""Several cameras: one node for all of them against one node per camera, over DDS.

    python -m lednet_ros.tools.benchmark_cameras [--cameras 4] [--rate 10] [--seconds 20]
        [--size 480x360] [--modes one separate] [--param precision:=int8 ...] [--out rows.json]

A probe process publishes ``--cameras`` camera streams of rgb8 frames (best effort, as drivers
do) at ``--rate`` Hz each, open loop, on /lednet_cams/cam<K>/image. Mode ``one``: a single
segmentation node with ``cameras: [cam0, cam1, ...]`` (frames waiting on several cameras go
through the network as one batch); mode ``separate``: one node per camera, each in namespace
/lednet_cams/cam<K>. Both with the node's defaults (engine and precision auto) but the
--param overrides, and the network input equal to the frame size. After every camera's first
labels (warm-up), labels are counted for ``--seconds``: labels/s in all and per camera, the
nodes' CPU use, resident memory (VmRSS, summed over the nodes) and peak (VmHWM, summed).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from lednet_ros.tools.benchmark_node import environment, proc_status, run_with_probe

NAMESPACE = "/lednet_cams"
MODES = ("one", "separate")


def camera_names(count: int) -> list[str]:
    return [f"cam{k}" for k in range(count)]


def node_commands(mode: str, cameras: list[str], size, params) -> list[tuple[list[str], str]]:
    """(command, labels topic prefix) per node process of ``mode``."""
    width, height = size
    base = [sys.executable, "-m", "lednet_ros.nodes.segmentation_node", "--ros-args",
            "-p", f"input_width:={width}", "-p", f"input_height:={height}"]
    base += [arg for param in params for arg in ("-p", param)]
    if mode == "one":
        return [(base + ["-r", f"__ns:={NAMESPACE}", "-p", f"cameras:=[{','.join(cameras)}]"],
                 f"{NAMESPACE}/lednet_segmentation")]
    return [(base + ["-r", f"__ns:={NAMESPACE}/{name}"], "") for name in cameras]


def labels_topics(mode: str, cameras: list[str]) -> list[str]:
    if mode == "one":
        return [f"{NAMESPACE}/lednet_segmentation/{name}/labels" for name in cameras]
    return [f"{NAMESPACE}/{name}/lednet_segmentation/labels" for name in cameras]


def run_mode(mode: str, count: int, rate: float, seconds: float, size, params) -> dict:
    """Start the nodes of ``mode``, run the probe, stop them; return the row."""
    cameras = camera_names(count)
    domain_id = 100 + os.getpid() % 100
    with tempfile.TemporaryDirectory(prefix="lednet_cams_") as tmp:
        commands = [command for command, _ in node_commands(mode, cameras, size, params)]
        row = run_with_probe(commands, lambda pids: [
            sys.executable, "-m", "lednet_ros.tools.benchmark_cameras", "--probe", "--mode", mode,
            "--cameras", str(count), "--rate", str(rate), "--seconds", str(seconds),
            "--size", f"{size[0]}x{size[1]}", "--pids", *map(str, pids)],
            environment("shm", domain_id, tmp), Path(tmp), 300 + seconds)
    row.update(mode=mode, cameras=count, rate_hz=rate, size=f"{size[0]}x{size[1]}",
               nodes=len(commands), params=list(params))
    return row


def probe(mode: str, count: int, rate: float, seconds: float, size, pids) -> dict:
    """Publish the cameras' frames, count their labels; the nodes' CPU and memory."""
    import numpy as np
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image

    from lednet_ros.core.data.frame_sources import FrameSource
    from lednet_ros.tools.demo import DEFAULT_SOURCE

    width, height = size
    rclpy.init()
    node = rclpy.create_node("lednet_cams_probe")
    cameras = camera_names(count)
    frames = [np.ascontiguousarray(frame) for frame in _frames(FrameSource, DEFAULT_SOURCE,
                                                                (width, height), count)]
    received = {name: [] for name in cameras}
    for name, topic in zip(cameras, labels_topics(mode, cameras)):
        node.create_subscription(Image, topic, lambda msg, name=name: received[name].append(
            time.monotonic()), qos_profile_sensor_data)
    publishers = {name: node.create_publisher(Image, f"{NAMESPACE}/{name}/image",
                                              qos_profile_sensor_data) for name in cameras}
    sent = dict.fromkeys(cameras, 0)

    def publish(name: str, frame) -> None:
        msg = Image(height=height, width=width, encoding="rgb8", step=width * 3,
                    data=frame.tobytes())
        msg.header.stamp = node.get_clock().now().to_msg()
        msg.header.frame_id = name
        publishers[name].publish(msg)
        sent[name] += 1

    for name, frame in zip(cameras, frames):
        node.create_timer(1.0 / rate, lambda name=name, frame=frame: publish(name, frame))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    deadline = time.monotonic() + 180
    while not all(received.values()):  # warm-up: every camera's first labels
        executor.spin_once(timeout_sec=0.05)
        if time.monotonic() > deadline:
            silent = [name for name in cameras if not received[name]]
            raise RuntimeError(f"no labels within 180 s from {silent}")
    start, cpu_start = time.monotonic(), sum(proc_status(p)["cpu_s"] for p in pids)
    sent_start = dict(sent)
    while time.monotonic() < start + seconds:
        executor.spin_once(timeout_sec=0.05)
    elapsed = time.monotonic() - start
    statuses = [proc_status(p) for p in pids]
    per_camera = {name: sum(start <= t < start + elapsed for t in times) / elapsed
                  for name, times in received.items()}
    row = {"labels_per_s": sum(per_camera.values()),
           "min_camera_labels_per_s": min(per_camera.values()),
           "per_camera": per_camera,
           "sent_per_s": sum(sent[n] - sent_start[n] for n in cameras) / elapsed,
           "cpu_percent": 100 * (sum(s["cpu_s"] for s in statuses) - cpu_start) / elapsed,
           "rss_mb": sum(s["VmRSS"] for s in statuses),
           "peak_rss_mb": sum(s["VmHWM"] for s in statuses)}
    node.destroy_node()
    rclpy.shutdown()
    return row


def _frames(frame_source, video, size, count):
    """``count`` different frames of the demo video at ``size``."""
    import cv2

    source, frames = frame_source(video, loop=True), []
    while len(frames) < count:
        for _ in range(15):  # about a second apart at 15 Hz
            frame = source.next()
        frames.append(cv2.resize(frame, size, interpolation=cv2.INTER_AREA))
    return frames


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--rate", type=float, default=10.0, help="Hz per camera")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--size", type=parse_size, default=(480, 360))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--pids", nargs="*", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.cameras < 1 or args.rate <= 0 or args.seconds <= 0:
        parser.error("--cameras, --rate and --seconds must be positive")
    if args.probe:
        row = probe(args.mode, args.cameras, args.rate, args.seconds, args.size, args.pids)
        args.result.write_text(json.dumps(row))
        return 0
    from lednet_ros.core.inference.cpu import cpu_model

    rows = []
    for mode in args.modes:
        row = run_mode(mode, args.cameras, args.rate, args.seconds, args.size, args.param)
        row["cpu"] = cpu_model()
        rows.append(row)
        print(f"{mode} ({row['nodes']} node(s)), {args.cameras} camera(s) at {args.rate:g} Hz, "
              f"{row['size']}: {row['labels_per_s']:.1f} labels/s in all, the slowest camera "
              f"{row['min_camera_labels_per_s']:.1f}, CPU {row['cpu_percent']:.0f}%, RSS "
              f"{row['rss_mb']:.0f} MB (peak {row['peak_rss_mb']:.0f}) on {row['cpu']}",
              flush=True)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
