"""Everything the package reads is safe to read: property-based tests (hypothesis) of the readers.

Raw images (sensor_msgs/Image), compressed images (sensor_msgs/CompressedImage) and weights files
come from outside: a camera driver, a bag, a download. For any input each reader either returns
what the input describes or raises the package's own error (ImageFormatError, CheckpointError)
with a message naming the bad value; never another exception, never an allocation beyond the
configured pixel limit, never code execution. Last, a real node keeps running through a stream of
malformed frames and counts them in its diagnostics.

Every test is derandomized (the same examples on every run) so CI is reproducible.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import random
import re
import struct
import tracemalloc
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from skips import skip_without_built_messages

pytest.importorskip("hypothesis", reason="hypothesis is not installed")
skip_without_built_messages()

import rclpy  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from lednet_ros.core.inference.checkpoint import (  # noqa: E402
    CheckpointError, WeightsMetadata, load_weights, metrics_summary, read_metadata,
)
from lednet_ros.core.inference.model import DECODER_VARIANTS  # noqa: E402
from lednet_ros.core.runtime.images import (  # noqa: E402
    DEFAULT_MAX_PIXELS, ENCODINGS, SUPPORTED_ENCODINGS, ImageFormatError, compressed_image_size,
    rgb_from_compressed, rgb_from_message,
)
from lednet_ros.nodes.segmentation_node import NODE_NAME, SegmentationNode  # noqa: E402

from drawn_scenes import sky_road_card  # noqa: E402
from ros_helpers import (  # noqa: E402
    Collector, make_image, ros_context, spinning, wait_for_subscribers, wait_until,
)

SHIPPED_WEIGHTS = Path(__file__).resolve().parents[1] / "lednet_ros" / "weights" / \
    "lednet_camvid.safetensors"

# Reproducible: the same examples on every run, no example database written anywhere.
_COMMON = dict(deadline=None, derandomize=True, database=None,
               suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                      HealthCheck.function_scoped_fixture])
PURE = settings(max_examples=200, **_COMMON)
FILES = settings(max_examples=60, **_COMMON)

U32 = 2**32 - 1
YUV = ("yuv422", "uyvy", "yuv422_yuy2", "yuyv")
DATA_CAP = 1 << 16  # largest data buffer a generated message carries


# ---- raw images -------------------------------------------------------------------------------

def bytes_per_pixel(encoding: str) -> int:
    channels, dtype, _ = ENCODINGS[encoding]
    return channels * np.dtype(dtype).itemsize


def expected_problems(msg: Image, max_pixels: int) -> list[str]:
    """List what is wrong with ``msg``: for each problem, text its error message must contain."""
    encoding, width, height, step = msg.encoding, msg.width, msg.height, msg.step
    if encoding not in ENCODINGS:
        return [f"unsupported encoding {encoding!r}"]
    problems = []
    if width == 0 or height == 0:
        problems.append(f"zero-sized image: {width}x{height}")
    if width * height > max_pixels:
        problems.append(f"{width}x{height} = {width * height} pixels exceeds the maximum of "
                        f"{max_pixels}")
    if encoding in YUV and width % 2:
        problems.append(f"{encoding} needs an even width, got {width}")
    if step < width * bytes_per_pixel(encoding):
        problems.append(f"step {step} is less than")
    if len(msg.data) < step * height:
        problems.append(f"data holds {len(msg.data)} bytes")
    return problems


def reference_rgb(msg: Image) -> np.ndarray | None:
    """RGB of a valid ``msg`` computed independently (None for the YUV encodings)."""
    if msg.encoding in YUV:
        return None
    channels, dtype, _ = ENCODINGS[msg.encoding]
    rows = np.frombuffer(bytes(msg.data), np.uint8)[: msg.step * msg.height]
    rows = rows.reshape(msg.height, msg.step)[:, : msg.width * bytes_per_pixel(msg.encoding)]
    if np.dtype(dtype).itemsize == 2:
        order = ">" if msg.is_bigendian else "<"
        pixels = (rows.copy().view(order + "u2") >> 8).astype(np.uint8)
    else:
        pixels = rows
    pixels = pixels.reshape(msg.height, msg.width, channels)
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    if msg.encoding in ("bgr8", "bgra8", "8UC3"):
        return pixels[..., 2::-1]
    return pixels[..., :3]


SIDES = st.one_of(st.integers(0, 48), st.sampled_from(
    [0, 1, 2, 3, 4095, 4096, 4097, 65535, 65536, 100000, 2**31 - 1, U32]))
ODD_ENCODINGS = st.sampled_from(
    ["", "32FC1", "16UC3", "bayer_rggb8", "RGB8", " rgb8", "rgb8 ", "mono8\x00", "rgb16",
     "jpeg", "8UC4", "mono"])


@st.composite
def raw_images(draw):
    """Draw a consistent message of a supported, an odd or a random encoding, then damage it.

    Up to three of width, height, step and data length are replaced by small, absurd or
    inconsistent values.
    """
    pick = draw(st.integers(0, 9))
    if pick <= 6:
        encoding = draw(st.sampled_from(SUPPORTED_ENCODINGS))
    else:
        encoding = draw(ODD_ENCODINGS if pick <= 8 else st.text(max_size=12))
    bpp = bytes_per_pixel(encoding) if encoding in ENCODINGS else draw(st.integers(1, 8))
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    width += width % 2 if encoding in YUV else 0
    broken = draw(st.sets(st.sampled_from(["width", "height", "step", "length"]), max_size=3))
    if "width" in broken:
        width = draw(SIDES)
    if "height" in broken:
        height = draw(SIDES)
    row = width * bpp
    step = row + draw(st.sampled_from([0, 0, 1, 3, 16]))  # rows may be padded
    if "step" in broken:
        step = draw(st.one_of(st.just(max(row - 1, 0)), st.integers(0, 64),
                              st.sampled_from([0, 1, 2**31, U32])))
    step = min(step, U32)
    needed = step * height
    length = needed + draw(st.sampled_from([0, 0, 0, 1, 7]))  # trailing bytes are allowed
    if "length" in broken:
        length = draw(st.one_of(st.just(max(needed - 1, 0)), st.integers(0, 256), st.just(0)))
    if length > DATA_CAP:  # absurd sizes carry a short buffer (as a hostile sender would)
        length = draw(st.integers(0, DATA_CAP))
    data = draw(st.binary(min_size=length, max_size=length)) if length <= 512 else \
        random.Random(draw(st.integers(0, 2**32))).randbytes(length)
    return Image(height=height, width=width, encoding=encoding, step=step, data=data,
                 is_bigendian=draw(st.sampled_from([0, 1, 255])))


@PURE
@given(msg=raw_images(), max_pixels=st.sampled_from([1, 64, 48 * 48, 4096, DEFAULT_MAX_PIXELS]))
def test_rgb_from_message_returns_the_message_or_names_the_problem(msg, max_pixels):
    problems = expected_problems(msg, max_pixels)
    tracemalloc.start()
    try:
        try:
            rgb = rgb_from_message(msg, max_pixels)
        except ImageFormatError as exc:
            message = str(exc)
            assert problems, f"a valid {msg.encoding} image was refused: {message}"
            assert any(p in message for p in problems), (message, problems)
            rgb = None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    if rgb is not None:
        assert not problems, f"accepted despite {problems}"
        assert rgb.shape == (msg.height, msg.width, 3) and rgb.dtype == np.uint8
        reference = reference_rgb(msg)
        if reference is not None:
            np.testing.assert_array_equal(rgb, reference)
    # at most a few working copies of an image of max_pixels (mono16: swap, shift, RGB)
    pixels = msg.width * msg.height if rgb is not None else 0
    assert peak <= 16 * min(pixels, max_pixels) + (256 << 10), f"{peak} bytes for {msg}"


def test_big_endian_mono16_is_read_in_its_byte_order():
    """The found bug: big-endian 16-bit frames came back as uint16 (not swapped to native)."""
    values = np.array([[0x0102, 0xFF00, 0x8040]], dtype=">u2")
    msg = Image(height=1, width=3, encoding="mono16", is_bigendian=1, step=6,
                data=values.tobytes())
    rgb = rgb_from_message(msg)
    assert rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, :, 0], [0x01, 0xFF, 0x80])
    little = Image(height=1, width=3, encoding="mono16", is_bigendian=0, step=6,
                   data=values.astype("<u2").tobytes())
    np.testing.assert_array_equal(rgb_from_message(little), rgb)


# ---- compressed images ------------------------------------------------------------------------

def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def crafted_png(width: int, height: int, rows: int | None = 0, color_type: int = 2) -> bytes:
    """Return a PNG declaring width x height (8-bit, RGB by default).

    Its IDAT holds ``rows`` zero rows (None: every row, compressed: a decompression bomb when the
    size is large).
    """
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    row = bytes(1 + width * (3 if color_type == 2 else 1))
    compressor = zlib.compressobj(1)
    count = height if rows is None else rows
    idat = b"".join(compressor.compress(row) for _ in range(count)) + compressor.flush()
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def encoded(extension: str, width: int, height: int, seed: int = 0, gray=False,
            params=()) -> bytes:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width) if gray else (height, width, 3), dtype=np.uint8)
    ok, data = cv2.imencode(extension, image, list(params))
    assert ok
    return data.tobytes()


def sof_offset(jpeg: bytes) -> int:
    """Offset of the height field of the first SOF segment of an encoder-made JPEG."""
    i = 2
    while True:
        marker, length = jpeg[i + 1], int.from_bytes(jpeg[i + 2:i + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            return i + 5
        i += 2 + length


def with_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    at = sof_offset(jpeg)
    return jpeg[:at] + struct.pack(">HH", height, width) + jpeg[at + 4:]


SMALL_PNG = encoded(".png", 24, 16, seed=1)
SMALL_JPEG = encoded(".jpg", 24, 16, seed=2)
SMALL_PROGRESSIVE = encoded(".jpg", 20, 12, seed=3, params=(cv2.IMWRITE_JPEG_PROGRESSIVE, 1))
SAMPLES = (SMALL_PNG, SMALL_JPEG, SMALL_PROGRESSIVE)


@st.composite
def mutated(draw, samples=SAMPLES):
    data = bytearray(draw(st.sampled_from(samples)))
    for _ in range(draw(st.integers(0, 6))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    if draw(st.booleans()):
        del data[draw(st.integers(0, len(data))):]
    return bytes(data)


@st.composite
def crafted_headers(draw):
    width = draw(st.one_of(st.integers(0, 80), st.sampled_from([0, 4097, 30000, 65535])))
    height = draw(st.one_of(st.integers(0, 80), st.sampled_from([0, 4097, 30000, 65535])))
    if draw(st.booleans()):
        width = draw(st.one_of(st.just(width), st.sampled_from([2**31 - 1, U32])))
        rows = draw(st.integers(0, 2)) if width <= 4096 else 0  # keep the test's data small
        return crafted_png(width, height, rows=rows, color_type=draw(st.sampled_from([0, 2])))
    return with_jpeg_size(draw(st.sampled_from([SMALL_JPEG, SMALL_PROGRESSIVE])), width, height)


COMPRESSED = st.one_of(
    st.builds(encoded, st.sampled_from([".png", ".jpg"]), st.integers(1, 120),
              st.integers(1, 120), st.integers(0, 5), st.booleans()),
    st.binary(max_size=2048),
    st.binary(max_size=512).map(lambda b: b"\x89PNG\r\n\x1a\n" + b),
    st.binary(max_size=512).map(lambda b: b"\xff\xd8\xff" + b),
    st.binary(max_size=64).map(lambda b: b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR" + b),
    mutated(),
    crafted_headers(),
)
FORMATS = st.sampled_from(["jpeg", "png", "rgb8; jpeg compressed bgr8", "", "bmp", "tiff"])


@PURE
@given(data=COMPRESSED, fmt=FORMATS, max_pixels=st.sampled_from([1, 100, 64 * 64, 100 * 100]))
def test_rgb_from_compressed_decodes_or_names_the_problem(data, fmt, max_pixels):
    msg = CompressedImage(format=fmt, data=data)
    try:
        declared = compressed_image_size(data)
    except ImageFormatError:
        declared = None
    try:
        rgb = rgb_from_compressed(msg, max_pixels)
    except ImageFormatError as exc:
        message = str(exc)
        assert message
        if declared is not None:
            _, width, height = declared
            if width * height > max_pixels:  # refused from the header: the size is named
                assert f"{width}x{height}" in message and "not decoded" in message, message
        return
    assert declared is not None, "decoded data whose header could not be read"
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert rgb.shape[0] * rgb.shape[1] <= max_pixels
    assert rgb.shape[0] * rgb.shape[1] == declared[1] * declared[2]


@st.composite
def jpegs_with_segments(draw):
    """Draw a real JPEG with random APPn/COM segments, fill bytes and garbage inserted after SOI.

    Some segments hold a fake SOF: the header reader must find the frame the decoder decodes.
    """
    width, height = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    jpeg = encoded(".jpg", width, height, seed=draw(st.integers(0, 9)), gray=draw(st.booleans()),
                   params=(cv2.IMWRITE_JPEG_PROGRESSIVE, int(draw(st.booleans()))))
    inserted = b""
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["app", "com", "fake_sof", "fill"]))
        if kind == "fill":
            inserted += b"\xff" * draw(st.integers(1, 4))
            continue
        if kind == "fake_sof":  # a thumbnail-like frame header inside an APP1 payload
            payload = b"\xff\xc0\x00\x11\x08" + struct.pack(">HH", 30000, 30000) + bytes(10)
        else:
            payload = draw(st.binary(max_size=40))
        marker = 0xFE if kind == "com" else draw(st.integers(0xE0, 0xEF))
        inserted += bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + inserted + jpeg[2:], (width, height)


@PURE
@given(sample=jpegs_with_segments())
def test_the_jpeg_header_reader_finds_the_frame_the_decoder_decodes(sample):
    data, (width, height) = sample
    kind, read_width, read_height = compressed_image_size(data)
    assert (kind, read_width, read_height) == ("JPEG", width, height)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is not None:
        assert decoded.shape[:2] == (height, width)


@PURE
@given(width=st.integers(1, 64), height=st.integers(1, 64), gray=st.booleans(),
       extension=st.sampled_from([".png", ".jpg"]))
def test_the_header_size_is_the_decoded_size(width, height, gray, extension):
    data = encoded(extension, width, height, gray=gray)
    kind, read_width, read_height = compressed_image_size(data)
    assert (kind, read_width, read_height) == (extension[1:].replace("jpg", "jpeg").upper(),
                                               width, height)
    rgb = rgb_from_compressed(CompressedImage(format=kind.lower(), data=data))
    assert rgb.shape == (height, width, 3)


def peak_rss_mib_since_reset() -> int | None:
    """Reset this process's peak resident size (Linux clear_refs 5); None where impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return _peak_rss_mib()


