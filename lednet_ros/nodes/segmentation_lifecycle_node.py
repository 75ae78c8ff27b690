"""The LEDNet segmentation node as a managed (lifecycle) node, for Nav2's lifecycle manager.

    ros2 run lednet_ros segmentation_lifecycle_node --ros-args -p weights:=...
    ros2 lifecycle set /lednet_segmentation configure   # or a nav2_lifecycle_manager

The same node as segmentation_node (topics, parameters, services), started in steps:
configure reads the parameters, loads the weights, builds the engine and makes the outputs;
activate subscribes to the camera (frames flow); deactivate unsubscribes (nothing is processed
or published; the weights stay loaded); cleanup and shutdown free the engine and everything
configure made. A configuration the node refuses fails the transition, with the reason logged.
"""

from __future__ import annotations

import sys

from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn

from lednet_ros.nodes.segmentation_node import START_ERRORS, SegmentationNode
from lednet_ros.ros.runner import run_node
from lednet_ros.ros.segmentation_parameters import PARAMETERS


class SegmentationLifecycleNode(SegmentationNode, LifecycleNode):
    """SegmentationNode whose start is driven by lifecycle transitions."""

    managed = True
    _configured = frozenset()  # the publishers, subscriptions, services, timers configure made

    def on_configure(self, state) -> TransitionCallbackReturn:
        before = self._entities()
        try:
            self._configure()
        except START_ERRORS as exc:
            self.get_logger().error(f"cannot configure: {exc}")
            self._configured = self._entities() - before
            self._free()
            return TransitionCallbackReturn.FAILURE
        self._configured = self._entities() - before
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state) -> TransitionCallbackReturn:
        self._activate()
        topics = ", ".join(camera.input.topic for camera in self.cameras.values())
        self.get_logger().info(f"active: segmenting the frames of {topics}")
        return super().on_activate(state)

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        self._deactivate()
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        self._free()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self._deactivate()
        self._free()
        return TransitionCallbackReturn.SUCCESS

    def _entities(self) -> frozenset:
        return frozenset([*self.publishers, *self.subscriptions, *self.services,
                          *self.timers])

    def _deactivate(self) -> None:
        """Destroy the camera subscriptions and the diagnostics timer: no frame flows."""
        for entity in self._inputs:
            (self.destroy_timer if entity in self.timers else self.destroy_subscription)(entity)
        self._inputs = []

    def _free(self) -> None:
        """Stop the worker, drop the engine, destroy what configure made."""
        self._stop_workers()
        for remove, callback in ((self.remove_on_set_parameters_callback, self._check_change),
                                 (self.remove_post_set_parameters_callback, self._apply_change)):
            try:
                remove(callback)
            except ValueError:  # configure stopped before adding it
                pass
        for entity in self._configured & self._entities():
            if entity in self.publishers:
                self.destroy_publisher(entity)
            elif entity in self.subscriptions:
                self.destroy_subscription(entity)
            elif entity in self.services:
                self.destroy_service(entity)
            elif entity in self.timers:
                self.destroy_timer(entity)
        self._configured = frozenset()
        self.pipeline, self.cameras = None, {}  # the engine and the weights go with them


def main(args=None) -> int:
    return run_node(SegmentationLifecycleNode, PARAMETERS, __doc__, args,
                    "segmentation_lifecycle_node")


if __name__ == "__main__":
    sys.exit(main())
