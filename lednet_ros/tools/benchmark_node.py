r"""The segmentation node end to end over DDS: latency, rate, drops, CPU and memory.

    python -m lednet_ros.tools.benchmark --node            # engines, pipeline and this, one report
    python -m lednet_ros.tools.benchmark_node --sizes 512x256 --frames 60 [--profiles shm default]
        [--param precision:=fp16 ...] [--rate 30]

The node runs in its own process with its defaults (device and engine auto, sensor-data
subscription) but for the --param overrides, and the network input equal to the frame size. A
probe process, like a camera driver, publishes rgb8 frames (best effort, depth 5) and by default
waits for each frame's labels before sending the next (closed loop, so latency is not queueing; a
frame whose labels do not come within the timeout counts as dropped). With --rate it publishes at
that rate whatever comes back (open loop, as a camera does): frames the node cannot keep up with
are dropped (it keeps the newest) and the sustained rate is what it delivers at that camera rate.
Both processes load the Fast DDS shared-memory profile (config/fastdds_shm.xml) or neither
('default'), since Fast DDS reads its profiles once per process. Measured: latency from publish to
labels received (p50, p95, max), sustained rate, dropped frames, the node's inference time (its
diagnostics: Segmenter.segment), the node's CPU use, peak memory (VmHWM) and its RSS growth between
the middle and the end of the run (a per-frame leak shows as growth).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from lednet_ros.tools.cli import PROFILE_VARIABLES, fastdds_profile, profile_environment

NAMESPACE = "/lednet_bench"
PROFILES = ("shm", "default")


def environment(profile: str, domain_id: int, log_dir: str) -> dict:
    env = dict(os.environ)
    env.update(ROS_DOMAIN_ID=str(domain_id), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOG_DIR=log_dir)
    for name in PROFILE_VARIABLES:
        env.pop(name, None)
    if profile == "shm":
        path = fastdds_profile()
        if path is None:
            raise FileNotFoundError("config/fastdds_shm.xml not found")
        env.update(profile_environment(path))
    package_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join([package_parent, env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep)
    return env


def proc_status(pid: int) -> dict:
    """VmRSS and VmHWM (MB) and CPU seconds (user + system) of a process, from /proc."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    values["cpu_s"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return values


def benchmark_node(weights, sizes, frames: int, profiles=PROFILES, timeout: float = 10.0,
                   params=(), rate: float = 0.0, engines=("auto",), change_every: float = 0.0,
                   outputs=()):
    """Return one row per (engine, size, profile): keys as benchmark.write_report.

    ``params``: node parameter overrides as 'name:=value' (e.g. 'precision:=fp16'); ``rate``:
    publish at this many Hz (open loop) instead of one frame at a time (0, closed loop);
    ``engines``: the node's engine parameter for each run ('auto': as ``params`` say, else the
    node's default); ``change_every``: seconds between runtime parameter changes (a soak);
    ``outputs``: image outputs subscribed besides the labels (overlay, confidence, color_mask).
    """
    params = check_options(params, rate)
    rows = []
    for engine, (width, height), profile in itertools.product(engines, sizes, profiles):
        chosen = [] if engine == "auto" else [f"engine:={engine}"]  # auto: as params say
        rows.append(run_one(weights, (width, height), frames, profile, timeout,
                            params + chosen, rate, change_every, outputs))
        r = rows[-1]
        print(f"node {r['size']} profile {r['profile']} ({r['device']}, {r['precision']}, "
              f"{r['engine']}, {r['mode']}, {r['outputs']}): {r['received']}/{r['sent']} frames, "
              f"{r['rate_hz']:.1f} Hz, latency p50 {r['latency_p50_ms']:.1f} ms, p95 "
              f"{r['latency_p95_ms']:.1f} (inference {r['inference_p50_ms']:.1f}), CPU "
              f"{r['cpu_percent']:.0f}%, RSS {r['rss_mb']:.0f} MB (peak {r['peak_rss_mb']:.0f}), "
              f"growth {r['rss_growth_mb']:+.1f} MB, first labels {r['first_label_s']:.1f} s "
              "after start", flush=True)
    return rows


def check_options(params, rate: float) -> list[str]:
    """Return the node parameter overrides ('name:=value') as a list.

    Raises:
        ValueError: naming a malformed override, or a negative publish rate.
    """
    for text in params:
        name, sep, _ = text.partition(":=")
        if not sep or not name:
            raise ValueError(f"node parameter {text!r} is not of the form name:=value")
    if not rate >= 0:
        raise ValueError(f"--rate {rate} must be 0 (closed loop) or a positive rate in Hz")
    return list(params)