def _peak_rss_mib() -> int:
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+)", f.read()).group(1)) // 1024


def test_a_decompression_bomb_is_refused_before_decoding():
    """The header check refuses a PNG bomb without a decoder allocation.

    12000 x 12000 zero pixels compress to 0.6 MB; decoding would take 432 MB (RGB) plus OpenCV's
    buffers.
    """
    bomb = crafted_png(12000, 12000, rows=None, color_type=0)
    assert len(bomb) < 1 << 20
    before = peak_rss_mib_since_reset()
    with pytest.raises(ImageFormatError, match=r"12000x12000 = 144000000 pixels exceeds .*"
                                               r"declared by the PNG header; not decoded"):
        rgb_from_compressed(CompressedImage(format="png", data=bomb))
    if before is not None:
        assert _peak_rss_mib() - before < 64
    # a tiny PNG declaring 30000 x 30000: cv2.imdecode would allocate 2.7 GB for it
    with pytest.raises(ImageFormatError, match="30000x30000 = 900000000 pixels"):
        rgb_from_compressed(CompressedImage(format="png", data=crafted_png(30000, 30000)))
    with pytest.raises(ImageFormatError, match="65535x65535 = .*declared by the JPEG header"):
        rgb_from_compressed(CompressedImage(format="jpeg",
                                            data=with_jpeg_size(SMALL_JPEG, 65535, 65535)))
    with pytest.raises(ImageFormatError, match="zero-sized image: 0x16"):
        rgb_from_compressed(CompressedImage(format="jpeg",
                                            data=with_jpeg_size(SMALL_JPEG, 0, 16)))
    # within the limit the same kind of file decodes
    small = rgb_from_compressed(CompressedImage(format="png", data=crafted_png(40, 30, None)))
    assert small.shape == (30, 40, 3) and not small.any()


