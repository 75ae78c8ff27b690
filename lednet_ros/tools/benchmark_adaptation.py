r"""The node's live ``~/adapt`` over DDS: how long it takes, the labels' longest gap, memory.

    python -m lednet_ros.tools.benchmark_adaptation --source drive.mp4 [--source frames/ ...] \
        [--rate 10] [--frame-size 1024x512] [--input-size 480x360] [--param adapt.method:=bn] \
        [--output adapted.safetensors]

The node runs in its own process (as benchmark_node runs it), a probe process publishes the
sources' frames in a loop at --rate (open loop, as a camera does), calls ``~/adapt`` once the
labels flow and keeps streaming until /diagnostics reports the adaptation's outcome. Measured:
the seconds from the call to the outcome, the longest gap between two labels before the call and
while gathering and adapting (the stream must never stop), the node's peak memory (VmHWM) before
the call and at the end, and the outcome (kept or not, and why). With --output the node writes
the weights it kept there (``adapt.output``): score them with tools.evaluate_cityscapes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from lednet_ros.tools.benchmark_node import (
    NAMESPACE, check_options, environment, proc_status, run_with_probe,
)

FINAL = ("adapted from", "adaptation failed", "adaptation abandoned")


def benchmark_adaptation(sources, weights, rate: float, frame_size, input_size, params=(),
                         output: Path | None = None, timeout: float = 900.0) -> dict:
    """Run the node and the probe; return the probe's measurements."""
    width, height = input_size
    domain_id = 100 + os.getpid() % 100
    with tempfile.TemporaryDirectory(prefix="lednet_adapt_bench_") as tmp:
        env = environment("shm", domain_id, tmp)
        node_cmd = [sys.executable, "-m", "lednet_ros.nodes.segmentation_node", "--ros-args",
                    "-r", f"__ns:={NAMESPACE}", "-p", f"weights:={weights}",
                    "-p", f"input_width:={width}", "-p", f"input_height:={height}",
                    "-p", f"adapt.output:={output or ''}", "-p", "adapt.timeout:=600.0"]
        for param in params:
            node_cmd += ["-p", param]
        return run_with_probe([node_cmd], lambda pids: [
            sys.executable, "-m", "lednet_ros.tools.benchmark_adaptation", "--probe",
            *[arg for source in sources for arg in ("--source", str(source))],
            "--rate", str(rate), "--frame-size", f"{frame_size[0]}x{frame_size[1]}",
            "--node-pid", str(pids[0]), "--timeout", str(timeout)], env, Path(tmp), timeout + 120)


def longest_gap(arrivals: list[float], start: float, end: float) -> float:
    """Return the longest interval (s) between label arrivals in [start, end], ends included."""
    times = [start] + [t for t in arrivals if start < t < end] + [end]
    return max(b - a for a, b in zip(times, times[1:]))


