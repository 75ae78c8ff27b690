"""The main job: a camera stream through the segmentation node, results written to disk.

    python -m lednet_ros.demo [--source VIDEO_OR_FOLDER] [--frames 60] [--fps 5] [--out demo_output]

Starts our camera publisher and the segmentation node (default weights) as separate processes over
real DDS (with the shipped Fast DDS profile), records ~/overlay and ~/occupancy, writes overlay PNGs
and occupancy.csv, and prints the measured rate and latency. Default input: the street video of
Debian's opencv-doc package.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
from rclpy.qos import QoSProfile, DurabilityPolicy
from sensor_msgs.msg import Image

from lednet_ros.msg import ClassInfo, ClassOccupancy

from .ros_messages import rgb_from_image

DEFAULT_SOURCE = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
PROFILE = Path(__file__).resolve().parent.parent / "config" / "fastdds_shm.xml"


def start(module: str, params: dict, remaps: dict, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", f"lednet_ros.{module}", "--ros-args"]
    for key, value in params.items():
        command += ["-p", f"{key}:={value}"]
    for old, new in remaps.items():
        command += ["-r", f"{old}:={new}"]
    return subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)


def stamp_seconds(header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--frames", type=int, default=60, help="frames to publish")
    parser.add_argument("--fps", type=float, default=5.0, help="camera rate")
    parser.add_argument("--weights", default="", help="weights file ('' = packaged)")
    parser.add_argument("--save-every", type=int, default=10, help="write every Nth overlay")
    parser.add_argument("--out", type=Path, default=Path("demo_output"))
    args = parser.parse_args(argv)
    if not args.source.exists():
        print(f"demo: input {args.source} does not exist; install Debian's opencv-doc "
              f"(apt-get install opencv-doc) or pass --source VIDEO_OR_FOLDER", file=sys.stderr)
        return 2
    if PROFILE.is_file():
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(PROFILE))
    args.out.mkdir(parents=True, exist_ok=True)
    remaps = {"image": "/camera/image_raw", "camera_info": "/camera/camera_info"}
    node = start("node", {"weights": args.weights or "''"}, remaps, args.out / "node.log")
    rclpy.init()
    listener = rclpy.create_node("lednet_demo_listener")
    overlays, occupancy, infos = [], [], []
    arrival = {}
    topic = "/lednet_segmentation"
    listener.create_subscription(Image, f"{topic}/overlay",
                                 lambda m: overlays.append(m), 10)
    listener.create_subscription(ClassOccupancy, f"{topic}/occupancy",
                                 lambda m: (occupancy.append(m),
                                            arrival.setdefault(stamp_seconds(m.header), time.time())), 10)
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    listener.create_subscription(ClassInfo, f"{topic}/class_info", infos.append, latched)
    camera = None
    try:
        deadline = time.time() + 120
        while not infos and time.time() < deadline and node.poll() is None:
            rclpy.spin_once(listener, timeout_sec=0.2)
        if not infos:
            print(f"demo: the node did not start; see {args.out / 'node.log'}", file=sys.stderr)
            return 1
        print(f"node ready: {infos[0].dataset} weights, {len(infos[0].class_names)} classes, "
              f"input {infos[0].input_width}x{infos[0].input_height}")
        camera = start("camera_publisher", {"source": str(args.source), "fps": args.fps,
                                            "max_frames": args.frames, "frame_id": "camera",
                                            "wait_for_subscribers": True},
                       {"image": remaps["image"], "camera_info": remaps["camera_info"]},
                       args.out / "camera.log")
        last = time.time()
        while time.time() - last < 10.0:
            count = len(occupancy)
            rclpy.spin_once(listener, timeout_sec=0.1)
            if len(occupancy) != count:
                last = time.time()
            if camera.poll() is not None and time.time() - last > 3.0:
                break
    finally:
        if camera and camera.poll() is None:
            camera.terminate()
        node.terminate()
        node.wait(timeout=20)
    names = list(infos[0].class_names)
    with open(args.out / "occupancy.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["stamp", *names])
        for m in occupancy:
            writer.writerow([f"{stamp_seconds(m.header):.3f}", *(f"{v:.4f}" for v in m.fractions)])
    for i, m in enumerate(overlays):
        if i % args.save_every == 0 or i == len(overlays) - 1:
            rgb = rgb_from_image(m)
            cv2.imwrite(str(args.out / f"overlay_{i:04d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    latencies = [1000 * (arrival[s] - s) for s in arrival]
    times = sorted(arrival.values())
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    mean_fractions = np.mean([m.fractions for m in occupancy], axis=0) if occupancy else []
    print(f"published {args.frames} frames at {args.fps} Hz; segmented {len(occupancy)} "
          f"at {rate:.2f} Hz; frames not segmented (the node drops stale frames, newest wins): "
          f"{args.frames - len(occupancy)}")
    if latencies:
        print(f"latency camera stamp -> occupancy received: p50 {np.percentile(latencies, 50):.0f} ms, "
              f"p95 {np.percentile(latencies, 95):.0f} ms")
    if len(mean_fractions):
        top = np.argsort(-mean_fractions)[:5]
        print("mean class fractions: " + ", ".join(f"{names[i]} {100 * mean_fractions[i]:.1f}%"
                                                   for i in top))
    print(f"wrote {args.out}/occupancy.csv and {len(list(args.out.glob('overlay_*.png')))} overlays")
    listener.destroy_node()
    rclpy.try_shutdown()
    return 0 if occupancy else 1


if __name__ == "__main__":
    sys.exit(main())