def test_formats_other_than_png_and_jpeg_are_refused():
    for extension in (".bmp", ".tiff", ".webp", ".ppm"):
        ok, data = cv2.imencode(extension, np.zeros((8, 8, 3), np.uint8))
        if not ok:
            continue
        with pytest.raises(ImageFormatError, match="neither PNG nor JPEG data"):
            rgb_from_compressed(CompressedImage(format=extension[1:], data=data.tobytes()))


# ---- weights files ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shipped_weights() -> bytes:
    if not SHIPPED_WEIGHTS.is_file():
        pytest.skip(f"{SHIPPED_WEIGHTS} is absent")
    data = SHIPPED_WEIGHTS.read_bytes()
    load_weights(SHIPPED_WEIGHTS)  # the unmutated file loads
    return data


def header_size(data: bytes) -> int:
    return 8 + int.from_bytes(data[:8], "little")


def check_loads_or_refuses(path: Path) -> None:
    """load_weights either returns a usable model or raises CheckpointError naming the file."""
    try:
        model, meta = load_weights(path)
    except CheckpointError as exc:
        assert str(path) in str(exc) and len(str(exc)) > len(str(path)) + 5, str(exc)
        return
    assert all(bool(p.isfinite().all()) for p in model.parameters())
    assert_usable_metadata(meta)


