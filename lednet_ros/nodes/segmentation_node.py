"""The LEDNet segmentation node: camera images in; labels, masks and occupancy out.

Wiring only: core.runtime reads and segments frames, ros.health_outputs checks them, ros.messages
and ros.ground_outputs (with depth) publish, ros.adapt_service adapts the weights. The image
callback keeps only the newest frame; a worker thread processes it, so services stay answered.
"""

from __future__ import annotations

import sys

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterException
from rclpy.node import Node
from std_msgs.msg import Header

from lednet_ros.core.inference.checkpoint import CheckpointError, metrics_summary
from lednet_ros.core.inference.segmenter import Segmenter, default_weights_path
from lednet_ros.core.runtime.pipeline import Pipeline
from lednet_ros.core.runtime.worker import HandoffWorker, NewestItemWorker
from lednet_ros.msg import ClassInfo
from lednet_ros.ros.adapt_service import AdaptService
from lednet_ros.ros.camera_io import CameraIO
from lednet_ros.ros.diagnostics import diagnostic_array
from lednet_ros.ros.messages import class_info_message
from lednet_ros.ros.parameters import LATCHED, declare, qos, undeclared_overrides, warn_undeclared
from lednet_ros.ros.runner import refuse_start, run_node
from lednet_ros.ros.segmentation_parameters import (
    FIXED_PARAMETERS, PARAMETERS, camera_ground_settings, camera_names, class_groups,
    declare_by_weights, declare_cameras, frame_settings, health_settings, refuse_renamed,
)

NODE_NAME = "lednet_segmentation"
START_ERRORS = (ParameterException, CheckpointError, ValueError)  # a configuration refused


