"""Command-line argument types shared by the tools and training (no ROS, no torch)."""

from __future__ import annotations

import argparse


def parse_size(text: str) -> tuple[int, int]:
    """'1024x512' -> (1024, 512), width x height; argparse's error for anything else."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size {text!r} is not WIDTHxHEIGHT, e.g. 1024x512") from None
    if width <= 0 or height <= 0:
        raise argparse.ArgumentTypeError(f"size {text!r} must be positive")
    return width, height
