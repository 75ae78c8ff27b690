"""Reading images safely: raw buffers in ROS encodings and compressed PNG/JPEG -> RGB arrays.

No ROS import: callers pass the fields of a sensor_msgs/Image (data, height, width, step,
encoding, is_bigendian) or the bytes of a CompressedImage and get numpy arrays back. Every size
is checked before anything is allocated or decoded; errors name the bad value.
"""

from __future__ import annotations

import cv2
import numpy as np

DEFAULT_MAX_PIXELS = 4096 * 4096

# encoding -> (channels, dtype, conversion to RGB or None for a copy-free RGB view)
ENCODINGS = {
    "rgb8": (3, np.uint8, None),
    "bgr8": (3, np.uint8, cv2.COLOR_BGR2RGB),
    "rgba8": (4, np.uint8, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, np.uint8, cv2.COLOR_BGRA2RGB),
    "mono8": (1, np.uint8, cv2.COLOR_GRAY2RGB),
    "mono16": (1, np.uint16, cv2.COLOR_GRAY2RGB),
    "8UC1": (1, np.uint8, cv2.COLOR_GRAY2RGB),
    "8UC3": (3, np.uint8, cv2.COLOR_BGR2RGB),  # OpenCV's default channel order
    "yuv422": (2, np.uint8, cv2.COLOR_YUV2RGB_UYVY),  # ROS name of UYVY
    "uyvy": (2, np.uint8, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": (2, np.uint8, cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": (2, np.uint8, cv2.COLOR_YUV2RGB_YUY2),
}
SUPPORTED_ENCODINGS = tuple(ENCODINGS)


class ImageFormatError(ValueError):
    """An image buffer that cannot be read.

    The message names the bad value and what was expected.
    """


def check_image_size(width: int, height: int, max_pixels: int, declared_by: str = "") -> None:
    """ImageFormatError when a width x height image is empty or has more than max_pixels pixels.

    ``declared_by`` names the header the size was read from before decoding ('the PNG header').
    """
    where = f" declared by {declared_by}" if declared_by else ""
    if width <= 0 or height <= 0:
        raise ImageFormatError(f"zero-sized image: {width}x{height} (width x height){where}")
    if width * height > max_pixels:
        raise ImageFormatError(
            f"image of {width}x{height} = {width * height} pixels exceeds the maximum of "
            f"{max_pixels} pixels" + (f" ({where.strip()}; not decoded)" if declared_by else "")
        )


def image_from_buffer(
    data,
    height: int,
    width: int,
    step: int,
    encoding: str,
    is_bigendian: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    layouts: dict | None = None,
) -> np.ndarray:
    """Return an H x W x C array viewing ``data`` (no copy).

    Every field is checked against the data first. ``layouts``: encoding -> (channels, dtype,
    ...) of the encodings accepted (default ENCODINGS, the colour ones).

    Raises:
        ImageFormatError: unsupported encoding, zero or too large size, step too small for the
            width, or data shorter than step x height.
    """
    layouts = ENCODINGS if layouts is None else layouts
    if encoding not in layouts:
        raise ImageFormatError(
            f"unsupported encoding {encoding!r} (supported: {', '.join(layouts)})"
        )
    channels, dtype = layouts[encoding][:2]
    check_image_size(width, height, max_pixels)
    row_bytes = width * channels * np.dtype(dtype).itemsize
    if encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv") and width % 2:
        raise ImageFormatError(f"{encoding} needs an even width, got {width}")
    if step < row_bytes:
        raise ImageFormatError(
            f"step {step} is less than width x bytes per pixel = {width} x "
            f"{channels * np.dtype(dtype).itemsize} = {row_bytes} for {encoding}"
        )
    buffer = memoryview(data).cast("B") if not isinstance(data, np.ndarray) else data.reshape(-1)
    if len(buffer) < step * height:
        raise ImageFormatError(
            f"data holds {len(buffer)} bytes, expected step x height = {step} x {height} = "
            f"{step * height} for a {width}x{height} {encoding} image"
        )
    rows = np.frombuffer(buffer, dtype=np.uint8, count=step * height).reshape(height, step)
    pixels = rows[:, :row_bytes]
    if np.dtype(dtype).itemsize > 1:
        byte_order = ">" if is_bigendian else "<"
        # read in the message's byte order, then hold it in the native one (to_rgb expects that)
        pixels = np.ascontiguousarray(pixels).view(
            np.dtype(dtype).newbyteorder(byte_order)).astype(dtype, copy=False)
    return pixels.reshape(height, width, channels)


def to_rgb(image: np.ndarray, encoding: str) -> np.ndarray:
    """Convert an H x W x C array in ``encoding`` to H x W x 3 uint8 RGB."""
    if encoding not in ENCODINGS:
        raise ImageFormatError(
            f"unsupported encoding {encoding!r} (supported: {', '.join(SUPPORTED_ENCODINGS)})"
        )
    channels, _, conversion = ENCODINGS[encoding]
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] != channels:
        raise ImageFormatError(f"{encoding} needs {channels} channels, array has {image.shape[2]}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    if conversion is None:
        return image
    return cv2.cvtColor(np.ascontiguousarray(image), conversion)


def rgb_from_message(msg, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Return H x W x 3 uint8 RGB from a sensor_msgs/Image, honouring step and endianness.

    The message may be an rclpy or a rosbags one: only its fields are read.

    Raises:
        ImageFormatError: naming the bad encoding, size, step or data length.
    """
    pixels = image_from_buffer(msg.data, msg.height, msg.width, msg.step, msg.encoding,
                               bool(msg.is_bigendian), max_pixels=max_pixels)
    return to_rgb(pixels, msg.encoding)


def class_ids_from_message(msg, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """H x W uint8 class ids (a copy) from a mono8 sensor_msgs/Image of labels.

    Raises:
        ImageFormatError: another encoding, or a bad size, step or data length.
    """
    if msg.encoding != "mono8":
        raise ImageFormatError(f"label image encoding {msg.encoding!r}: expected mono8 class ids")
    pixels = image_from_buffer(msg.data, msg.height, msg.width, msg.step, msg.encoding,
                               bool(msg.is_bigendian), max_pixels=max_pixels)
    return pixels[..., 0].copy()


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"  # SOI and the first marker's 0xFF (what OpenCV checks)
# JPEG start-of-frame markers (SOF0..SOF15 but DHT 0xC4, JPG 0xC8 and DAC 0xCC)
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# markers without a length field: TEM, RST0..RST7 (and 0x00, a stuffed byte, skipped as garbage)
_JPEG_STANDALONE = frozenset([0x00, 0x01, *range(0xD0, 0xD8)])


def compressed_image_size(data) -> tuple[str, int, int]:
    """Return ("PNG" or "JPEG", width, height) as the header of compressed image data declares.

    The header is read without decoding, so a frame declaring too many pixels is refused before
    a decoder allocates for it (a 70-byte PNG can declare 30000 x 30000 pixels).

    PNG: the IHDR chunk, which must come first. JPEG: the first start-of-frame (SOFn) marker,
    found by walking the markers as libjpeg does (garbage bytes before a marker skipped).

    Raises:
        ImageFormatError: data that is neither PNG nor JPEG, or a truncated or malformed header.
    """
    view = memoryview(data).cast("B") if not isinstance(data, np.ndarray) else data.reshape(-1)
    head = bytes(view[:24])
    if head.startswith(PNG_SIGNATURE):
        if len(head) < 24:
            raise ImageFormatError(f"PNG data of {len(view)} bytes is too short for its header")
        if head[8:16] != b"\x00\x00\x00\x0dIHDR":
            raise ImageFormatError(
                f"PNG data does not start with an IHDR chunk (found {head[8:16]!r})")
        width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
        return "PNG", width, height
    if not head.startswith(JPEG_SIGNATURE):
        raise ImageFormatError(f"neither PNG nor JPEG data (starts with {head[:8]!r})")
    buf = bytes(view)
    size, i = len(buf), 2
    while True:
        i = buf.find(b"\xff", i)
        while 0 <= i < size and buf[i] == 0xFF:  # fill bytes
            i += 1
        if i < 0 or i >= size:
            raise ImageFormatError(
                f"JPEG data of {size} bytes ends before a frame header (SOF marker)")
        marker = buf[i]
        i += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA):
            raise ImageFormatError(
                f"JPEG data has its {'end' if marker == 0xD9 else 'scan'} marker before a frame "
                f"header (SOF marker)")
        if i + 2 > size:
            raise ImageFormatError(
                f"JPEG data of {size} bytes is truncated in marker 0x{marker:02X}")
        length = int.from_bytes(buf[i:i + 2], "big")
        if marker in _JPEG_SOF:
            if length < 8 or i + 7 > size:
                raise ImageFormatError(f"JPEG frame header (marker 0x{marker:02X}) is truncated")
            height = int.from_bytes(buf[i + 3:i + 5], "big")
            width = int.from_bytes(buf[i + 5:i + 7], "big")
            return "JPEG", width, height
        if length < 2:
            raise ImageFormatError(f"JPEG marker 0x{marker:02X} has a bad length {length}")
        i += length


def rgb_from_compressed(msg, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Return H x W x 3 uint8 RGB from a sensor_msgs/CompressedImage.

    Only its format and data are read; PNG or JPEG, what image_transport's compressed plugin
    sends.

    The size the PNG or JPEG header declares is checked against ``max_pixels`` before decoding,
    so the decoder never allocates for more (compressed_image_size); other formats are
    refused.

    Raises:
        ImageFormatError: empty, undecodable or neither PNG nor JPEG data, a depth format, or too
            many pixels.
    """
    if "compresseddepth" in msg.format.lower():
        raise ImageFormatError(
            f"compressed format {msg.format!r} is a depth image; expected a colour or mono image"
        )
    if len(msg.data) == 0:
        raise ImageFormatError(f"compressed image (format {msg.format!r}) has no data")
    buffer = np.frombuffer(msg.data, dtype=np.uint8)
    try:
        kind, width, height = compressed_image_size(buffer)
    except ImageFormatError as exc:
        raise ImageFormatError(
            f"cannot decode {len(buffer)} bytes of compressed image data (format {msg.format!r}): "
            f"{exc}"
        ) from None
    check_image_size(width, height, max_pixels, declared_by=f"the {kind} header")
    try:
        bgr = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ImageFormatError(
            f"cannot decode {len(buffer)} bytes of compressed image data (format {msg.format!r}): "
            f"{str(exc).strip().splitlines()[-1]}"
        ) from None
    if bgr is None:
        raise ImageFormatError(
            f"cannot decode {len(buffer)} bytes of compressed image data (format {msg.format!r})"
        )
    check_image_size(bgr.shape[1], bgr.shape[0], max_pixels)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