def assert_usable_metadata(meta: WeightsMetadata) -> None:
    """Check what the node, the tools and the messages take for granted of accepted metadata."""
    def is_int(value):
        return isinstance(value, int) and not isinstance(value, bool)

    def is_number(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value)

    assert is_int(meta.num_classes) and 1 <= meta.num_classes <= 255
    assert len(meta.class_names) == meta.num_classes
    assert all(isinstance(name, str) for name in meta.class_names)
    assert len(meta.class_colors) == meta.num_classes
    assert all(is_int(v) and 0 <= v <= 255 for color in meta.class_colors for v in color)
    assert meta.decoder in DECODER_VARIANTS
    assert isinstance(meta.dataset, str)
    assert is_int(meta.ignore_index)
    assert len(meta.mean) == 3 and all(is_number(v) for v in meta.mean)
    assert len(meta.std) == 3 and all(is_number(v) and v > 0 for v in meta.std)
    assert len(meta.input_size) == 2 and all(is_int(v) and v > 0 for v in meta.input_size)
    assert isinstance(meta.recipe, dict) and isinstance(meta.metrics, dict)
    assert isinstance(metrics_summary(meta), str)


@FILES
@given(data=st.one_of(
    st.binary(max_size=4096),
    st.binary(max_size=512).map(lambda b: struct.pack("<Q", len(b)) + b),
    st.binary(max_size=64).map(lambda b: struct.pack("<Q", 2**63) + b),
    st.builds(lambda header, tail: struct.pack("<Q", len(header)) + header + tail,
              st.sampled_from([b"{}", b"[]", b"null", b'{"__metadata__": {"lednet_ros": "{}"}}',
                               b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}']),
              st.binary(max_size=16)),
))
def test_random_bytes_are_never_weights(tmp_path, data):
    path = tmp_path / "random.safetensors"
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match=re.escape(str(path))):
        load_weights(path)


