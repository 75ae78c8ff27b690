"""The segmentation node's parameters: one table with types, defaults, ranges and meanings."""

from __future__ import annotations

from lednet_ros.core.inference.engine_choice import ENGINES, PRECISIONS
from lednet_ros.core.runtime.images import DEFAULT_MAX_PIXELS
from lednet_ros.core.runtime.pipeline import MAX_GRID, FrameSettings
from lednet_ros.core.inference.segmenter import MAX_INPUT_SIDE, OUTPUT_RESOLUTIONS
from lednet_ros.ros.parameters import RELIABILITY, Spec

PARAMETERS = {
    "weights": Spec("", "Path of a LEDNet weights file (.safetensors with metadata); '' = the "
                    "packaged CamVid weights. Restart to change.", read_only=True),
    "device": Spec("auto", "Inference device: auto (cuda if available, else cpu), cpu, cuda or "
                   "cuda:N.", read_only=True),
    "precision": Spec(PRECISIONS[0], "Arithmetic precision: auto (the fastest whose labels "
                      "agree with fp32), fp32 (exact), fp16 (CUDA) or bf16 (CPUs with native "
                      "bf16).", read_only=True, choices=PRECISIONS),
    "engine": Spec("auto", "Inference engine: auto (the fastest measured for this device and "
                   "CPU), or one of the listed engines.", read_only=True, choices=ENGINES),
    "input_width": Spec(0, "Network input width in pixels; 0 = the weights' training width.",
                        integers=(0, MAX_INPUT_SIDE)),
    "input_height": Spec(0, "Network input height in pixels; 0 = the weights' training height.",
                         integers=(0, MAX_INPUT_SIDE)),
    "output_resolution": Spec("original", "Size of labels, colour mask and overlay: original "
                              "(the input image's) or network (the network input's).",
                              choices=OUTPUT_RESOLUTIONS),
    "overlay_alpha": Spec(0.5, "Weight of the colour mask in the overlay, 0 (image only) to 1 "
                          "(mask only).", floats=(0.0, 1.0)),
    "grid_rows": Spec(3, "Rows of the occupancy region grid.", integers=(1, MAX_GRID)),
    "grid_cols": Spec(3, "Columns of the occupancy region grid.", integers=(1, MAX_GRID)),
    "publish_class_topics": Spec(False, "Also publish each class's pixel fraction on "
                                 "~/occupancy/<class> (std_msgs/Float32).", read_only=True),
    "input_compressed": Spec(False, "Subscribe to image/compressed (sensor_msgs/CompressedImage) "
                             "instead of image.", read_only=True),
    "qos_reliability": Spec("best_effort", "Reliability of the image and camera_info "
                            "subscriptions: best_effort (sensor data) or reliable.",
                            read_only=True, choices=tuple(RELIABILITY)),
    "qos_depth": Spec(1, "History depth of the image and camera_info subscriptions.",
                      read_only=True, integers=(1, 1000)),
    "max_image_pixels": Spec(DEFAULT_MAX_PIXELS, "Frames with more pixels (width x height) are "
                             "rejected.", integers=(1, 2**31 - 1)),
    "no_frames_timeout": Spec(5.0, "Seconds without a frame while the image topic has "
                              "publishers before warning once (0 disables).",
                              floats=(0.0, 3600.0)),
    "adapt.frames": Spec(60, "Frames the ~/adapt service gathers from the stream before it "
                         "recomputes the BatchNorm statistics for this camera.",
                         integers=(2, 10000)),
    "adapt.timeout": Spec(60.0, "Seconds ~/adapt waits for its frames before it gives up.",
                          floats=(1.0, 3600.0)),
    "adapt.output": Spec("", "Where ~/adapt writes the adapted weights (.safetensors) for the "
                         "next start ('' = not written)."),
}
# Parameters whose runtime changes go into the FrameSettings of the next frame.
FRAME_PARAMETERS = ("input_width", "input_height", "output_resolution", "overlay_alpha",
                    "grid_rows", "grid_cols", "max_image_pixels")


def frame_settings(values: dict) -> FrameSettings:
    """FrameSettings from parameter values (name -> value)."""
    return FrameSettings(
        input_size=(values["input_width"], values["input_height"]),
        output_resolution=values["output_resolution"],
        overlay_alpha=values["overlay_alpha"],
        grid=(values["grid_rows"], values["grid_cols"]),
        max_image_pixels=values["max_image_pixels"],
    )
