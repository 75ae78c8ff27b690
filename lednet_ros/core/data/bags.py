"""rosbag2 files (mcap or sqlite3) of camera frames and ground-truth labels, through `rosbags`.

No ROS install needed. Writing (write_bag; its command line is tools/write_bag.py) makes a bag
`ros2 bag play` replays, with sensor_msgs/Image rgb8 on /camera/image_raw,
sensor_msgs/CameraInfo on /camera/camera_info and, where labels exist, mono8 class ids on
/ground_truth/labels, all three with the same header stamp. Reading (read_frames) checks every
message and raises BagError naming the bag and what is wrong.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from lednet_ros.core.data.datasets import DATASETS, read_label
from lednet_ros.core.data.frame_sources import FrameSource, pinhole_intrinsics
from lednet_ros.core.runtime.images import (
    DEFAULT_MAX_PIXELS,
    ImageFormatError,
    class_ids_from_message,
    rgb_from_compressed,
    rgb_from_message,
)

IMAGE_TOPIC = "/camera/image_raw"
CAMERA_INFO_TOPIC = "/camera/camera_info"
GROUND_TRUTH_TOPIC = "/ground_truth/labels"
STORAGES = ("mcap", "sqlite3")
DEFAULT_START_NS = 1_700_000_000 * 1_000_000_000  # stamps of written bags start here


class BagError(RuntimeError):
    """A bag that cannot be written or read; the message names the bag and the problem."""


def typestore():
    """Rosbags type store of ROS 2 Kilted messages."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


@dataclass
class BagTopics:
    image: str = IMAGE_TOPIC
    camera_info: str = CAMERA_INFO_TOPIC
    ground_truth: str = GROUND_TRUTH_TOPIC


