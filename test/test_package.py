"""The ROS 2 package itself: package.xml, the generated messages, the install space, the launchers.

Needs no ROS graph. The install-space checks skip where this package was not built with colcon
(e.g. after a plain `pip install .`).
"""

from __future__ import annotations

import ast
import importlib.util
import math
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from skips import install_prefix

REPO = Path(__file__).resolve().parents[1]

# Third-party imports -> rosdep keys (ros/rosdistro rosdep/python.yaml). None: no key exists
# (documented in package.xml instead).
PYTHON_KEYS = {
    "numpy": "python3-numpy",
    "cv2": "python3-opencv",
    "torch": "python3-torch",
    "safetensors": None,
    "onnx": None,
    "onnxruntime": "python3-onnxruntime-pip",
    "openvino": None,  # no rosdep key: pip install openvino (README)
    "nncf": None,  # no rosdep key; only tools.quantize needs it: pip install nncf (README)
    "rosbags": "python3-rosbags-pip",
    "yaml": "python3-yaml",
    "tqdm": "python3-tqdm",
    "matplotlib": "python3-matplotlib",
    "pytest": "python3-pytest",
    "hypothesis": "python3-hypothesis",
}
ROS_SUFFIXES = ("_msgs", "_srvs", "_interfaces")
ROS_PACKAGES = {"rclpy", "launch", "launch_ros", "launch_testing", "launch_testing_ros",
                "ament_index_python", "rosidl_runtime_py", "tf2_ros", "cv_bridge"}

EXECUTABLES = {
    "segmentation_node": "nodes.segmentation_node",
    "segmentation_lifecycle_node": "nodes.segmentation_lifecycle_node",
    "camera_publisher": "nodes.camera_publisher",
    "evaluator_node": "nodes.evaluator_node",
    "segment_files": "tools.segment_files",
    "write_bag": "tools.write_bag",
    "bag_player": "tools.bag_player",
    "evaluate_bag": "tools.evaluate_bag",
    "evaluate_cityscapes": "tools.evaluate_cityscapes",
    "evaluate_ground": "tools.evaluate_ground",
    "evaluate_health": "tools.evaluate_health",
    "adapt": "tools.adapt",
}
OCCUPANCY_FIELDS = {
    "header": "std_msgs/Header",
    "height": "uint32",
    "width": "uint32",
    "class_names": "sequence<string>",
    "pixel_counts": "sequence<uint32>",
    "fractions": "sequence<float>",
    "grid_rows": "uint16",
    "grid_cols": "uint16",
    "cell_pixel_counts": "sequence<uint32>",
    "cell_fractions": "sequence<float>",
}
CLASS_INFO_FIELDS = {
    "header": "std_msgs/Header",
    "class_names": "sequence<string>",
    "colors": "sequence<std_msgs/ColorRGBA>",
    "dataset": "string",
    "weights": "string",
    "mean_iou": "float",
    "input_width": "uint32",
    "input_height": "uint32",
}


def manifest() -> ET.Element:
    return ET.parse(REPO / "package.xml").getroot()


def dependencies(*tags: str) -> set[str]:
    return {element.text.strip() for tag in tags for element in manifest().iter(tag)}


def imported_top_level_names(paths) -> dict[str, Path]:
    """Absolute imports of the given files: top-level module name -> one file importing it."""
    names = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found = [node.module]
            else:
                continue
            for name in found:
                names.setdefault(name.split(".")[0], path)
    return names


def missing_keys(paths, declared: set[str], local: set[str]) -> list[str]:
    problems = []
    for name, path in sorted(imported_top_level_names(paths).items()):
        if name in sys.stdlib_module_names or name in local:
            continue
        if name in PYTHON_KEYS:
            key = PYTHON_KEYS[name]
        elif name in ROS_PACKAGES or name.endswith(ROS_SUFFIXES):
            key = name
        else:
            problems.append(f"{path.name} imports {name!r}: map it to its rosdep key in "
                            "PYTHON_KEYS of test/test_package.py and declare it in package.xml")
            continue
        if key is not None and key not in declared:
            problems.append(f"{path.name} imports {name!r} but package.xml lacks {key!r}")
    return problems


def test_package_xml_is_format_3_and_complete():
    root = manifest()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "lednet_ros"
    assert root.findtext("version") == "0.1.0"
    assert root.findtext("license") == "BSD-3-Clause"
    assert root.find("maintainer").get("email") == "maintainers@lednet-ros.invalid"
    assert root.findtext("export/build_type") == "ament_cmake"
    assert root.findtext("member_of_group") == "rosidl_interface_packages"
    assert {"ament_cmake", "ament_cmake_python", "rosidl_default_generators"} <= dependencies(
        "buildtool_depend")
    assert "std_msgs" in dependencies("depend", "build_depend")
    assert "rosidl_default_runtime" in dependencies("exec_depend")


def test_package_xml_validates_with_catkin_pkg():
    package = pytest.importorskip("catkin_pkg.package", reason="catkin_pkg is not installed")
    parsed = package.parse_package(REPO / "package.xml")
    parsed.validate()
    assert parsed.package_format == 3 and parsed.get_build_type() == "ament_cmake"


def test_package_xml_declares_what_the_code_imports():
    run = dependencies("depend", "exec_depend")
    sources = sorted((REPO / "lednet_ros").rglob("*.py")) + sorted((REPO / "launch").glob("*.py"))
    local = {"lednet_ros", "training"}
    problems = missing_keys(sources, run, local)
    tests = sorted((REPO / "test").glob("*.py"))
    problems += missing_keys(tests, run | dependencies("test_depend"),
                             local | {path.stem for path in tests})
    assert not problems, "\n".join(problems)