def probe(sources, rate: float, frame_size, node_pid: int, timeout: float) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_srvs.srv import Trigger

    from lednet_ros.core.data.frame_sampling import Source, count_frames, gather_frames

    sources = [Source(Path(s), "") for s in sources]  # every frame they hold, in a loop
    frames, _ = gather_frames(sources, sum(map(count_frames, sources)), frame_size)
    rclpy.init()
    node = rclpy.create_node("lednet_adapt_bench_probe", namespace=NAMESPACE)
    arrivals, status = [], {}

    def on_diagnostics(msg):
        for entry in msg.status:
            if entry.name.endswith(": segmentation"):
                status.update({kv.key: kv.value for kv in entry.values})

    publisher = node.create_publisher(Image, "image", qos_profile_sensor_data)
    node.create_subscription(Image, "lednet_segmentation/labels",
                             lambda msg: arrivals.append(time.perf_counter()),
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    client = node.create_client(Trigger, "lednet_segmentation/adapt")
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    sent, next_publish = 0, time.perf_counter()

    def stream_until(predicate, limit: float) -> bool:
        """Publish the frames in a loop at ``rate`` until ``predicate`` holds."""
        nonlocal sent, next_publish
        deadline = time.perf_counter() + limit
        while time.perf_counter() < deadline:
            if predicate():
                return True
            if time.perf_counter() >= next_publish:
                rgb = frames[sent % len(frames)]
                msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8",
                            is_bigendian=0, step=3 * rgb.shape[1])
                msg.data = rgb.tobytes()
                msg.header.frame_id = "bench_camera"
                msg.header.stamp = node.get_clock().now().to_msg()
                publisher.publish(msg)
                sent += 1
                next_publish = max(next_publish + 1.0 / rate, time.perf_counter())
            executor.spin_once(timeout_sec=0.002)
        return predicate()

    if not stream_until(lambda: len(arrivals) >= 20 and client.service_is_ready(), 120.0):
        raise RuntimeError("the node sent no labels or offered no ~/adapt within 120 s")
    before = proc_status(node_pid)
    stream_until(lambda: False, 5.0)  # the stream's own gaps, before adapting
    called = time.perf_counter()
    future = client.call_async(Trigger.Request())
    stream_until(future.done, 10.0)
    answer = future.result()
    if answer is None or not answer.success:
        raise RuntimeError(f"~/adapt refused: {answer and answer.message}")
    finished = stream_until(lambda: status.get("adaptation", "").startswith(FINAL), timeout)
    done = time.perf_counter()
    stream_until(lambda: False, 3.0)  # the first frames on the weights swapped in
    end = proc_status(node_pid)
    node.destroy_node()
    rclpy.shutdown()
    return {
        "outcome": status.get("adaptation", "") if finished else "timed out",
        "seconds": done - called,
        "gap_before_s": longest_gap(arrivals, called - 5.0, called),
        "gap_adapting_s": longest_gap(arrivals, called, done),
        "labels_while_adapting": sum(called < t < done for t in arrivals),
        "frames_sent": sent, "rate_hz": rate,
        "peak_rss_before_mb": before["VmHWM"], "peak_rss_mb": end["VmHWM"],
        "engine": status.get("engine", "?"), "precision": status.get("precision", "?"),
    }


def main(argv=None) -> int:
    from lednet_ros.arguments import parse_size
    from lednet_ros.core.inference.segmenter import default_weights_path

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", action="append", required=True,
                        help="a video or image folder streamed in a loop (repeatable)")
    parser.add_argument("--weights", type=Path, default=default_weights_path())
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second (10)")
    parser.add_argument("--frame-size", type=parse_size, default=(1024, 512),
                        help="published frame WIDTHxHEIGHT (default 1024x512)")
    parser.add_argument("--input-size", type=parse_size, default=(480, 360),
                        help="the node's network input WIDTHxHEIGHT (default 480x360)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="a node parameter override, e.g. adapt.method:=bn (repeatable)")
    parser.add_argument("--output", type=Path, help="where the node writes the weights it keeps")
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds to wait for the adaptation's outcome (900)")
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--node-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.rate > 0:
        parser.error(f"--rate {args.rate}: expected a positive rate in Hz")
    try:
        params = check_options(args.param, 0.0)
    except ValueError as exc:
        parser.error(str(exc))
    if args.probe:
        args.result.write_text(json.dumps(probe(args.source, args.rate, args.frame_size,
                                                args.node_pid, args.timeout)))
        return 0
    result = benchmark_adaptation(args.source, args.weights, args.rate, args.frame_size,
                                  args.input_size, params, args.output, args.timeout)
    print(f"~/adapt ({', '.join(params) or 'defaults'}; {result['engine']}, "
          f"{result['precision']}): {result['outcome']}; {result['seconds']:.1f} s after the "
          "call; "
          f"longest label gap {result['gap_adapting_s']:.2f} s while adapting "
          f"({result['gap_before_s']:.2f} s before), {result['labels_while_adapting']} labels; "
          f"peak memory {result['peak_rss_before_mb']:.0f} -> {result['peak_rss_mb']:.0f} MB",
          flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
