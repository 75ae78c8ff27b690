r"""A small rosbag2 player on rclpy and `rosbags`, for machines without `ros2 bag play`.

    python -m lednet_ros.tools.bag_player camvid_test_bag --clock --rate 0.5

Publishes every recorded message at its recorded time (scaled by --rate) on its recorded topic and
type, with reliable QoS like `ros2 bag play`'s default; with --clock it also publishes /clock
(rosgraph_msgs/Clock) at --clock-hz and just before each message, so nodes with use_sim_time see
bag time. Where ROS 2 is installed, `ros2 bag play --clock <bag>` does the same and more; the
evaluator relies only on ROS behaviour, never on this player.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

import rclpy
from rclpy.duration import Duration
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock

from lednet_ros.core.data.bags import BagError, typestore

PLAYBACK_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                          reliability=ReliabilityPolicy.RELIABLE,
                          durability=DurabilityPolicy.VOLATILE)


def message_class(type_name: str):
    """'sensor_msgs/msg/Image' -> the rclpy message class."""
    package, kind, name = type_name.split("/")
    try:
        return getattr(importlib.import_module(f"{package}.{kind}"), name)
    except (ImportError, AttributeError) as error:
        raise BagError(f"message type {type_name} is not installed: {error}") from error


def play(bag, *, rate: float = 1.0, clock_hz: float = 0.0, delay: float = 0.0,
         wait_for_subscribers: float = 0.0, topics=None, context=None) -> int:
    """Play ``bag``; the number of messages published.

    ``clock_hz`` > 0 publishes /clock; ``wait_for_subscribers`` > 0 waits up to that many seconds
    for every played topic to have a subscriber before starting (then ``delay`` more seconds).
    """
    from rosbags.highlevel import AnyReader

    if not rate > 0:
        raise BagError(f"rate {rate}: expected a positive playback rate")
    bag = Path(bag)
    if not bag.exists():
        raise BagError(f"{bag}: no such bag")
    node = rclpy.create_node("lednet_bag_player", context=context)
    try:
        with AnyReader([bag], default_typestore=typestore()) as reader:
            connections = [c for c in reader.connections if topics is None or c.topic in topics]
            if not connections:
                raise BagError(f"{bag}: none of the topics {topics} is in the bag")
            publishers = {}
            for connection in connections:
                if connection.topic not in publishers:
                    publishers[connection.topic] = node.create_publisher(
                        message_class(connection.msgtype), connection.topic, PLAYBACK_QOS)
            clock_pub = node.create_publisher(Clock, "/clock", 10) if clock_hz > 0 else None
            _wait_for_subscribers(node, publishers, wait_for_subscribers)
            time.sleep(delay)
            published = 0
            start_wall, start_bag = time.monotonic(), None
            for connection, timestamp, raw in reader.messages(connections):
                start_bag = timestamp if start_bag is None else start_bag
                due = start_wall + (timestamp - start_bag) / 1e9 / rate
                while (left := due - time.monotonic()) > 0:
                    if clock_pub is not None:
                        _publish_clock(clock_pub, start_bag, start_wall, rate)
                        time.sleep(min(left, 1.0 / clock_hz))
                    else:
                        time.sleep(left)
                if clock_pub is not None:
                    _publish_clock(clock_pub, timestamp)
                publishers[connection.topic].publish(bytes(raw))
                published += 1
            # Reliable delivery of the last messages before the publishers go away.
            for publisher in publishers.values():
                publisher.wait_for_all_acked(Duration(seconds=5.0))
            return published
    except BagError:
        raise
    except Exception as error:  # rosbags' own errors for unreadable bags
        raise BagError(f"{bag}: cannot play the bag: {type(error).__name__}: {error}") from error
    finally:
        node.destroy_node()


def _publish_clock(publisher, bag_ns: int, start_wall: float | None = None,
                   rate: float = 1.0) -> None:
    if start_wall is not None:  # bag time now, between two messages
        bag_ns += int((time.monotonic() - start_wall) * rate * 1e9)
    msg = Clock()
    msg.clock.sec, msg.clock.nanosec = divmod(bag_ns, 1_000_000_000)
    publisher.publish(msg)


def _wait_for_subscribers(node, publishers: dict, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while timeout > 0 and time.monotonic() < deadline:
        if all(p.get_subscription_count() > 0 for p in publishers.values()):
            return
        time.sleep(0.05)
    if timeout > 0:
        missing = [t for t, p in publishers.items() if p.get_subscription_count() == 0]
        node.get_logger().warning(f"no subscriber after {timeout:.0f} s on: {', '.join(missing)}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bag", type=Path)
    parser.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    parser.add_argument("--clock", action="store_true", help="publish /clock")
    parser.add_argument("--clock-hz", type=float, default=40.0, help="/clock rate with --clock")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to wait before playing")
    parser.add_argument("--wait-for-subscribers", type=float, default=0.0, metavar="SECONDS",
                        help="wait up to this long for a subscriber on every played topic")
    parser.add_argument("--topics", nargs="+", help="play only these topics")
    args, ros_args = parser.parse_known_args(argv)
    rclpy.init(args=ros_args)
    try:
        count = play(args.bag, rate=args.rate, clock_hz=args.clock_hz if args.clock else 0.0,
                     delay=args.delay, wait_for_subscribers=args.wait_for_subscribers,
                     topics=args.topics)
    except BagError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        rclpy.try_shutdown()
    print(f"played {count} messages from {args.bag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
