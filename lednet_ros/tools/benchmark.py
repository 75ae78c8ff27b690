"""Benchmark LEDNet: forward time per inference engine and input size, and the node end to end.

    python -m lednet_ros.tools.benchmark [--sizes 512x256 1024x512 2048x1024] [--runs 20] [--node]
        [--out benchmark_results]

Writes <out>/benchmark.json and <out>/benchmark.md (a Markdown table), with the machine described.
Every engine is checked against plain PyTorch fp32 on the same input (label agreement reported).
Timing lives here, never in the unit tests.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from lednet_ros.core.checkpoint import load_weights
from lednet_ros.core.engines import ENGINES, make_engine
from lednet_ros.core.processing import labels_from_logits
from lednet_ros.tools.segment_files import parse_size
from lednet_ros.core.segmenter import default_weights_path, resolve_device


def describe_machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cpu_cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    return info


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def time_engine(engine, x: torch.Tensor, runs: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        engine(x)
    if x.is_cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        engine(x)
        if x.is_cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return times


def benchmark_engines(weights, sizes, runs: int, device: torch.device,
                      compile_engine: bool = True) -> list[dict]:
    """Forward time of every available engine (and fp16 on CUDA) at each size."""
    model, _ = load_weights(weights)
    variants = [(name, torch.float32) for name in ENGINES
                if name != "auto" and (compile_engine or name != "compile")]
    if device.type == "cuda":
        variants = [(n, d) for n, d in variants if n != "onnxruntime"]
        variants += [(n, torch.float16) for n in ("torch", "torch_fused", "channels_last",
                                                  "cuda_graph", "tensorrt")]
    else:
        variants = [(n, d) for n, d in variants if n not in ("cuda_graph", "tensorrt")]
    rows = []
    for width, height in sizes:
        x = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(0))
        reference = None
        for name, dtype in variants:
            try:
                engine = make_engine(name, model, device, dtype)
            except ValueError as exc:
                print(f"skip {name}: {exc}")
                continue
            xin = x.to(engine.input_device, engine.input_dtype)  # as the Segmenter feeds it
            labels = labels_from_logits(engine(xin).float())
            reference = labels if reference is None else reference
            times = time_engine(engine, xin, runs)
            median = statistics.median(times)
            rows.append({
                "size": f"{width}x{height}", "engine": name, "device": str(device),
                "precision": "fp16" if dtype == torch.float16 else "fp32",
                "median_ms": 1000 * median, "p95_ms": 1000 * percentile(times, 95),
                "fps": 1.0 / median, "label_agreement": float((labels == reference).mean()),
            })
            print(f"{width}x{height} {name:<12} {rows[-1]['precision']}: "
                  f"{rows[-1]['median_ms']:8.1f} ms median, {rows[-1]['fps']:6.1f} FPS, "
                  f"labels {100 * rows[-1]['label_agreement']:.3f}% equal to torch fp32")
    baseline = {r["size"]: r["median_ms"] for r in rows
                if r["engine"] == "torch" and r["precision"] == "fp32"}
    for r in rows:
        r["speedup_vs_eager_fp32"] = baseline[r["size"]] / r["median_ms"]
    return rows


def benchmark_pipeline(weights, sizes, runs: int, device: str, precision: str) -> list[dict]:
    """The node's per-frame work without DDS, with its default engine: an rgb8 message buffer
    read (processing.rgb_from_message), segmented at its own size, labels at the original size,
    occupancy on a 3 x 3 grid and the colour mask."""
    from types import SimpleNamespace

    from lednet_ros.core.images import rgb_from_message

    from lednet_ros.core.processing import class_occupancy, colorize
    from lednet_ros.core.segmenter import Segmenter

    rows = []
    rng = np.random.default_rng(0)
    for width, height in sizes:
        segmenter = Segmenter.from_weights(weights, device=device, precision=precision,
                                           input_size=(width, height))
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        msg = SimpleNamespace(data=rgb.tobytes(), height=height, width=width, step=3 * width,
                              encoding="rgb8", is_bigendian=0)

        def frame():
            labels = segmenter.segment(rgb_from_message(msg))
            class_occupancy(labels, segmenter.num_classes, (3, 3))
            colorize(labels, segmenter.palette)

        times = time_engine(lambda _: frame(), torch.empty(0), runs, warmup=3)
        median = statistics.median(times)
        rows.append({"size": f"{width}x{height}", "engine": segmenter.engine.name,
                     "device": str(segmenter.device), "precision": precision,
                     "median_ms": 1000 * median, "p95_ms": 1000 * percentile(times, 95),
                     "fps": 1.0 / median})
        print(f"pipeline {width}x{height} {segmenter.engine.name} {precision}: "
              f"{rows[-1]['median_ms']:.1f} ms median, {rows[-1]['fps']:.1f} FPS")
    return rows


def write_report(out: Path, result: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(result, indent=2))
    m = result["machine"]
    lines = ["# LEDNet benchmark", "",
             f"Machine: {m['cpu']}, {m['cpu_cores']} cores, GPU: {m['gpu'] or 'none'}; "
             f"torch {m['torch']} ({m['torch_threads']} threads), onnxruntime {m['onnxruntime']}.",
             "", "## Model forward (one frame)", "",
             "| size | engine | device | precision | median ms | p95 ms | FPS | x eager fp32 "
             "| labels equal to eager |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["engines"]:
        lines.append(f"| {r['size']} | {r['engine']} | {r['device']} | {r['precision']} | "
                     f"{r['median_ms']:.1f} | {r['p95_ms']:.1f} | {r['fps']:.1f} | "
                     f"{r['speedup_vs_eager_fp32']:.2f} | {100 * r['label_agreement']:.3f}% |")
    if result.get("pipeline"):
        lines += ["", "## Node pipeline without DDS (frame buffer -> labels, occupancy, mask)", "",
                  "| size | engine | device | precision | median ms | p95 ms | FPS |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {r['size']} | {r['engine']} | {r['device']} | {r['precision']} | "
                  f"{r['median_ms']:.1f} | {r['p95_ms']:.1f} | {r['fps']:.1f} |"
                  for r in result["pipeline"]]
    if result.get("node"):
        lines += ["", "## Node end to end over DDS (publish -> labels received)", "",
                  "| size | profile | device | precision | engine | mode | sent | received "
                  "| dropped | rate Hz | latency p50 ms | p95 ms | node inference p50 ms "
                  "| forward ms | overhead | node CPU % | node peak RSS MB | RSS growth MB |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in result.get("node", []):
        lines.append(f"| {s['size']} | {s['profile']} | {s['device']} | {s['precision']} | "
                     f"{s['engine']} | {s['mode']} | {s['sent']} | {s['received']} | "
                     f"{s['dropped']} | {s['rate_hz']:.2f} | {s['latency_p50_ms']:.1f} | "
                     f"{s['latency_p95_ms']:.1f} | {s['inference_p50_ms']:.1f} | "
                     f"{s.get('forward_ms', float('nan')):.1f} | "
                     f"{100 * s['overhead']:.0f}% | {s['cpu_percent']:.0f} | "
                     f"{s['peak_rss_mb']:.0f} | {s['rss_growth_mb']:+.1f} |")
    lines += ["", f"Benchmark process peak RSS: {result['peak_rss_mb']:.0f} MB."]
    (out / "benchmark.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=default_weights_path())
    parser.add_argument("--sizes", nargs="+", type=parse_size,
                        default=[(512, 256), (1024, 512), (2048, 1024)])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-compile", action="store_true",
                        help="skip the torch.compile engine (it compiles for each size first)")
    parser.add_argument("--pipeline-precision", default="fp32",
                        help="precision of the pipeline and node measurements (fp16: CUDA only)")
    parser.add_argument("--node", action="store_true",
                        help="also measure the ROS 2 node end to end over DDS (needs the build)")
    parser.add_argument("--node-frames", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("benchmark_results"))
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    result = {"machine": describe_machine(),
              "engines": benchmark_engines(args.weights, args.sizes, args.runs, device,
                                           compile_engine=not args.no_compile),
              "pipeline": benchmark_pipeline(args.weights, args.sizes, args.runs, args.device,
                                             args.pipeline_precision)}
    if args.node:
        from lednet_ros.tools.benchmark_node import benchmark_node

        params = [f"device:={args.device}", f"precision:={args.pipeline_precision}"]
        result["node"] = benchmark_node(args.weights, args.sizes, args.node_frames, params=params)
        auto = {r["size"]: r for r in result["engines"]
                if r["engine"] == result["pipeline"][0]["engine"]
                and r["precision"] == args.pipeline_precision}
        for row in result["node"]:  # the node's cost beyond the bare forward pass
            forward = auto[row["size"]]["median_ms"] if row["size"] in auto else float("nan")
            row["forward_ms"] = forward
            row["overhead"] = (row["latency_p50_ms"] - forward) / forward
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_report(args.out, result)
    print(f"wrote {args.out / 'benchmark.md'} and {args.out / 'benchmark.json'}")


if __name__ == "__main__":
    main()