def split_safetensors(data: bytes) -> tuple[dict, bytes]:
    end = header_size(data)
    return json.loads(data[8:end]), data[end:]


def join_safetensors(header: dict, body: bytes) -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # as safetensors pads it
    return struct.pack("<Q", len(text)) + text + body


DTYPES = ["F16", "BF16", "F64", "I64", "I32", "U8", "BOOL", "F8_E4M3", "C64", "X9", ""]


@st.composite
def mutations(draw, data: bytes):
    """Draw raw damage, or a structured edit of the header or of tensor values.

    Raw damage: truncation, flipped bytes, a wrong header length. Header edits: tensor dtype,
    shape, offsets, names; metadata. Tensor values: NaN, Inf.
    """
    size, header_end = len(data), header_size(data)
    header, _ = split_safetensors(data)
    keys = sorted(k for k in header if k != "__metadata__")
    kind = draw(st.sampled_from(["truncate", "flip_header", "flip_data", "header_length",
                                 "dtype", "shape", "offsets", "rename", "drop", "non_finite",
                                 "metadata"]))
    if kind == "truncate":
        return kind, draw(st.integers(0, size - 1))
    if kind == "header_length":
        return kind, draw(st.one_of(
            st.sampled_from([0, 1, 7, header_end - 9, header_end - 7, size, 2**31, 2**63,
                             2**64 - 1]),
            st.integers(0, 2**64 - 1)))
    if kind in ("flip_header", "flip_data"):
        low, high = (0, header_end - 1) if kind == "flip_header" else (header_end, size - 1)
        return kind, draw(st.lists(st.tuples(st.integers(low, high), st.integers(0, 255)),
                                   min_size=1, max_size=8))
    key = draw(st.sampled_from(keys))
    shape = header[key]["shape"]
    if kind == "dtype":
        return kind, (key, draw(st.sampled_from(DTYPES)))
    if kind == "shape":
        return kind, (key, draw(st.one_of(
            st.just([math.prod(shape)]), st.just([1, *shape]), st.just(shape[::-1]),
            st.lists(st.integers(0, 2**40), max_size=4))))
    if kind == "offsets":
        return kind, (key, draw(st.lists(st.integers(0, 2**64 - 1), min_size=0, max_size=3)))
    if kind in ("rename", "drop"):
        return kind, (key, draw(st.sampled_from([key + "_", key.upper(), "__metadata__x"])))
    if kind == "non_finite":
        return kind, (key, draw(st.sampled_from([math.nan, math.inf, -math.inf])))
    return kind, draw(st.sampled_from(["more_classes", "fewer_classes", "decoder"]))