def write_bag(path, frames: Iterable[tuple[np.ndarray, np.ndarray | None]], *,
              storage: str = "mcap", rate_hz: float = 10.0, start_ns: int = DEFAULT_START_NS,
              topics: BagTopics | None = None, frame_id: str = "camera") -> int:
    """Write ``frames`` ((RGB image, labels or None) pairs) as a rosbag2 folder; frames written.

    Frame i is stamped (header and bag time) ``start_ns + i / rate_hz`` seconds. ``topics``
    defaults to ``BagTopics()``.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    topics = BagTopics() if topics is None else topics
    if storage not in STORAGES:
        raise BagError(f"storage {storage!r}: expected one of {', '.join(STORAGES)}")
    if not rate_hz > 0:
        raise BagError(f"rate {rate_hz} Hz: expected a positive rate")
    path = Path(path)
    if path.exists():
        raise BagError(f"{path}: already exists; a bag is written to a new folder")
    store = typestore()
    types = store.types
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    count = 0
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        image_conn = writer.add_connection(topics.image, "sensor_msgs/msg/Image", typestore=store)
        info_conn = writer.add_connection(topics.camera_info, "sensor_msgs/msg/CameraInfo",
                                          typestore=store)
        label_conn = None
        for rgb, labels in frames:
            stamp_ns = start_ns + round(count * 1e9 / rate_hz)
            header = types["std_msgs/msg/Header"](
                stamp=types["builtin_interfaces/msg/Time"](
                    sec=stamp_ns // 1_000_000_000, nanosec=stamp_ns % 1_000_000_000),
                frame_id=frame_id)
            height, width = rgb.shape[:2]
            image = _image(types, header, rgb, "rgb8")
            writer.write(image_conn, stamp_ns, store.serialize_cdr(image, image.__msgtype__))
            info = _camera_info(types, header, width, height)
            writer.write(info_conn, stamp_ns, store.serialize_cdr(info, info.__msgtype__))
            if labels is not None:
                if labels.shape != rgb.shape[:2]:
                    raise BagError(f"frame {count}: labels {labels.shape} do not match the image "
                                   f"{rgb.shape[:2]}")
                if label_conn is None:
                    label_conn = writer.add_connection(topics.ground_truth,
                                                       "sensor_msgs/msg/Image", typestore=store)
                label = _image(types, header, labels, "mono8")
                writer.write(label_conn, stamp_ns, store.serialize_cdr(label, label.__msgtype__))
            count += 1
    if count == 0:
        raise BagError(f"{path}: no frames to write")
    return count


def _image(types, header, array: np.ndarray, encoding: str):
    array = np.ascontiguousarray(array, dtype=np.uint8)
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    return types["sensor_msgs/msg/Image"](
        header=header, height=height, width=width, encoding=encoding, is_bigendian=0,
        step=width * channels, data=array.reshape(-1))


def _camera_info(types, header, width: int, height: int):
    intrinsics = {name: np.asarray(values, dtype=np.float64)
                  for name, values in pinhole_intrinsics(width, height).items()}
    roi = types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return types["sensor_msgs/msg/CameraInfo"](
        header=header, height=height, width=width, distortion_model="plumb_bob",
        binning_x=0, binning_y=0, roi=roi, **intrinsics)


@dataclass
class BagFrame:
    """One image or ground-truth message of a bag, decoded."""

    kind: str  # 'image' or 'ground_truth'
    stamp_ns: int  # header stamp
    array: np.ndarray  # H x W x 3 RGB for images, H x W class ids for ground truth


IMAGE_TYPES = {"sensor_msgs/msg/Image": rgb_from_message,
               "sensor_msgs/msg/CompressedImage": rgb_from_compressed}


def _connections(reader, path: Path, topics: BagTopics) -> list:
    """Return the image and ground-truth connections, checked: BagError naming what is wrong."""
    wanted = (topics.image, topics.ground_truth)
    connections = [c for c in reader.connections if c.topic in wanted]
    if not any(c.topic == topics.image for c in connections):
        found = ", ".join(sorted({c.topic for c in reader.connections})) or "none"
        raise BagError(f"{path}: no {topics.image} topic (topics: {found})")
    for connection in connections:
        allowed = IMAGE_TYPES if connection.topic == topics.image else ("sensor_msgs/msg/Image",)
        if connection.msgtype not in allowed:
            raise BagError(f"{path}: {connection.topic} is {connection.msgtype}, "
                           f"expected {' or '.join(allowed)}")
    return connections


@contextmanager
def _reader(path: Path):
    """Open a rosbags reader; any failure to read the bag becomes a BagError naming it."""
    from rosbags.highlevel import AnyReader

    if not path.exists():
        raise BagError(f"{path}: no such bag")
    try:
        with AnyReader([path], default_typestore=typestore()) as reader:
            yield reader
    except BagError:
        raise
    except Exception as error:  # rosbags raises its own types for unreadable or truncated bags
        raise BagError(f"{path}: cannot read the bag: {type(error).__name__}: {error}") from error


def count_images(path, topics: BagTopics | None = None) -> int:
    """Return the number of messages on the bag's image topic (from its index, none decoded).

    Raises:
        BagError: as read_frames.
    """
    topics = BagTopics() if topics is None else topics
    path = Path(path)
    with _reader(path) as reader:
        return sum(c.msgcount for c in _connections(reader, path, topics)
                   if c.topic == topics.image)


def read_frames(path, topics: BagTopics | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                image_indices=None) -> Iterator[BagFrame]:
    """Yield the bag's image and ground-truth messages in recorded order, decoded and checked.

    ``topics`` defaults to ``BagTopics()``. Images may be sensor_msgs/Image or CompressedImage
    (PNG, JPEG); ground truth is a mono8 Image. With ``image_indices`` (a set of positions among
    the image messages, counting from 0) only those images are decoded and yielded.

    Raises:
        BagError: the bag cannot be opened, lacks the image topic, or a message is malformed.
    """
    topics = BagTopics() if topics is None else topics
    path = Path(path)
    with _reader(path) as reader:
        connections = _connections(reader, path, topics)
        image_count = 0
        for index, (connection, _, raw) in enumerate(reader.messages(connections)):
            kind = "image" if connection.topic == topics.image else "ground_truth"
            if kind == "image":
                image_count += 1
                if image_indices is not None and image_count - 1 not in image_indices:
                    continue
            decode = IMAGE_TYPES[connection.msgtype] if kind == "image" \
                else class_ids_from_message
            try:
                msg = reader.deserialize(raw, connection.msgtype)
                stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
                frame = BagFrame(kind, stamp, decode(msg, max_pixels))
            except (ImageFormatError, ValueError, KeyError, AssertionError, IndexError) as error:
                raise BagError(f"{path}: message {index} on {connection.topic}: "
                               f"{error}") from error
            yield frame


# ---- frame sources for the writer -----------------------------------------------------------

def dataset_frames(name: str, root, split: str) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(RGB, class ids) of a dataset split; Cityscapes label ids mapped to train ids."""
    dataset = DATASETS[name](root, split)
    for index in range(len(dataset)):
        yield dataset.load(index)


def folder_frames(images, labels=None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """Yield the sorted images of a folder, each with ``labels/<same stem>.png`` when given."""
    source = FrameSource(Path(images), loop=False)
    for path in source.files:
        rgb = source.next()
        label = None
        if labels is not None:
            label_path = Path(labels) / (path.stem + ".png")
            if not label_path.is_file():
                raise BagError(f"{label_path}: missing; expected the label of {path}")
            label = read_label(label_path)
        yield rgb, label


def video_frames(video) -> Iterator[tuple[np.ndarray, None]]:
    source = FrameSource(Path(video), loop=False)
    while (rgb := source.next()) is not None:
        yield rgb, None