def run_one(weights, size, frames: int, profile: str, timeout: float, params=(),
            rate: float = 0.0, change_every: float = 0.0, outputs=()) -> dict:
    width, height = size
    domain_id = 100 + os.getpid() % 100  # runs are sequential: one domain per benchmark
    with tempfile.TemporaryDirectory(prefix="lednet_bench_") as tmp:
        env = environment(profile, domain_id, tmp)
        node_cmd = [sys.executable, "-m", "lednet_ros.nodes.segmentation_node", "--ros-args",
                    "-r", f"__ns:={NAMESPACE}", "-p", f"weights:={weights}",
                    "-p", f"input_width:={width}", "-p", f"input_height:={height}",
                    "-p", f"max_image_pixels:={max(width * height, 1)}"]
        for param in params:
            node_cmd += ["-p", param]
        node_started = time.monotonic()
        result = run_with_probe([node_cmd], lambda pids: [
            sys.executable, "-m", "lednet_ros.tools.benchmark_node", "--probe",
            "--size", f"{width}x{height}", "--frames", str(frames), "--node-pid", str(pids[0]),
            "--timeout", str(timeout), "--rate", str(rate), "--node-started", repr(node_started),
            "--change-every", str(change_every), "--outputs", *outputs],
            env, Path(tmp), 120 + frames * timeout)
    result.update(size=f"{width}x{height}",
                  profile="fastdds_shm.xml" if profile == "shm" else "default")
    return result


def run_with_probe(node_commands, probe_command, env: dict, tmp: Path, timeout: float) -> dict:
    """Start the node processes, run the probe (``probe_command(pids)`` + --result), stop them.

    Returns the probe's JSON result; a failed probe raises RuntimeError with the nodes' log.
    """
    log_path, out = tmp / "node.log", tmp / "probe.json"
    with open(log_path, "w") as log:
        nodes = [subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
                 for command in node_commands]
        try:
            subprocess.run(probe_command([n.pid for n in nodes]) + ["--result", str(out)],
                           env=env, check=True, timeout=timeout)
            return json.loads(out.read_text())
        except subprocess.CalledProcessError as exc:
            log.flush()
            raise RuntimeError(f"probe failed ({exc}); node log:\n"
                               + log_path.read_text()[-3000:]) from None
        finally:
            for node in nodes:
                node.terminate()
            for node in nodes:
                node.wait(timeout=20)


# ---- the probe: a camera-like publisher, closed or open loop -----------------------------------

