"""The segmentation node's ``~/adapt`` service (std_srvs/Trigger): adapt to this camera live.

The service starts a core.adaptation.live.LiveAdaptation: the node's worker offers each frame it
processes (held at the network's input size), and once ``adapt.frames`` have come, a thread of
their own adapts the weights the node loaded to them by ``adapt.method`` (so a second adaptation
replaces the first) and checks the result against the weights in use on the frames held back
(core.adaptation.check): only weights the check keeps wait in ``ready`` until the worker swaps
them in between two frames (swap_in), and ``adapt.output`` receives them when set. The stream
never stops; /diagnostics says what was kept and why.
"""

from __future__ import annotations

import threading
import time

from std_srvs.srv import Trigger

from lednet_ros.core.adaptation.live import AdaptationRefused, LiveAdaptation
from lednet_ros.core.inference.checkpoint import file_sha256, load_weights, save_weights
from lednet_ros.core.inference.segmenter import Segmenter
from lednet_ros.core.runtime.pipeline import Pipeline


class AdaptService:
    """``~/adapt`` on ``node`` (a SegmentationNode: values, pipeline, settings, segmenter).

    ``input_watch`` (ros.diagnostics.InputWatch) tells when the last frame of the camera it
    learns from arrived; ``stats`` (that camera's PipelineStats) notes what went wrong.
    """

    def __init__(self, node, input_watch, stats):
        self.node, self.input_watch, self.stats = node, input_watch, stats
        self.live = LiveAdaptation(self._adapt, self._adapted)
        self.ready = None  # (Segmenter, its torch model) not yet swapped in (under _ready_lock)
        self._in_use = None  # the swapped-in weights' torch model (None: the loaded file's)
        self._ready_lock = threading.Lock()  # set by the adaptation thread, taken by the worker
        node.create_service(Trigger, "~/adapt", self._on_call)

    def swap_in(self, pipeline: Pipeline) -> Pipeline:
        """Return the pipeline for the next frame: on the adapted Segmenter once one waits.

        The worker calls it between frames and keeps what it returns.
        """
        with self._ready_lock:
            ready, self.ready = self.ready, None
            if ready is None:
                return pipeline
            segmenter, self._in_use = ready
        written = self.node.values["adapt.output"]
        self.node.get_logger().info(
            f"~/adapt: now segmenting with weights adapted to this camera "
            f"({self.live.status})" + (f"; written to {written}" if written else ""))
        return Pipeline(segmenter)

    def check_deadline(self) -> None:
        """Give up gathering past ``adapt.timeout``, saying so (the diagnostics timer)."""
        abandoned = self.live.check_deadline()
        if abandoned:
            self.stats.note_error(abandoned)
            self.node.get_logger().warning(abandoned)

    def _on_call(self, request, response):
        """Start gathering frames for an adaptation; refuse with the reason when it cannot."""
        values, topic = self.node.values, self.input_watch.topic
        quiet_s = values["no_frames_timeout"] or 5.0
        arrived = self.input_watch.last_arrival
        if arrived is None or time.monotonic() - arrived > quiet_s:
            response.success = False
            response.message = (f"refused: no frames arriving on {topic} (none in the last "
                                f"{quiet_s:.1f} s)")
        else:
            try:
                response.message = self.live.start(
                    values["adapt.frames"], values["adapt.timeout"],
                    size=self.node.pipeline.input_size(self.node.settings),
                    check_every=values["adapt.check_every"])
                response.success = True
            except AdaptationRefused as exc:
                response.success, response.message = False, f"refused: {exc}"
        if response.success:  # rclpy: one severity per logging call site
            self.node.get_logger().info(f"~/adapt: {response.message}")
        else:
            self.node.get_logger().warning(f"~/adapt: {response.message}")
        return response

    def _adapt(self, frames, held_back):
        """Adapt on ``frames``, check on ``held_back`` (the adaptation thread); write the files.

        Returns ((the adapted Segmenter, its model), note), or (None, note) where the check
        keeps the weights in use. Imports torch (the adaptation runs on the model) where the
        node had not.
        """
        from lednet_ros.core.adaptation.check import check_score, judge
        from lednet_ros.core.adaptation.methods import (
            AdaptationSettings, adapt, adapted_metadata, settings_record,
        )
        from lednet_ros.core.inference.onnx_export import write_graphs_beside

        node, values = self.node, self.node.values
        method = values["adapt.method"]
        settings = AdaptationSettings(bn_prior=values["adapt.bn_prior"],
                                      bn_depth=values["adapt.bn_depth"])
        model, metadata = load_weights(node.weights_path)
        size = node.pipeline.input_size(node.settings)
        adapted = adapt(model, metadata, frames, method=method, input_size=size,
                        settings=settings)
        note = f"{method}, not checked (adapt.check_every 0)"
        if held_back:
            with self._ready_lock:
                in_use = self._in_use or model
            scores = (check_score(m, held_back, size, metadata.mean, metadata.std)
                      for m in (in_use, adapted))
            keep, why = judge(*scores)
            note = f"{method}, {why}"
            if not keep:
                node.get_logger().warning(f"~/adapt: adapted weights not kept: {note}")
                return None, note
        adapted_meta = adapted_metadata(
            metadata, method=method, sources=[{"path": self.input_watch.topic,
                                               "kind": "live topic", "frames": len(frames)}],
            base_sha256=file_sha256(node.weights_path), input_size=size,
            settings=settings_record(method, settings), base_path=node.weights_path)
        if values["adapt.output"]:
            save_weights(values["adapt.output"], adapted, adapted_meta)
            write_graphs_beside(adapted, values["adapt.output"])
        current = node.segmenter
        # int8 needs INT8 graphs made from frames of the weights (tools.quantize): the adapted
        # weights have none yet, so they run in the precision auto picks without them
        precision = "auto" if current.precision == "int8" else current.precision
        segmenter = Segmenter(adapted, adapted_meta, device=str(current.device),
                              precision=precision, engine=current.engine.name)
        return (segmenter, adapted), note

    def _adapted(self, ready: tuple) -> None:
        with self._ready_lock:
            self.ready = ready
