"""The managed segmentation node through its lifecycle services over DDS, as a manager does.

nodes/segmentation_lifecycle_node.py, driven as a lifecycle manager (Nav2's) drives it:
configure loads the weights and makes the outputs but subscribes to nothing; activate
subscribes and frames come back as labels; deactivate unsubscribes (no labels, weights kept);
cleanup frees the engine and the outputs, and configure works again; a refused configuration
fails the transition with the reason logged.
"""

from __future__ import annotations

import time

import pytest

from skips import skip_without_built_messages

skip_without_built_messages()

import rclpy  # noqa: E402
from lifecycle_msgs.msg import State, Transition  # noqa: E402
from lifecycle_msgs.srv import ChangeState, GetState  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402

from lednet_ros.nodes.segmentation_lifecycle_node import SegmentationLifecycleNode  # noqa: E402
from lednet_ros.nodes.segmentation_node import NODE_NAME  # noqa: E402

from drawn_scenes import sky_road_card  # noqa: E402
from node_rig import RELIABLE, next_namespace  # noqa: E402
from ros_helpers import Collector, make_image, spinning, wait_until  # noqa: E402


class Manager:
    """A lifecycle manager's side: the node's change_state and get_state services."""

    def __init__(self, probe, node_name: str):
        self.probe = probe
        self.change = probe.create_client(ChangeState, f"{node_name}/change_state")
        self.get = probe.create_client(GetState, f"{node_name}/get_state")
        assert self.change.wait_for_service(timeout_sec=30)

    def call(self, client, request):
        future = client.call_async(request)
        wait_until(future.done, 60, f"{client.srv_name}")
        return future.result()

    def transition(self, transition_id: int) -> bool:
        request = ChangeState.Request()
        request.transition.id = transition_id
        return self.call(self.change, request).success

    def state(self) -> int:
        return self.call(self.get, GetState.Request()).current_state.id


@pytest.fixture
def managed(context, random_weights):
    def build(**parameters):
        namespace = next_namespace()
        parameters = {"weights": str(random_weights), "engine": "torch", **parameters}
        node = SegmentationLifecycleNode(
            context=context, namespace=namespace,
            parameter_overrides=[Parameter(k, value=v) for k, v in parameters.items()])
        probe = rclpy.create_node("manager", namespace=namespace, context=context)
        return node, probe, f"{namespace}/{NODE_NAME}"

    made = []

    def factory(**parameters):
        node, probe, name = build(**parameters)
        stack = spinning(context, node, probe)
        stack.__enter__()
        made.append(stack)
        return node, probe, name, Manager(probe, name)

    yield factory
    for stack in made:
        stack.__exit__(None, None, None)


def image_subscribers(probe, name):
    return probe.count_subscribers(f"{name.rsplit('/', 1)[0]}/image")


def test_the_transitions_load_subscribe_unsubscribe_and_free(managed):
    node, probe, name, manager = managed()
    assert manager.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert not node.has_parameter("weights")  # declared on configure
    assert manager.transition(Transition.TRANSITION_CONFIGURE)
    assert manager.state() == State.PRIMARY_STATE_INACTIVE
    assert node.pipeline is not None and image_subscribers(probe, name) == 0
    labels = Collector(probe, Image, f"{name}/labels", RELIABLE)
    image_pub = probe.create_publisher(Image, "image", RELIABLE)

    assert manager.transition(Transition.TRANSITION_ACTIVATE)
    wait_until(lambda: image_subscribers(probe, name) == 1, message="the image subscription")
    probe.create_timer(0.3, lambda: image_pub.publish(make_image(sky_road_card(), "rgb8",
                                                                 stamp=(1, 0))))
    labels.wait(1, timeout=60)

    assert manager.transition(Transition.TRANSITION_DEACTIVATE)
    assert manager.state() == State.PRIMARY_STATE_INACTIVE
    wait_until(lambda: image_subscribers(probe, name) == 0, message="no image subscription")
    count = len(labels.messages)
    time.sleep(1.5)  # frames keep being published (every 0.3 s)
    assert node.pipeline is not None  # the weights stay loaded
    assert len(labels.messages) <= count + 1  # at most one frame that was in flight

    assert manager.transition(Transition.TRANSITION_CLEANUP)
    assert manager.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert node.pipeline is None
    wait_until(lambda: probe.count_publishers(f"{name}/labels") == 0, message="outputs gone")

    assert manager.transition(Transition.TRANSITION_CONFIGURE)  # again, parameters kept
    assert manager.transition(Transition.TRANSITION_ACTIVATE)
    wait_until(lambda: image_subscribers(probe, name) == 1, message="subscribed again")
    labels.wait(count + 2, timeout=60)


def test_a_refused_configuration_fails_the_transition_with_the_reason(managed, tmp_path):
    missing = tmp_path / "absent.safetensors"
    node, probe, name, manager = managed(weights=str(missing))
    assert not manager.transition(Transition.TRANSITION_CONFIGURE)
    assert manager.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert probe.count_publishers(f"{name}/labels") == 0
