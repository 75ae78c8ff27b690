"""Reading frames from image messages (lednet_ros/core/runtime/images.py), without a graph.

Raw sensor_msgs/Image in every supported encoding and row padding, CompressedImage PNG and JPEG,
refusals naming the bad field, and agreement with ROS 2's cv_bridge where it is installed.
"""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest

pytest.importorskip("rclpy", reason="rclpy is not installed")

from sensor_msgs.msg import CompressedImage  # noqa: E402

from lednet_ros.core.runtime.images import (  # noqa: E402
    ImageFormatError, rgb_from_compressed, rgb_from_message,
)

from ros_helpers import make_image  # noqa: E402

RNG = np.random.default_rng(7)


def random_rgb(height=6, width=5):
    """Random bytes, not a scene: a conversion must keep every byte in its place."""
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("padding", [0, 3])
def test_rgb_from_message_reads_each_colour_order_and_honours_step(padding):
    rgb = random_rgb()
    cases = {
        "rgb8": rgb,
        "bgr8": rgb[..., ::-1],
        "rgba8": np.dstack([rgb, np.full(rgb.shape[:2], 9, np.uint8)]),
        "bgra8": np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 9, np.uint8)]),
    }
    for encoding, pixels in cases.items():
        msg = make_image(pixels, encoding, row_padding=padding)
        np.testing.assert_array_equal(rgb_from_message(msg), rgb, err_msg=encoding)
    gray = rgb[..., 0]
    np.testing.assert_array_equal(rgb_from_message(make_image(gray, "mono8", row_padding=padding)),
                                  np.repeat(gray[..., None], 3, axis=2))


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(encoding="32FC1"), "unsupported encoding '32FC1'"),
        (dict(height=0, width=0), "zero-sized image: 0x0"),
        (dict(step=10), "step 10 is less than"),
        (dict(data=bytes(20)), "data holds 20 bytes, expected step x height = 15 x 6 = 90"),
    ],
)
def test_rgb_from_message_names_the_bad_field(change, message):
    msg = make_image(random_rgb(), "rgb8")
    for field, value in change.items():
        setattr(msg, field, value)
    with pytest.raises(ImageFormatError, match=re.escape(message)):
        rgb_from_message(msg)


def test_rgb_from_message_refuses_more_than_max_pixels():
    msg = make_image(random_rgb(4, 5), "rgb8")
    with pytest.raises(ImageFormatError, match="5x4 = 20 pixels exceeds the maximum of 19"):
        rgb_from_message(msg, max_pixels=19)
    assert rgb_from_message(msg, max_pixels=20).shape == (4, 5, 3)


def compressed(array_bgr, extension=".png", fmt="png"):
    ok, encoded = cv2.imencode(extension, array_bgr)
    assert ok
    return CompressedImage(format=fmt, data=encoded.tobytes())


def test_rgb_from_compressed_decodes_png_exactly_and_jpeg_closely():
    rgb = random_rgb(16, 24)
    np.testing.assert_array_equal(rgb_from_compressed(compressed(rgb[..., ::-1])), rgb)
    smooth = np.full((16, 24, 3), (200, 40, 90), np.uint8)
    jpeg = compressed(smooth[..., ::-1], ".jpg", "rgb8; jpeg compressed bgr8")
    decoded = rgb_from_compressed(jpeg)
    assert decoded.shape == (16, 24, 3)
    assert np.abs(decoded.astype(int) - smooth).max() <= 4


def test_rgb_from_compressed_refuses_bad_data():
    with pytest.raises(ImageFormatError, match="has no data"):
        rgb_from_compressed(CompressedImage(format="jpeg"))
    with pytest.raises(ImageFormatError, match="cannot decode 5 bytes .*format 'jpeg'"):
        rgb_from_compressed(CompressedImage(format="jpeg", data=b"hello"))
    with pytest.raises(ImageFormatError, match="depth image"):
        rgb_from_compressed(CompressedImage(format="16UC1; compressedDepth png", data=b"x"))
    with pytest.raises(ImageFormatError, match="24x16 = 384 pixels exceeds the maximum of 100"):
        rgb_from_compressed(compressed(random_rgb(16, 24)), max_pixels=100)


def official_cv_bridge():
    """ROS 2's cv_bridge (C++ with Python bindings), or a skip naming why it is not used here."""
    import importlib.util

    if importlib.util.find_spec("cv_bridge") is None:
        pytest.skip("ROS 2's cv_bridge is not installed (not on PyPI; it comes with a ROS 2 "
                    "install)")
    if importlib.util.find_spec("cv_bridge.boost") is None:
        pytest.skip("the cv_bridge found is not ROS 2's (no cv_bridge.boost: e.g. PyPI's "
                    "unofficial pure-Python port)")
    from cv_bridge import CvBridge

    return CvBridge()


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_conversion_agrees_with_the_official_cv_bridge(encoding):
    """On a ROS install, the node's frame reading gives what cv_bridge gives.

    The node reads frames without cv_bridge (a zero-copy numpy view); for the same message it
    must give what cv_bridge gives (8-bit encodings: cv_bridge's 16-to-8-bit scaling is its own
    convention).
    """
    bridge = official_cv_bridge()
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}[encoding]
    array = RNG.integers(0, 256, (6, 5, channels), dtype=np.uint8)
    array = array[..., 0] if channels == 1 else array
    msg = make_image(array, encoding, row_padding=4)
    expected = bridge.imgmsg_to_cv2(msg, desired_encoding="rgb8")
    assert np.array_equal(rgb_from_message(msg), expected)
    back = bridge.cv2_to_imgmsg(expected, encoding="rgb8")
    assert np.array_equal(rgb_from_message(back), expected)