def probe(size, frames: int, node_pid: int, timeout: float, rate: float = 0.0,
          node_started: float = float("nan"), change_every: float = 0.0, outputs=()) -> dict:
    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.parameter import Parameter
    from rcl_interfaces.srv import SetParameters
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from sensor_msgs.msg import Image

    width, height = size
    rclpy.init()
    node = rclpy.create_node("lednet_bench_probe", namespace=NAMESPACE)
    received = {}
    diagnostics = {}

    first_label = []  # time.monotonic() of the first labels (clock shared with run_one)

    def on_labels(msg):
        received[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = time.perf_counter()
        if not first_label:
            first_label.append(time.monotonic())

    def on_diagnostics(msg):
        for status in msg.status:
            if status.name.startswith(f"{NAMESPACE}/"):
                diagnostics.update({kv.key: kv.value for kv in status.values})

    publisher = node.create_publisher(Image, "image", qos_profile_sensor_data)
    node.create_subscription(Image, "lednet_segmentation/labels", on_labels,
                             QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diagnostics, 10)
    for output in outputs:  # subscribed, so the node computes and sends them too
        node.create_subscription(Image, f"lednet_segmentation/{output}", lambda msg: None,
                                 QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    setter = node.create_client(SetParameters, "lednet_segmentation/set_parameters")
    changes = []  # the runtime changes sent (a soak: memory must not grow with them)

    def change_parameters():
        """Flip the input size (the frame's or two thirds of it) and the overlay's alpha."""
        small = len(changes) % 2 == 0
        values = {"input_width": int(width * 2 / 3) if small else width,
                  "input_height": int(height * 2 / 3) if small else height,
                  "overlay_alpha": 0.3 if small else 0.5}
        request = SetParameters.Request(parameters=[
            Parameter(name, value=value).to_parameter_msg() for name, value in values.items()])
        setter.call_async(request)
        changes.append(values)

    if change_every:
        node.create_timer(change_every, change_parameters)

    def spin_until(predicate, limit: float) -> bool:
        deadline = time.perf_counter() + limit
        while time.perf_counter() < deadline:
            if predicate():
                return True
            executor.spin_once(timeout_sec=min(0.005, max(deadline - time.perf_counter(), 0)))
        return predicate()

    if not spin_until(lambda: publisher.get_subscription_count() > 0
                      and node.count_publishers(f"{NAMESPACE}/lednet_segmentation/labels") > 0,
                      90.0):
        raise RuntimeError("the node did not come up within 90 s")
    rng = np.random.default_rng(0)
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[: height // 3] = (235, 238, 242)
    rgb[height // 3:] = (85, 83, 90)
    rgb = np.clip(rgb + rng.integers(-10, 11, rgb.shape), 0, 255).astype(np.uint8)
    data = rgb.tobytes()
    published = {}  # stamp -> publish time, of the measured frames
    start_status = end_status = middle_status = None
    warmup = 5
    started = next_publish = time.perf_counter()
    for index in range(warmup + frames):
        if rate:  # open loop: the camera's pace, whatever comes back
            spin_until(lambda: False, next_publish - time.perf_counter())
            next_publish = max(next_publish + 1.0 / rate, time.perf_counter())
        if index == warmup:
            start_status, started = proc_status(node_pid), time.perf_counter()
        if index == warmup + frames // 2:
            middle_status = proc_status(node_pid)
        msg = Image(height=height, width=width, encoding="rgb8", is_bigendian=0, step=3 * width)
        msg.data = data
        msg.header.frame_id = "bench_camera"
        msg.header.stamp = node.get_clock().now().to_msg()
        last_key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        publish_time = time.perf_counter()
        publisher.publish(msg)
        if index >= warmup:
            published[last_key] = publish_time
        if not rate:
            spin_until(lambda: last_key in received, timeout)
    last_publish = time.perf_counter()
    if rate and published:  # labels still on their way: the newest frame's come last
        spin_until(lambda: last_key in received, timeout)
        spin_until(lambda: all(k in received for k in published), 0.2)
    end_status = proc_status(node_pid)
    latencies = [received[k] - t for k, t in published.items() if k in received]
    arrivals = sorted(received[k] for k in published if k in received)
    elapsed = max(arrivals + [last_publish]) - started
    sent = len(published)
    spin_until(lambda: diagnostics.get("frames processed", "0") != "0"
               and int(diagnostics.get("frames processed", 0)) >= warmup + len(latencies), 3.0)
    node.destroy_node()
    rclpy.shutdown()
    lat = np.asarray(latencies) * 1000
    inference = diagnostics.get("inference p50 (ms)", "nan")
    result = {
        "mode": f"open loop {rate:g} Hz" if rate else "closed loop",
        "publish_rate_hz": ((sent - 1) / (max(published.values()) - min(published.values()))
                            if sent > 1 else float("nan")),
        "sent": sent, "received": len(latencies), "dropped": sent - len(latencies),
        # labels delivered per second: intervals between the first and last arrival
        "rate_hz": ((len(arrivals) - 1) / (arrivals[-1] - arrivals[0])
                    if len(arrivals) > 1 and arrivals[-1] > arrivals[0] else 0.0),
        "latency_p50_ms": float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "latency_p95_ms": float(np.percentile(lat, 95)) if lat.size else float("nan"),
        "latency_max_ms": float(lat.max()) if lat.size else float("nan"),
        "inference_p50_ms": float(inference) if inference not in ("", "n/a") else float("nan"),
        "engine": diagnostics.get("engine", "?"),
        "device": diagnostics.get("device", "?"),
        "precision": diagnostics.get("precision", "?"),
        "cpu_percent": 100 * (end_status["cpu_s"] - start_status["cpu_s"]) / elapsed,
        "peak_rss_mb": end_status["VmHWM"],
        "rss_mb": end_status["VmRSS"],
        "rss_growth_mb": end_status["VmRSS"] - middle_status["VmRSS"],
        # from starting the node's process to its first labels (a frame sent once it is up)
        "first_label_s": (first_label[0] - node_started) if first_label else float("nan"),
        "parameter_changes": len(changes),
        "outputs": " ".join(["labels", *outputs]),
    }
    result["overhead"] = ((result["latency_p50_ms"] - result["inference_p50_ms"])
                          / result["inference_p50_ms"])
    return result


def main(argv=None) -> None:
    from lednet_ros.arguments import parse_size
    from lednet_ros.core.inference.segmenter import default_weights_path

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=default_weights_path())
    parser.add_argument("--sizes", nargs="+", type=parse_size, default=[(512, 256)])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--profiles", nargs="+", choices=PROFILES, default=list(PROFILES))
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for a frame's labels before counting it dropped")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="publish at this rate in Hz, open loop (default 0: closed loop, "
                             "each frame after the previous one's labels)")
    parser.add_argument("--engines", nargs="+", default=["auto"],
                        help="run the node with each of these engines (default: auto)")
    parser.add_argument("--param", action="append", default=[], metavar="NAME:=VALUE",
                        help="a node parameter override, e.g. precision:=fp16 (repeatable)")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    # the probe process (started by benchmark_node)
    parser.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=parse_size, help=argparse.SUPPRESS)
    parser.add_argument("--node-pid", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--node-started", type=float, default=float("nan"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--outputs", nargs="*", default=[],
                        choices=("color_mask", "overlay", "confidence"),
                        help="also subscribe to these image outputs (the node computes them)")
    parser.add_argument("--change-every", type=float, default=0.0,
                        help="a soak: change the node's input size and overlay alpha at runtime "
                             "every this many seconds (default 0: never)")
    args = parser.parse_args(argv)
    try:
        params = check_options(args.param, args.rate)
    except ValueError as exc:
        parser.error(str(exc))
    if args.probe:
        args.result.write_text(json.dumps(probe(args.size, args.frames, args.node_pid,
                                                args.timeout, args.rate, args.node_started,
                                                args.change_every, args.outputs)))
        return
    rows = benchmark_node(args.weights, args.sizes, args.frames, args.profiles, args.timeout,
                          params, args.rate, args.engines, args.change_every, args.outputs)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