def test_setup_py_lists_the_core_requirements():
    text = (REPO / "setup.py").read_text()
    for requirement in ("torch>=2.1", "numpy", "opencv-python-headless", "safetensors",
                        "lednet-segment = lednet_ros.tools.segment_files:main",
                        "weights/*.safetensors"):
        assert f'"{requirement}"' in text


# The build: generated messages and the install space.

def messages():
    install_prefix()
    try:
        from lednet_ros.msg import ClassInfo, ClassOccupancy
    except ImportError as exc:
        pytest.fail(f"lednet_ros.msg does not import although the package is built ({exc}); "
                    "is install/setup.bash sourced?")
    return ClassOccupancy, ClassInfo


def test_message_fields_are_as_documented():
    occupancy, info = messages()
    assert occupancy.get_fields_and_field_types() == OCCUPANCY_FIELDS
    assert info.get_fields_and_field_types() == CLASS_INFO_FIELDS


def test_messages_can_be_filled():
    from std_msgs.msg import ColorRGBA, Header

    occupancy_type, info_type = messages()
    names = ["road", "car"]
    occupancy = occupancy_type(
        header=Header(frame_id="camera"), height=2, width=3, class_names=names,
        pixel_counts=[4, 2], fractions=[4 / 6, 2 / 6], grid_rows=1, grid_cols=2,
        cell_pixel_counts=[3, 0, 1, 2], cell_fractions=[1.0, 0.0, 1 / 3, 2 / 3])
    assert occupancy.header.frame_id == "camera"
    assert list(occupancy.pixel_counts) == [4, 2]
    assert occupancy.cell_fractions[3] == pytest.approx(2 / 3)
    info = info_type(class_names=names, colors=[ColorRGBA(r=0.5, g=0.25, b=0.0, a=1.0)] * 2,
                     dataset="camvid", weights="/w.safetensors", mean_iou=math.nan,
                     input_width=480, input_height=360)
    assert math.isnan(info.mean_iou) and info.colors[1].g == 0.25
    assert (info.input_width, info.input_height) == (480, 360)


def installed_python_package(prefix: Path) -> Path:
    found = sorted(prefix.glob("lib/python3*/site-packages/lednet_ros"))
    assert found, f"no lib/python3*/site-packages/lednet_ros under {prefix}"
    return found[0]


def test_install_space_has_modules_weights_launch_and_config():
    prefix = install_prefix()
    package = installed_python_package(prefix)
    assert (package / "msg" / "__init__.py").is_file()
    expected = [p.relative_to(REPO / "lednet_ros") for p in (REPO / "lednet_ros").rglob("*")
                if p.is_file() and p.suffix in {".py", ".safetensors", ".md"}
                and "__pycache__" not in p.parts]
    absent = [str(p) for p in expected if not (package / p).is_file()]
    assert not absent, f"not installed (rebuild with .ci/setup): {absent}"
    for folder in ("launch", "config"):
        for source in (REPO / folder).rglob("*"):
            if source.is_file():
                installed = prefix / "share" / "lednet_ros" / source.relative_to(REPO)
                assert installed.is_file(), f"{installed} is missing"
    assert {p.name for p in (prefix / "share" / "lednet_ros" / "msg").glob("*.msg")} >= {
        "ClassOccupancy.msg", "ClassInfo.msg"}


@pytest.mark.parametrize("name", sorted(EXECUTABLES))
def test_executables_are_installed_launchers(name):
    path = install_prefix() / "lib" / "lednet_ros" / name
    assert path.is_file(), f"{path} is missing"
    assert os.access(path, os.X_OK), f"{path} is not executable"
    lines = path.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env python3"
    assert f"from lednet_ros.{EXECUTABLES[name]} import main" in lines


def test_launcher_runs_its_module():
    path = install_prefix() / "lib" / "lednet_ros" / "segment_files"
    if importlib.util.find_spec("lednet_ros.tools.segment_files") is None:
        pytest.skip("lednet_ros.tools.segment_files is not written yet")
    result = subprocess.run([str(path), "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout.lower()


IMPORT_BOTH = ("import lednet_ros, lednet_ros.msg, lednet_ros.core.inference.model; "
               "print(lednet_ros.__file__); print(lednet_ros.msg.__file__); "
               "print(lednet_ros.core.inference.model.__file__)")


@pytest.mark.parametrize("where", ["repo", "elsewhere"])
def test_messages_and_modules_import_together(where, tmp_path):
    """From the repo root the source package comes first and finds msg in the install space."""
    prefix = install_prefix()
    messages()
    cwd = REPO if where == "repo" else tmp_path
    result = subprocess.run([sys.executable, "-c", IMPORT_BOTH], cwd=cwd, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    package, msg, model = (Path(line) for line in result.stdout.split())
    assert msg.is_relative_to(prefix)
    if where == "repo":
        assert package == REPO / "lednet_ros" / "__init__.py"
        assert model == REPO / "lednet_ros" / "core" / "inference" / "model.py"
    else:
        assert package.is_relative_to(prefix) and model.is_relative_to(prefix)


TOOLS = sorted(path.stem for path in (REPO / "lednet_ros" / "tools").glob("*.py")
               if "\ndef main(" in path.read_text())


@pytest.mark.parametrize("tool", TOOLS)
def test_every_tool_prints_its_help(tool, capsys):
    """--help formats every option's text (argparse refuses a stray % in a default's help)."""
    module = importlib.import_module(f"lednet_ros.tools.{tool}")
    with pytest.raises(SystemExit) as exited:
        module.main(["--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage:")