def apply_mutation(data: bytes, mutation) -> bytes:
    kind, what = mutation
    if kind == "truncate":
        return data[:what]
    if kind == "header_length":
        return struct.pack("<Q", what) + data[8:]
    if kind in ("flip_header", "flip_data"):
        mutable = bytearray(data)
        for offset, value in what:
            mutable[offset] = value
        return bytes(mutable)
    header, body = split_safetensors(data)
    if kind == "metadata":
        meta = json.loads(header["__metadata__"]["lednet_ros"])
        if what == "decoder":
            meta["decoder"] = next(d for d in DECODER_VARIANTS if d != meta["decoder"])
        else:
            n = meta["num_classes"] + (1 if what == "more_classes" else -1)
            meta.update(num_classes=n, class_names=(meta["class_names"] + ["extra"])[:n],
                        class_colors=(meta["class_colors"] + [[1, 2, 3]])[:n])
        header["__metadata__"]["lednet_ros"] = json.dumps(meta)
        return join_safetensors(header, body)
    key, value = what
    info = header[key]
    if kind == "dtype":
        info["dtype"] = value
    elif kind == "shape":
        info["shape"] = value
    elif kind == "offsets":
        info["data_offsets"] = value
    elif kind == "rename":
        header[value] = header.pop(key)
    elif kind == "drop":
        del header[key]
    elif kind == "non_finite":
        assert info["dtype"] == "F32", info
        start = info["data_offsets"][0]
        body = body[:start] + struct.pack("<f", value) + body[start + 4:]
    return join_safetensors(header, body)


def test_mutated_shipped_weights_load_or_raise_checkpoint_error(tmp_path, shipped_weights):
    path = tmp_path / "mutated.safetensors"

    @FILES
    @given(mutation=mutations(shipped_weights))
    def check(mutation):
        path.write_bytes(apply_mutation(shipped_weights, mutation))
        check_loads_or_refuses(path)

    check()


# metadata fields as the shipped file has them, and values that are wrong in every way JSON allows
VALID_METADATA = {
    "format": "lednet_ros.weights", "format_version": 1, "num_classes": 2,
    "class_names": ["road", "sky"], "class_colors": [[128, 64, 128], [70, 130, 180]],
    "decoder": "apn", "dataset": "camvid", "ignore_index": 11, "mean": [0.0, 0.0, 0.0],
    "std": [1.0, 1.0, 1.0], "input_size": [480, 360], "recipe": {"epochs": 1},
    "metrics": {"mean_iou": 0.5, "test": {"mean_iou": 0.4}},
}
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8)
NEAR_MISSES = {
    "num_classes": [True, 0, 256, 2.0, "2", -1],
    "class_names": [["road"], ["road", 5], "road sky", None],
    "class_colors": [[[1, 2, 3]], [[1, 2, 3], [1, 2, 256]], [[1, 2, 3], [1, 2]],
                     [[1, 2, 3], [True, 2, 3]]],
    "decoder": ["APN", "", ["apn"], {"apn": 1}],
    "dataset": [5, None, ["camvid"]],
    "ignore_index": ["255", 2.5, None],
    "mean": [[math.nan, 0.0, 0.0], [math.inf, 0, 0], [0, 0], [True, 0, 0], "0"],
    "std": [[math.inf, 1, 1], [math.nan, 1, 1], [0, 1, 1], [-1, 1, 1], [1, 1]],
    "input_size": [[0, 360], [480], [480.0, 360], [True, 360], "480x360"],
    "recipe": [[], "recipe", None, 3],
    "metrics": [[], "metrics", None, {"test": []}, {"mean_iou": "high"},
                {"mean_iou": math.nan}, {"test": {"mean_iou": math.inf}}],
}