class SegmentationNode(Node):
    """Segments camera images with LEDNet and publishes labels, masks, occupancy, diagnostics.

    One camera, or several (parameter ``cameras``: ros.camera_io) through one model.
    """

    managed = False  # the lifecycle node (segmentation_lifecycle_node) starts it in steps

    def __init__(self, **kwargs):
        super().__init__(NODE_NAME, **kwargs)
        self._worker, self._finisher, self._inputs, self.cameras = None, None, [], {}
        if not self.managed:
            try:
                self._configure()
            except START_ERRORS as exc:
                refuse_start(self, exc)
            self._activate()

    def _configure(self) -> None:
        """Read the parameters, load the weights, make the outputs (raises START_ERRORS)."""
        self.values = declare(self, FIXED_PARAMETERS)
        names = camera_names(self.values["cameras"])
        self.values |= declare_cameras(self, self.values)
        self.settings = frame_settings(self.values)
        grounds = {name: camera_ground_settings(self.values, name) for name in names}
        self.weights_path = self.values["weights"] or str(default_weights_path())
        self.pipeline = Pipeline(Segmenter.from_weights(
            self.weights_path, device=self.values["device"],
            precision=self.values["precision"], engine=self.values["engine"]))
        metadata = self.pipeline.segmenter.metadata
        by_weights, unsure_source = declare_by_weights(self, metadata,
                                                       self.values["health.unsure_confidence"])
        self.values |= by_weights
        health = health_settings(self.values)
        refuse_renamed(undeclared := undeclared_overrides(self), self.values["groups.names"])
        warn_undeclared(self, undeclared)
        self.pipeline.check(self.settings)
        groups = class_groups(self.values, metadata.class_names)
        self.get_logger().info(f"{self.pipeline.describe(self.settings)}; weights "
                               f"{self.weights_path} ({metrics_summary(metadata)})"
                               + (f"; cameras {', '.join(names)}" if names != [""] else "")
                               + f"; health.unsure_warn/error {health.unsure_warn:g}/"
                               f"{health.unsure_error:g} (defaults: {unsure_source})")
        self.add_on_set_parameters_callback(self._check_change)
        self.add_post_set_parameters_callback(self._apply_change)
        self.cameras = {name: CameraIO(self, name, groups, grounds[name], health)
                        for name in names}
        self._class_info_pub = self.create_publisher(ClassInfo, "~/class_info", LATCHED)
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._publish_class_info()
        self._adapt = AdaptService(self, self.first_camera.input, self.first_camera.stats)
        self._finisher = HandoffWorker(self._finish, name="lednet_publisher")
        self._worker = NewestItemWorker(self._process, name="lednet_worker")

    def _activate(self) -> None:
        """Subscribe to the cameras and start the diagnostics timer: frames flow."""
        input_qos = qos(self.values["qos_reliability"], self.values["qos_depth"])
        for camera in self.cameras.values():
            self._inputs += camera.subscribe(
                lambda msg, camera=camera: self._on_image(camera, msg), input_qos)
        steady = Clock(clock_type=ClockType.STEADY_TIME)  # runs under use_sim_time without /clock
        self._inputs.append(self.create_timer(1.0, self._on_diagnostics_timer, clock=steady))

    @property
    def segmenter(self) -> Segmenter:
        return self.pipeline.segmenter

    @property
    def first_camera(self) -> CameraIO:
        """The first camera of ``cameras`` (the only one by default): ~/adapt learns from it."""
        return next(iter(self.cameras.values()))

    @property
    def stats(self):
        """The first camera's PipelineStats (the only camera's, by default)."""
        return self.first_camera.stats

    def _check_change(self, parameters) -> SetParametersResult:
        values = {**self.values, **{p.name: p.value for p in parameters}}
        try:
            self.pipeline.check(frame_settings(values))
            for name, camera in self.cameras.items():
                camera.ground.check(camera_ground_settings(values, name))
            health_settings(values)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_change(self, parameters) -> None:
        old_size = self.pipeline.input_size(self.settings)
        self.values = {**self.values, **{p.name: p.value for p in parameters}}
        self.settings = frame_settings(self.values)
        for name, camera in self.cameras.items():
            camera.ground.update(camera_ground_settings(self.values, name))
            camera.health.update(health_settings(self.values))
        new_size = self.pipeline.input_size(self.settings)
        if new_size != old_size:
            self.get_logger().info(f"network input size now {new_size[0]}x{new_size[1]}")
            self._publish_class_info()

    def _on_image(self, camera: CameraIO, msg) -> None:
        if self._worker is None:
            return  # stopping: the workers are gone
        camera.input.frame_arrived()
        camera.stats.count_received(replaced_unprocessed=self._worker.put(msg, camera.name))

    def _on_diagnostics_timer(self) -> None:
        self._adapt.check_deadline()
        size, statuses = self.pipeline.input_size(self.settings), []
        for camera in self.cameras.values():
            camera.input.check(self.values["no_frames_timeout"])
            statuses += camera.statuses(size, **({"adaptation": self._adapt.live.status}
                                                 if camera is self.first_camera else {}))
        self._diagnostics_pub.publish(diagnostic_array(self.get_clock().now().to_msg(),
                                                       *statuses))

    def _process(self, frames: dict) -> None:
        """Segment the newest frame of each camera that has one waiting, in one batch.

        The publisher thread (_finish) then publishes them while the next batch runs.
        """
        self.pipeline = self._adapt.swap_in(self.pipeline)  # adapted weights from these frames
        settings, batch = self.settings, []  # (camera, message, RGB)
        for name, msg in frames.items():
            camera = self.cameras[name]
            try:
                batch.append((camera, msg, camera.read(msg, settings.max_image_pixels)))
            except Exception as exc:  # a bad frame is counted and logged; the node keeps running
                self._reject(camera, msg, exc)
        if not batch:
            return
        if batch[0][0] is self.first_camera:
            self._adapt.live.offer(batch[0][2])
        wanted = [camera.wanted() for camera, _, _ in batch]
        try:
            segmented = self.pipeline.segment_batch([rgb for _, _, rgb in batch], settings,
                                                    wanted)
        except Exception as exc:
            for camera, msg, _ in batch:
                self._reject(camera, msg, exc)
            return
        self._finisher.put((self.pipeline, settings, batch, segmented, wanted))

    def _finish(self, work) -> None:
        """Post-process, check, publish and map each frame of a batch (the publisher thread)."""
        pipeline, settings, batch, segmented, wanted = work
        for (camera, msg, rgb), frame, outputs in zip(batch, segmented, wanted):
            try:
                camera.finish(msg, rgb, pipeline.finish(frame, settings, outputs), outputs)
            except Exception as exc:
                self._reject(camera, msg, exc)

    def _reject(self, camera: CameraIO, msg, exc: Exception) -> None:
        if not self.context.ok():
            return  # shutting down: not a frame error
        camera.reject(msg.header, str(exc) if isinstance(exc, ValueError)
                      else f"processing failed: {type(exc).__name__}: {exc}")

    def _publish_class_info(self) -> None:
        header = Header(stamp=self.get_clock().now().to_msg())
        self._class_info_pub.publish(class_info_message(
            self.segmenter.metadata, self.weights_path, self.pipeline.input_size(self.settings),
            header))

    def _stop_workers(self) -> None:
        """Stop the worker (it finishes its batch), then the publisher (it publishes it)."""
        for worker in (self._worker, self._finisher):
            if worker is not None:
                worker.stop()
        self._worker = self._finisher = None

    def destroy_node(self):
        """Stop the workers, then destroy the node."""
        self._stop_workers()
        return super().destroy_node()


def main(args=None) -> int:
    return run_node(SegmentationNode, PARAMETERS, __doc__, args,
                    "segmentation_node")


if __name__ == "__main__":
    sys.exit(main())
