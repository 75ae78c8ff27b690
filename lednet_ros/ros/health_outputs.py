"""The segmentation node's perception health: ``~/health``, its /diagnostics entry, the log.

Wiring only (the checks are core.runtime.health): :meth:`HealthOutputs.check` is called by the
worker with each frame and its results, and says whether the frame's ground outputs must
withhold free space (health.withhold_free_at).
"""

from __future__ import annotations

from rclpy.node import Node
from std_msgs.msg import Header

from lednet_ros.core.runtime.health import LEVEL_NAMES, HealthMonitor, HealthSettings
from lednet_ros.msg import PerceptionHealth
from lednet_ros.ros.diagnostics import WARNING_PERIOD_S, health_status
from lednet_ros.ros.messages import health_message



class HealthOutputs:
    """Checks ``node``'s frames with ``settings`` and publishes what it finds.

    ``outputs``: the camera's topic prefix ('~/' for one camera); ``camera``: its name ('').
    """

    def __init__(self, node: Node, settings: HealthSettings, outputs: str = "~/",
                 camera: str = ""):
        self.node, self.camera = node, camera
        self.monitor = HealthMonitor(settings)
        self.last, self.withheld = None, False  # the last frame's report and policy
        self.counts = dict.fromkeys(LEVEL_NAMES, 0)  # frames per level so far
        self.publisher = node.create_publisher(PerceptionHealth, f"{outputs}health", 10)

    def update(self, settings: HealthSettings) -> None:
        """Check the next frames with ``settings``."""
        self.monitor.update(settings)

    def check(self, header: Header, rgb, labels, confidence, class_names) -> bool:
        """Check one frame, publish ~/health; return whether its ground outputs withhold free.

        A level higher than the last frame's is logged as a warning (throttled), the return to
        OK as info.
        """
        report = self.monitor.check(rgb, header.stamp.sec * 10**9 + header.stamp.nanosec,
                                    labels, confidence, len(class_names))
        withhold = self.monitor.settings.withholds_free(report.level)
        previous, self.last, self.withheld = self.last, report, withhold
        self.counts[report.level_name] += 1
        logger, camera = self.node.get_logger(), f"camera {self.camera}: " if self.camera else ""
        if report.level and (previous is None or previous.level < report.level):
            logger.warning(f"{camera}perception health {report.summary()}" + (
                "; the ground outputs mark nothing free" if withhold else ""),
                throttle_duration_sec=WARNING_PERIOD_S)
        elif not report.level and previous is not None and previous.level:
            logger.info(f"{camera}perception health OK again")
        self.publisher.publish(health_message(report, class_names, withhold, header))
        return withhold

    def status(self, hardware_id: str):
        """Return the /diagnostics status of the last frame's health."""
        camera = f"{self.camera} " if self.camera else ""
        return health_status(f"{self.node.get_fully_qualified_name()}: {camera}perception health",
                             hardware_id, self.last, self.counts, self.withheld)
