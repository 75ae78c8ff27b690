"""Benchmark LEDNet: every engine and precision side by side, the node's pipeline, the node.

    python -m lednet_ros.tools.benchmark [--sizes 512x256 480x360 1024x512] [--runs 20]
        [--frames 4] [--camvid DIR] [--node] [--out benchmark_results]

Every kept engine and precision available here (engines.ENGINE_PRECISIONS) is timed on one frame
per size (labels only, and with the confidence), timed in interleaved rounds so that a change of
load on a shared machine hits every engine alike; the others are listed as skipped with the
reason. Each is compared with eager PyTorch fp32: the time ratio, the share of equal labels and
the largest confidence difference, on real CamVid test frames (../shared/data/camvid beside the
repository, or --camvid) where present, else on made frames. Writes <out>/benchmark.json and
<out>/benchmark.md with the machine described. Timing lives here, never in the unit tests.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
from pathlib import Path

import cv2
import numpy as np
import torch

from lednet_ros.arguments import parse_size
from lednet_ros.core.data.datasets import read_rgb
from lednet_ros.core.inference.checkpoint import load_weights
from lednet_ros.core.inference.cpu import cpu_flags, cpu_model, native_bf16
from lednet_ros.core.inference.engine_choice import (
    ENGINE_PRECISIONS, ENGINES, ONNX_ENGINES, choose_engine, installed_runtimes,
)
from lednet_ros.core.inference.engines import make_engine
from lednet_ros.core.inference.network_io import preprocess
from lednet_ros.core.inference.onnx_cache import int8_graphs
from lednet_ros.core.inference.onnx_engines import make_onnx_engine
from lednet_ros.core.inference.segmenter import default_weights_path, resolve_device
from lednet_ros.tools.benchmark_frames import (
    benchmark_ground, benchmark_pipeline, percentile, time_engine,
)

DEFAULT_CAMVID = Path(__file__).resolve().parents[3] / "shared" / "data" / "camvid"
VARIANT_PRECISIONS = ("fp32", "fp16", "bf16", "int8")
REFERENCE = ("torch", "fp32")


def describe_machine() -> dict:
    """Return the CPU, its relevant flags, the GPU and the library versions."""
    flags = cpu_flags()
    info = {"cpu": cpu_model(), "cpu_cores": os.cpu_count(),
            "cpu_flags": sorted(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
                                if f in flags),
            "native_bf16": native_bf16(flags), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    for name in ONNX_ENGINES:
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    return info


def comparison_frames(camvid: Path | None, count: int) -> tuple[list[np.ndarray], str]:
    """Return ``count`` CamVid test frames spread over the split, or made frames, and which."""
    paths = sorted((camvid / "test").glob("*.png")) if camvid is not None else []
    if paths:
        picked = [paths[i * (len(paths) - 1) // max(1, count - 1)] for i in range(count)]
        return [read_rgb(path) for path in picked], f"{count} CamVid test frames ({camvid})"
    rng = np.random.default_rng(0)
    made = []
    for _ in range(count):  # smooth colour fields: made scenes, not noise
        small = rng.integers(0, 256, (9, 12, 3), dtype=np.uint8)
        made.append(cv2.resize(small, (480, 360)))
    return made, f"{count} made frames (no CamVid test split found)"


def engine_variants(device: torch.device, int8: bool = False
                    ) -> tuple[list[tuple[str, str]], list[dict]]:
    """Return the (engine, precision) pairs that run here, eager fp32 first, and the skipped.

    Each engine is tried in every precision it runs on some device (ENGINE_PRECISIONS);
    ``int8``: whether the weights have INT8 graphs.
    """
    runnable, skipped = [], []
    for name in (e for e in ENGINES if e != "auto"):
        for precision in (p for p in VARIANT_PRECISIONS
                          if any(p in kind for kind in ENGINE_PRECISIONS[name].values())):
            try:
                choose_engine(name, precision, device, int8_graphs=int8)
            except ValueError as exc:
                skipped.append({"engine": name, "precision": precision, "reason": str(exc)})
            else:
                runnable.append((name, precision))
    runnable.sort(key=lambda variant: variant != REFERENCE)
    return runnable, skipped


def benchmark_engines(weights, sizes, runs: int, device: torch.device, frames: list[np.ndarray],
                      rounds: int = 5) -> tuple[list[dict], list[dict]]:
    """Time and compare every engine and precision that runs here, at each size.

    Returns:
        rows: one per (size, engine, precision) with the median and p95 of predict (labels
            only), the median with the confidence, the ratio to eager fp32, the share of labels
            equal to eager fp32 and the largest confidence difference (in levels of 255).
        skipped: one per (engine, precision) that cannot run here, with the reason.
    """
    model, meta = load_weights(weights)
    int8 = int8_graphs(weights)
    variants, skipped = engine_variants(device, int8 is not None)
    for row in skipped:
        print(f"skip {row['engine']} {row['precision']}: {row['reason']}")
    engines = {v: make_onnx_engine(choose_engine(*v, device, int8_graphs=True), int8) if v[1]
               == "int8" else make_engine(v[0], model, device, v[1]) for v in variants}
    rows = []
    for width, height in sizes:
        inputs = [preprocess(rgb, (width, height), meta.mean, meta.std) for rgb in frames]
        outputs = {}
        for variant, engine in engines.items():  # also the warm-up (OpenVINO compiles a size)
            outputs[variant] = [engine.predict(x.to(engine.input_device, engine.input_dtype),
                                               True) for x in inputs]
        times = {v: [] for v in engines}
        with_confidence = {v: [] for v in engines}
        per_round = max(1, math.ceil(runs / rounds))
        for _ in range(rounds):  # interleaved: load changes hit every engine alike
            for variant, engine in engines.items():
                x = inputs[0].to(engine.input_device, engine.input_dtype)
                times[variant] += time_engine(engine.predict, x, per_round, warmup=0)
                with_confidence[variant] += time_engine(
                    lambda xin, e=engine: e.predict(xin, True), x, 1, warmup=0)
        reference = outputs[REFERENCE]
        for variant in engines:
            labels = np.concatenate([o[0].ravel() for o in outputs[variant]])
            expected = np.concatenate([o[0].ravel() for o in reference])
            confidence = np.concatenate([o[1].ravel() for o in outputs[variant]]).astype(int)
            expected_confidence = np.concatenate([o[1].ravel() for o in reference])
            median = statistics.median(times[variant])
            rows.append({
                "size": f"{width}x{height}", "engine": variant[0], "precision": variant[1],
                "device": str(device), "median_ms": 1000 * median,
                "p95_ms": 1000 * percentile(times[variant], 95), "fps": 1.0 / median,
                "with_confidence_ms": 1000 * statistics.median(with_confidence[variant]),
                "label_agreement": float((labels == expected).mean()),
                "confidence_max_diff": int(np.abs(confidence - expected_confidence).max()),
            })
        baseline = statistics.median(times[REFERENCE])
        for row in rows[-len(engines):]:
            row["speedup_vs_eager_fp32"] = 1000 * baseline / row["median_ms"]
            print(f"{row['size']} {row['engine']:<12} {row['precision']}: "
                  f"{row['median_ms']:8.1f} ms median ({row['speedup_vs_eager_fp32']:.2f}x eager "
                  f"fp32), {row['with_confidence_ms']:.1f} ms with confidence, labels "
                  f"{100 * row['label_agreement']:.3f}% equal to eager fp32, confidence within "
                  f"{row['confidence_max_diff']}")
    return rows, skipped


def write_report(out: Path, result: dict) -> None:
    """Write <out>/benchmark.json and <out>/benchmark.md."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmark.json").write_text(json.dumps(result, indent=2))
    m = result["machine"]
    auto = result["auto"]
    lines = ["# LEDNet benchmark", "",
             f"Machine: {m['cpu']}, {m['cpu_cores']} cores (flags: "
             f"{', '.join(m['cpu_flags']) or 'none of avx2/avx512f/avx512_bf16/amx_bf16'}), GPU: "
             f"{m['gpu'] or 'none'}; torch {m['torch']} ({m['torch_threads']} threads), "
             f"onnxruntime {m['onnxruntime']}, openvino {m['openvino']}.", "",
             f"Auto here: engine {auto['engine']}, {auto['precision']} ({auto['reason']}).", "",
             "## Model forward (one frame: preprocessed input to uint8 labels)", "",
             f"Labels and confidence compared with eager PyTorch fp32 on {result['frames']}.", "",
             "| size | engine | precision | device | median ms | p95 ms | FPS | x eager fp32 "
             "| with confidence ms | labels equal to eager fp32 | confidence max diff |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["engines"]:
        lines.append(f"| {r['size']} | {r['engine']} | {r['precision']} | {r['device']} | "
                     f"{r['median_ms']:.1f} | {r['p95_ms']:.1f} | {r['fps']:.1f} | "
                     f"{r['speedup_vs_eager_fp32']:.2f} | {r['with_confidence_ms']:.1f} | "
                     f"{100 * r['label_agreement']:.3f}% | {r['confidence_max_diff']} |")
    if result.get("skipped"):
        lines += ["", "Skipped here:", ""]
        lines += [f"- {r['engine']} {r['precision']}: {r['reason']}" for r in result["skipped"]]
    if result.get("pipeline"):
        lines += ["", "## Node pipeline without DDS (frame buffer -> labels, occupancy, mask)", "",
                  "| size | engine | device | precision | mirror check | median ms | p95 ms "
                  "| FPS |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['size']} | {r['engine']} | {r['device']} | {r['precision']} | "
                  f"{'on' if r.get('mirror_check') else 'off'} | "
                  f"{r['median_ms']:.1f} | {r['p95_ms']:.1f} | {r['fps']:.1f} |"
                  for r in result["pipeline"]]
    if result.get("ground"):
        lines += ["", "## Ground outputs and health check per frame (lookup cached)", "",
                  "| label size | grids + costmap ms | p95 ms | with the three clouds ms "
                  "| p95 ms | health check ms | p95 ms | grids + costmap with depth ms | p95 ms "
                  "| and the semantic cloud ms |", "|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['size']} | {r['median_ms']:.2f} | {r['p95_ms']:.2f} | "
                  f"{r['all_ms']:.2f} | {r['all_p95_ms']:.2f} | {r['health_ms']:.2f} | "
                  f"{r['health_p95_ms']:.2f} | {r['depth_ms']:.2f} | {r['depth_p95_ms']:.2f} | "
                  f"{r['semantic_ms']:.2f} |"
                  for r in result["ground"]]
    if result.get("node"):
        lines += ["", "## Node end to end over DDS (publish -> labels received)", "",
                  "| size | profile | device | precision | engine | mode | sent | received "
                  "| dropped | rate Hz | latency p50 ms | p95 ms | node inference p50 ms "
                  "| forward ms | overhead | node CPU % | node RSS MB | peak RSS MB "
                  "| RSS growth MB | first labels s |",
                  "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
                  "---|"]
    for s in result.get("node", []):
        lines.append(f"| {s['size']} | {s['profile']} | {s['device']} | {s['precision']} | "
                     f"{s['engine']} | {s['mode']} | {s['sent']} | {s['received']} | "
                     f"{s['dropped']} | {s['rate_hz']:.2f} | {s['latency_p50_ms']:.1f} | "
                     f"{s['latency_p95_ms']:.1f} | {s['inference_p50_ms']:.1f} | "
                     f"{s.get('forward_ms', float('nan')):.1f} | "
                     f"{100 * s['overhead']:.0f}% | {s['cpu_percent']:.0f} | "
                     f"{s['rss_mb']:.0f} | {s['peak_rss_mb']:.0f} | {s['rss_growth_mb']:+.1f} | "
                     f"{s['first_label_s']:.1f} |")
    lines += ["", f"Benchmark process peak RSS: {result['peak_rss_mb']:.0f} MB."]
    (out / "benchmark.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=default_weights_path())
    parser.add_argument("--sizes", nargs="+", type=parse_size,
                        default=[(512, 256), (480, 360), (1024, 512)])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--frames", type=int, default=4,
                        help="frames the labels and confidence are compared on")
    parser.add_argument("--camvid", type=Path, default=DEFAULT_CAMVID,
                        help="CamVid folder (SegNet layout) whose test frames are compared on")
    parser.add_argument("--pipeline-precision", default="auto",
                        help="precision of the pipeline and node measurements (default auto)")
    parser.add_argument("--node", action="store_true",
                        help="also measure the ROS 2 node end to end over DDS (needs the build)")
    parser.add_argument("--node-frames", type=int, default=60)
    parser.add_argument("--node-engines", nargs="+", default=None,
                        help="the node's engines (default: auto and each CPU engine installed)")
    parser.add_argument("--node-rate", type=float, default=0.0,
                        help="the node's camera rate in Hz (default 0: closed loop)")
    parser.add_argument("--out", type=Path, default=Path("benchmark_results"))
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    frames, source = comparison_frames(args.camvid if args.camvid.is_dir() else None,
                                       max(1, args.frames))
    engines, skipped = benchmark_engines(args.weights, args.sizes, args.runs, device, frames)
    auto = choose_engine("auto", "auto", device, int8_graphs=bool(int8_graphs(args.weights)))
    result = {"machine": describe_machine(), "frames": source,
              "auto": {"engine": auto.engine, "precision": auto.precision,
                       "reason": auto.reason},
              "engines": engines, "skipped": skipped,
              "pipeline": benchmark_pipeline(args.weights, args.sizes, args.runs, args.device,
                                             args.pipeline_precision),
              "ground": benchmark_ground(args.sizes, args.runs)}
    if args.node:
        from lednet_ros.tools.benchmark_node import benchmark_node

        params = [f"device:={args.device}", f"precision:={args.pipeline_precision}"]
        engines = args.node_engines or ["auto"] + (
            [e for e in ONNX_ENGINES if e in installed_runtimes()] + ["torch"]
            if device == "cpu" else [])
        result["node"] = benchmark_node(args.weights, args.sizes, args.node_frames, params=params,
                                        rate=args.node_rate, engines=engines)
        pipeline = result["pipeline"][0]
        forward = {r["size"]: r["median_ms"] for r in result["engines"]
                   if (r["engine"], r["precision"]) == (pipeline["engine"],
                                                        pipeline["precision"])}
        for row in result["node"]:  # the node's cost beyond the bare forward pass
            row["forward_ms"] = forward.get(row["size"], float("nan"))
            row["overhead"] = (row["latency_p50_ms"] - row["forward_ms"]) / row["forward_ms"]
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    write_report(args.out, result)
    print(f"wrote {args.out / 'benchmark.md'} and {args.out / 'benchmark.json'}")


if __name__ == "__main__":
    main()