@st.composite
def metadata_dicts(draw):
    raw = dict(VALID_METADATA)
    for key in draw(st.lists(st.sampled_from(sorted(VALID_METADATA)), max_size=3, unique=True)):
        choice = draw(st.sampled_from(["near_miss", "json", "drop"]))
        if choice == "near_miss" and key in NEAR_MISSES:
            raw[key] = draw(st.sampled_from(NEAR_MISSES[key]))
        elif choice == "drop":
            del raw[key]
        else:
            raw[key] = draw(JSON_VALUES)
    if draw(st.integers(0, 9)) == 0:
        raw[draw(st.text(min_size=1, max_size=6))] = draw(JSON_VALUES)
    return raw


def write_with_metadata(path: Path, text: str) -> None:
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(1, np.float32)}, str(path), metadata={"lednet_ros": text})


def test_metadata_is_accepted_only_when_usable(tmp_path):
    path = tmp_path / "metadata.safetensors"

    @PURE
    @given(raw=st.one_of(metadata_dicts(), JSON_VALUES))
    def check(raw):
        write_with_metadata(path, json.dumps(raw))
        try:
            meta = read_metadata(path)
        except CheckpointError as exc:
            assert str(exc).startswith(f"{path}: "), str(exc)
            return
        assert_usable_metadata(meta)

    check()


@pytest.mark.parametrize("text", ["", "{", "NaN", '{"format": "lednet_ros.weights"',
                                  "[1, 2]", '"just a string"'])
def test_unreadable_metadata_text_is_a_checkpoint_error(tmp_path, text):
    path = tmp_path / "metadata.safetensors"
    write_with_metadata(path, text)
    with pytest.raises(CheckpointError, match="metadata"):
        read_metadata(path)


