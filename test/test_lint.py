"""Lint the ROS way: the checks of ament_flake8 and ament_pep257 (through ruff, .ci/ruff.toml)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / ".ci" / "ruff.toml"
CHECKED = ["lednet_ros", "launch", "training", "test", "setup.py"]


def ruff() -> list[str]:
    found = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if found is None:
        pytest.skip("ruff is not installed (it is in .ci/requirements-<lane>.in)")
    return [found]


def test_code_passes_flake8_and_pep257_checks():
    result = subprocess.run([*ruff(), "check", "--config", str(CONFIG), "--no-cache",
                             "--output-format", "concise", *CHECKED], cwd=REPO,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr


def test_lint_catches_a_violation(tmp_path):
    """The check can fail: a line over 99 characters and an unused import are reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("import os\n\nVALUE = '" + "x" * 100 + "'\n")
    result = subprocess.run([*ruff(), "check", "--config", str(CONFIG), "--no-cache",
                             "--output-format", "concise", str(bad)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "F401" in result.stdout and "E501" in result.stdout


def test_license_file_matches_package_xml():
    license_text = (REPO / "LICENSE").read_text()
    declared = (REPO / "package.xml").read_text().split("<license>")[1].split("</license>")[0]
    assert declared == "BSD-3-Clause"
    assert "Redistribution and use in source and binary forms" in license_text
    assert "Neither the name of the copyright holder" in license_text
