"""The benchmark's per-frame work without DDS: the node's pipeline, its ground outputs and health.

Called by lednet_ros.tools.benchmark (its report has their tables); the timing helpers of every
benchmark section are here too.
"""

from __future__ import annotations

import statistics
import time

import cv2
import numpy as np
import torch


def percentile(values, q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def time_engine(engine, x: torch.Tensor, runs: int, warmup: int = 2) -> list[float]:
    """Time ``runs`` calls of ``engine(x)`` after ``warmup`` calls, in seconds."""
    cuda = isinstance(x, torch.Tensor) and x.is_cuda
    for _ in range(warmup):
        engine(x)
    if cuda:
        torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        engine(x)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - started)
    return times


def benchmark_pipeline(weights, sizes, runs: int, device: str, precision: str) -> list[dict]:
    """Time the node's per-frame work without DDS, with the default (auto) engine.

    An rgb8 message buffer read (images.rgb_from_message), then core.runtime.pipeline as the node
    runs it: segmented at its own size, labels at the original size, occupancy on a 3 x 3 grid and
    the colour mask; again with the mirrored frame in the same pass (ground.mirror_check), the
    two timed in interleaved rounds.
    """
    from types import SimpleNamespace

    from lednet_ros.core.inference.segmenter import Segmenter
    from lednet_ros.core.runtime.images import rgb_from_message
    from lednet_ros.core.runtime.pipeline import FrameSettings, Outputs, Pipeline

    rows = []
    rng = np.random.default_rng(0)
    for width, height in sizes:
        segmenter = Segmenter.from_weights(weights, device=device, precision=precision,
                                           input_size=(width, height))
        pipeline = Pipeline(segmenter)
        settings = FrameSettings(input_size=(width, height))
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        msg = SimpleNamespace(data=rgb.tobytes(), height=height, width=width, step=3 * width,
                              encoding="rgb8", is_bigendian=0)
        variants = {False: Outputs(color_mask=True),
                    True: Outputs(color_mask=True, confidence=True, mirror_confidence=True)}
        times = {mirror: [] for mirror in variants}
        for _ in range(max(1, runs // 5)):  # interleaved rounds of 5
            for mirror, outputs in variants.items():
                times[mirror] += time_engine(
                    lambda m, o=outputs: pipeline.process(rgb_from_message(m), settings, o),
                    msg, 5, warmup=1)
        for mirror, measured in times.items():
            median = statistics.median(measured)
            rows.append({"size": f"{width}x{height}", "engine": segmenter.engine.name,
                         "device": str(segmenter.device), "precision": segmenter.precision,
                         "mirror_check": mirror, "median_ms": 1000 * median,
                         "p95_ms": 1000 * percentile(measured, 95), "fps": 1.0 / median})
            print(f"pipeline {width}x{height} {segmenter.engine.name} {segmenter.precision}"
                  f"{' mirror check' if mirror else ''}: {rows[-1]['median_ms']:.1f} ms median, "
                  f"{rows[-1]['fps']:.1f} FPS")
    return rows


def benchmark_ground(sizes, runs: int) -> list[dict]:
    """Time the node's ground outputs per frame, lookup cached, and its perception health check.

    Per-group grids and costmap alone (free-space rules of the defaults), and all outputs: with
    the three Nav2 clouds (obstacle, free every 4th pixel, aligned) and their PointCloud2 bytes.
    The health check (core.runtime.health, defaults) on a drawn frame of that size. With depth
    (core.ground.depth: a depth image of random 0.5-20 m at the labels' size, the top third
    without depth: sky): its points, grids and costmap from them; and the semantic cloud.

    CamVid class groups, the 10 m x 20 m grid at 0.1 m, a pinhole camera 1.5 m high pitched down
    0.15 rad, footprints of the default rule; labels and confidence drawn at random (the cost
    barely depends on them).
    """
    from lednet_ros.core.data.classes import CAMVID
    from lednet_ros.core.data.frame_sources import pinhole_intrinsics
    from lednet_ros.core.ground.camera_geometry import CameraPose, Intrinsics
    from lednet_ros.core.ground.class_groups import default_class_groups
    from lednet_ros.core.ground.clouds import aligned_points, free_points, obstacle_points
    from lednet_ros.core.ground.footprints import (
        DEFAULT_FOOTPRINT_CONFIDENCE, DEFAULT_FOOTPRINT_RUN, footprint_run,
    )
    from lednet_ros.core.ground.mapping import (
        DEFAULT_FREE_CONFIDENCE, DEFAULT_FREE_MARGIN, GridSpec, GroundMapper,
    )
    from lednet_ros.core.ground.depth import DepthProjector, semantic_points
    from lednet_ros.core.runtime.health import HealthMonitor, HealthSettings

    rows, rng = [], np.random.default_rng(0)
    mapper = GroundMapper(default_class_groups("camvid", CAMVID.names))
    pose, grid = CameraPose(height=1.5, pitch=0.15), GridSpec()
    for width, height in sizes:
        fields = pinhole_intrinsics(width, height)
        camera = Intrinsics.from_camera_info(fields["k"], fields["d"], fields["p"], "plumb_bob",
                                             width, height)
        labels = rng.integers(0, CAMVID.num_classes, (height, width), dtype=np.uint8)
        confidence = rng.integers(0, 256, (height, width), dtype=np.uint8)
        footprint = (footprint_run(DEFAULT_FOOTPRINT_RUN, height), confidence,
                     DEFAULT_FOOTPRINT_CONFIDENCE, DEFAULT_FREE_CONFIDENCE, DEFAULT_FREE_MARGIN)
        frame = cv2.resize(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8), (width, height))
        monitor = HealthMonitor(HealthSettings())
        metres = rng.uniform(0.5, 20.0, (height, width)).astype(np.float32)
        metres[: height // 3] = np.nan  # the sky: no depth, mapped by the flat model (auto)
        projector = DepthProjector()

        def grids(labels):
            maps = mapper.map(labels, camera, pose, grid, *footprint, mirror_confidence=confidence)
            maps.group_grids(), maps.costmap()
            return maps

        def everything(labels):
            maps = grids(labels)
            for points in (obstacle_points(maps, 0.3), free_points(maps, 4),
                           aligned_points(maps)):
                points.tobytes()

        def health(labels):
            monitor.check(frame, None, labels, confidence, CAMVID.num_classes)

        def with_depth(labels):
            base = projector.points(metres, camera, pose)
            maps = mapper.map(labels, camera, pose, grid, *footprint, depth_points=base,
                              mirror_confidence=confidence)
            maps.group_grids(), maps.costmap()
            return base

        def semantic_cloud(labels):
            semantic_points(with_depth(labels), labels, confidence, CAMVID.colors).tobytes()

        row = {"size": f"{width}x{height}"}
        for work, median, p95 in ((grids, "median_ms", "p95_ms"),
                                  (everything, "all_ms", "all_p95_ms"),
                                  (health, "health_ms", "health_p95_ms"),
                                  (with_depth, "depth_ms", "depth_p95_ms"),
                                  (semantic_cloud, "semantic_ms", "semantic_p95_ms")):
            times = time_engine(work, labels, runs, warmup=2)  # the first builds the lookup
            row[median], row[p95] = (1000 * statistics.median(times),
                                     1000 * percentile(times, 95))
        rows.append(row)
        print(f"ground {width}x{height}: grids + costmap {row['median_ms']:.1f} ms median; "
              f"with the three clouds {row['all_ms']:.1f} ms; health check "
              f"{row['health_ms']:.2f} ms; with depth {row['depth_ms']:.1f} ms, and the "
              f"semantic cloud {row['semantic_ms']:.1f} ms")
    return rows
