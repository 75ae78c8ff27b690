"""Command-line helpers shared by the tools and training (no ROS, no torch)."""

from __future__ import annotations

import argparse
import inspect
import re


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


def attribute_docs(cls) -> dict[str, str]:
    """Each attribute's text in the "Attributes:" section of ``cls``'s docstring, as one line.

    So a tool's --help repeats nothing: the class documents its fields once.
    """
    doc = inspect.getdoc(cls) or ""
    section = doc.split("Attributes:", 1)[1] if "Attributes:" in doc else ""
    texts: dict[str, str] = {}
    name = None
    for line in section.splitlines():
        if line and not line.startswith(" "):
            break  # the next section
        match = re.match(r"^    (\w+): (.*)$", line)
        if match:
            name = match.group(1)
            texts[name] = match.group(2)
        elif name and line.strip():
            texts[name] += " " + line.strip()
    return texts
