"""A segmentation node and a probe node in one namespace, for tests over real DDS.

Tests get rigs from the ``rig_factory`` fixture (conftest.py), which spins each for the rest of
the test.
"""

from __future__ import annotations

import itertools

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from lednet_ros.nodes.segmentation_node import NODE_NAME, SegmentationNode

from ros_helpers import Collector

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
_namespaces = (f"/node_test_{i}" for i in itertools.count())


def next_namespace() -> str:
    """Return a namespace no other test in this session uses, so that topics never mix."""
    return next(_namespaces)


class Rig:
    """A segmentation node in its own namespace and a probe node that talks to it."""

    def __init__(self, context, weights, namespace, **parameters):
        parameters = {"weights": str(weights), "engine": "torch", **parameters}  # may override
        self.node = SegmentationNode(
            context=context, namespace=namespace,
            parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()])
        self.probe = rclpy.create_node("probe", namespace=namespace, context=context)
        self.name = f"{namespace}/{NODE_NAME}"  # fully qualified; the prefix of its topics

    @property
    def camera(self):
        """The node's only (or first) camera: its publishers, camera_info, ground outputs."""
        return self.node.first_camera

    def collect(self, msg_type, topic, qos=RELIABLE) -> Collector:
        return Collector(self.probe, msg_type, f"{self.name}/{topic}", qos)

    def diagnostics(self) -> Collector:
        return Collector(self.probe, DiagnosticArray, "/diagnostics", RELIABLE)

    def publisher(self, msg_type=Image, topic="image", qos=RELIABLE):
        return self.probe.create_publisher(msg_type, topic, qos)