def with_huge_tensor(path: Path, data: bytes, name: str, gib: int = 1) -> Path:
    """Write the shipped weights with tensor ``name`` (replaced or added) declared huge.

    The tensor is declared as ``gib`` GiB of float32 stored last; the file is sparse, so writing
    it costs nothing.
    """
    header, body = split_safetensors(data)
    metadata = header.pop("__metadata__")
    parts, offset, new_header = [], 0, {"__metadata__": metadata}
    for key, info in sorted(header.items(), key=lambda item: item[1]["data_offsets"][0]):
        if key == name:
            continue
        start, end = info["data_offsets"]
        parts.append(body[start:end])
        new_header[key] = dict(info, data_offsets=[offset, offset + end - start])
        offset += end - start
    size = gib << 30
    new_header[name] = {"dtype": "F32", "shape": [size // 4],
                        "data_offsets": [offset, offset + size]}
    prefix = join_safetensors(new_header, b"".join(parts))
    with open(path, "wb") as f:
        f.write(prefix)
        f.truncate(len(prefix) + size)
    return path


@pytest.mark.parametrize("name", ["extra.weight", "decoder.down1.0.bias"])
def test_oversized_tensors_are_refused_without_being_read(tmp_path, shipped_weights, name):
    """A 1 GiB tensor, extra or in place of a real one, is refused from its name or shape.

    safetensors maps tensor data lazily and load_weights never touches the refused one.
    """
    path = with_huge_tensor(tmp_path / "huge.safetensors", shipped_weights, name)
    before = peak_rss_mib_since_reset()
    with pytest.raises(CheckpointError, match="unexpected \\['extra.weight'\\]|has shape"):
        load_weights(path)
    if before is not None:
        assert _peak_rss_mib() - before < 256, "the refused tensor was read into memory"


class _Payload:
    """Unpickling this creates ``marker``: proof that a loader executed code from the file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def test_pickled_code_in_a_weights_file_is_never_run(tmp_path, shipped_weights):
    import torch

    marker = tmp_path / "code_ran"
    pickled = tmp_path / "pickled.safetensors"
    pickled.write_bytes(pickle.dumps({"model": _Payload(marker)}))
    torch_saved = tmp_path / "torch_saved.safetensors"
    torch.save({"model": _Payload(marker)}, torch_saved)
    # a pickle where safetensors expects its tensor data, behind a valid header
    data = bytearray(shipped_weights)
    payload = pickle.dumps(_Payload(marker))
    data[header_size(data):header_size(data) + len(payload)] = payload
    smuggled = tmp_path / "smuggled.safetensors"
    smuggled.write_bytes(bytes(data))
    for path in (pickled, torch_saved):
        with pytest.raises(CheckpointError, match="not a LEDNet weights file"):
            load_weights(path)
    check_loads_or_refuses(smuggled)
    assert not marker.exists(), "loading a weights file executed code"


# ---- a running node ---------------------------------------------------------------------------

def malformed_frames(count: int, seed: int = 7) -> list[Image]:
    """Return ``count`` seeded malformed Image messages of every kind, all small enough to send.

    Each has at least one problem at max_image_pixels = 160 x 96.
    """
    rng = random.Random(seed)
    frames = []
    while len(frames) < count:
        encoding = rng.choice(list(SUPPORTED_ENCODINGS) + ["32FC1", "bayer_rggb8", "", "RGB8"])
        width = rng.choice([0, 1, 5, 159, 160, 161, 4096, 100000, U32])
        height = rng.choice([0, 1, 7, 96, 97, 100000, U32])
        bpp = bytes_per_pixel(encoding) if encoding in ENCODINGS else 4
        step = min(rng.choice([width * bpp, width * bpp - 1, 0, 3, 2**31]), U32)
        step = max(step, 0)
        length = rng.choice([0, 10, max(step * height - 1, 0), step * height])
        length = min(length, DATA_CAP)
        msg = Image(height=height, width=width, encoding=encoding, step=step,
                    is_bigendian=rng.choice([0, 1]), data=rng.randbytes(length))
        if expected_problems(msg, 160 * 96):
            frames.append(msg)
    return frames


def test_the_node_survives_malformed_frames_and_counts_them(random_weights):
    frames = malformed_frames(30)
    good = sky_road_card()  # 160 x 96: max_image_pixels exactly
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    with ros_context() as context:
        namespace = "/fuzz_node"
        node = SegmentationNode(context=context, namespace=namespace, parameter_overrides=[
            Parameter("weights", value=str(random_weights)), Parameter("engine", value="torch"),
            Parameter("max_image_pixels", value=160 * 96),
            Parameter("qos_reliability", value="reliable"), Parameter("qos_depth", value=10)])
        probe = rclpy.create_node("fuzz_probe", namespace=namespace, context=context)
        name = f"{namespace}/{NODE_NAME}"
        labels = Collector(probe, Image, f"{name}/labels", reliable)
        diagnostics = Collector(probe, DiagnosticArray, "/diagnostics", reliable)
        with spinning(context, node, probe):
            publisher = probe.create_publisher(Image, "image", reliable)
            wait_for_subscribers(publisher)
            for count, frame in enumerate(frames, start=1):
                frame.header.stamp.sec = count
                publisher.publish(frame)
                wait_until(lambda: node.stats.snapshot().rejected == count,
                           message=f"malformed frame {count} rejected")
                assert f"frame {count}.000000000" in node.stats.snapshot().last_error
            publisher.publish(make_image(good, "rgb8", stamp=(1000, 0)))
            (msg,) = labels.wait(1, where=lambda m: m.header.stamp.sec == 1000)
            assert (msg.width, msg.height, msg.encoding) == (160, 96, "mono8")

            def counted():
                for array in diagnostics.messages:
                    for status in array.status:
                        values = {kv.key: kv.value for kv in status.values}
                        if status.name == f"{name}: segmentation" and \
                                values.get("frames processed") == "1":
                            return values
                return None

            values = wait_until(counted, message="diagnostics counting the frames")
            assert values["frames rejected"] == str(len(frames))
            assert values["frames received"] == str(len(frames) + 1)
            snapshot = node.stats.snapshot()
            assert (snapshot.rejected, snapshot.processed) == (len(frames), 1)
            assert node._worker.is_alive() and node._finisher.is_alive()

