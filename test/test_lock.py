"""The pinned install: the locks, the venv, and .ci/install_lock on a fresh venv.

Each pip lane's lock (jazzy, kilted; made by .ci/lock) must cover every direct requirement
within its bounds and pin every package with == and sha256 hashes, and the running lane's lock
must be what its venv holds, version for version: this fails where .ci/setup did not install
from the lock, or the lock was not refreshed after an edit of requirements-<lane>.in. And
.ci/install_lock, run on a venv made as a fresh machine makes it, installs a lock exactly even
after a newer release. Needs no ROS.
"""

from __future__ import annotations

import operator
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LOCKED_LANES = ("jazzy", "kilted")  # the lanes set up from a lock (.ci/lanes)
LANE = os.environ.get("LEDNET_LANE", "jazzy")  # the running one (.ci/env exports it)


def direct_file(lane: str) -> Path:
    return REPO / ".ci" / f"requirements-{lane}.in"


def lock_file(lane: str) -> Path:
    return REPO / ".ci" / f"requirements-{lane}.txt"


NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
PINNED = re.compile(rf"({NAME})==(\S+)((?: --hash=sha256:[0-9a-f]{{64}})+)")
OPERATORS = {"==": operator.eq, "!=": operator.ne, ">=": operator.ge, "<=": operator.le,
             ">": operator.gt, "<": operator.lt}


def normalise(name: str) -> str:
    """Normalise a name as PEP 503 does: runs of -, _ and . are one -, lower case."""
    return re.sub(r"[-_.]+", "-", name).lower()


def release(version: str) -> tuple[int, ...]:
    """Return the release numbers of a version, trailing zeros dropped: 1.2.0+cpu -> (1, 2)."""
    numbers = [int(part) for part in re.match(r"\d+(?:\.\d+)*", version).group().split(".")]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


def logical_lines(text: str) -> list[str]:
    """Return the non-empty lines without comments, continuations joined, spaces collapsed."""
    joined = re.sub(r"\\\n", " ", text)
    lines = (re.sub(r"\s+", " ", line.split("#")[0]).strip() for line in joined.splitlines())
    return [line for line in lines if line]


def parse_lock(text: str) -> tuple[dict[str, str], list[str]]:
    """Return {name: pinned version} and the lines not `name==version --hash=sha256:...`."""
    pins, problems = {}, []
    for line in logical_lines(text):
        match = PINNED.fullmatch(line)
        if not match:
            problems.append(f"not pinned with == and sha256 hashes: {line[:80]}")
        elif normalise(match[1]) in pins:
            problems.append(f"listed twice: {match[1]}")
        else:
            pins[normalise(match[1])] = match[2]
    return pins, problems


def direct_problems(direct_text: str, pins: dict[str, str]) -> list[str]:
    """List the direct requirements missing from the lock or locked outside their bounds."""
    problems = []
    for line in logical_lines(direct_text):
        match = re.match(rf"({NAME})\s*(?:\[[^\]]*\])?\s*([^;]*)", line)
        name, specifiers = normalise(match[1]), match[2]
        if name not in pins:
            problems.append(f"{match[1]} (requirements.in) is not in the lock: run .ci/lock")
            continue
        for op, bound in re.findall(r"(==|!=|>=|<=|>|<)\s*([^,\s]+)", specifiers):
            if not OPERATORS[op](release(pins[name]), release(bound)):
                problems.append(f"{match[1]}: the lock's {pins[name]} is not {op}{bound}: "
                                "run .ci/lock")
    return problems


def installed_in_venv() -> dict[str, str]:
    """Return {name: version} of the distributions in the running interpreter's venv."""
    paths = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    return {normalise(dist.metadata["Name"]): dist.version
            for dist in metadata.distributions(path=paths)}


def version_problems(pins: dict[str, str], installed: dict[str, str]) -> list[str]:
    return [f"{name}: the lock says {version}, the venv has {installed.get(name, 'nothing')}"
            for name, version in sorted(pins.items()) if installed.get(name) != version]


@pytest.mark.parametrize("lane", LOCKED_LANES)
def test_every_lock_line_is_pinned_with_hashes(lane):
    pins, problems = parse_lock(lock_file(lane).read_text())
    assert not problems, "\n".join(problems)
    assert len(pins) > 100  # the whole closure, not just the direct requirements


@pytest.mark.parametrize("lane", LOCKED_LANES)
def test_the_lock_covers_every_direct_requirement_within_its_bounds(lane):
    pins, _ = parse_lock(lock_file(lane).read_text())
    problems = direct_problems(direct_file(lane).read_text(), pins)
    assert not problems, "\n".join(problems)


def test_the_lanes_lock_the_same_project_requirements():
    """Both lanes install the same project; only the ROS 2 distribution's wheels differ."""
    def project(lane):
        return {line.split("==")[0] for line in logical_lines(direct_file(lane).read_text())
                if not line.startswith(f"ros-{lane}-")}

    assert project("jazzy") == project("kilted")
    ros = {lane: {line for line in logical_lines(direct_file(lane).read_text())
                  if line.startswith(f"ros-{lane}-")} for lane in LOCKED_LANES}
    assert "ros-jazzy-rclpy" in ros["jazzy"] and "ros-kilted-rclpy" in ros["kilted"]


def test_the_venv_holds_exactly_the_locked_versions():
    if LANE not in LOCKED_LANES:
        pytest.skip(f"lane {LANE} is not installed from a lock (.ci/lanes)")
    assert Path(sys.prefix).match(f"*/.lanes/{LANE}/venv"), \
        f"LEDNET_LANE is {LANE} but the tests run in {sys.prefix} (source .ci/env of the lane)"
    pins, _ = parse_lock(lock_file(LANE).read_text())
    problems = version_problems(pins, installed_in_venv())
    assert not problems, "set-up did not install the lock (run .ci/setup):\n" + "\n".join(problems)


def test_the_checks_catch_what_they_are_for():
    hashed = " \\\n    --hash=sha256:" + "a" * 64 + "\n    # via -r .ci/requirements.in\n"
    pins, problems = parse_lock("# header\nTyping_Extensions==4.1.0" + hashed + "torch==2.13.0+cpu"
                                + hashed + "numpy>=2" + hashed + "rich==14.0\n")
    assert pins == {"typing-extensions": "4.1.0", "torch": "2.13.0+cpu"}
    assert len(problems) == 2 and "numpy>=2" in problems[0] and "rich==14.0" in problems[1]
    assert parse_lock("six==1.16.0" + hashed + "Six==1.17.0" + hashed)[1] == ["listed twice: Six"]

    direct = "typing.extensions  # comment\ntorch==2.13.0\nsetuptools>=77.0.3,<80\nruff\n"
    assert direct_problems(direct, {**pins, "setuptools": "79.0.1", "ruff": "0.17.6"}) == []
    assert direct_problems(direct, {**pins, "setuptools": "80.0", "ruff": "1"}) == [
        "setuptools: the lock's 80.0 is not <80: run .ci/lock"]
    assert direct_problems(direct, {**pins, "torch": "2.14.1", "setuptools": "79"}) == [
        "torch: the lock's 2.14.1 is not ==2.13.0: run .ci/lock",
        "ruff (requirements.in) is not in the lock: run .ci/lock"]

    assert version_problems(pins, {"typing-extensions": "4.1.0", "torch": "2.13.0+cpu"}) == []
    assert version_problems(pins, {"typing-extensions": "4.2.0"}) == [
        "torch: the lock says 2.13.0+cpu, the venv has nothing",
        "typing-extensions: the lock says 4.1.0, the venv has 4.2.0"]


# --- The install itself: a venv made as a fresh machine makes it (the lane's python -m venv, with
# the pip that the interpreter bundles) installs a lock exactly, even when a newer release of a
# package that another package requires with an extra (pytest-cov: coverage[toml]>=7.10.6)
# appeared after the lock was made. Made packages in a local folder play the release.

INSTALL_LOCK = REPO / ".ci" / "install_lock"
PROBE = "lednet-lockprobe"


def make_wheel(folder: Path, name: str, version: str, requires: tuple[str, ...] = (),
               extras: tuple[str, ...] = ()) -> Path:
    """Write a minimal pure-Python wheel (one module) and return its path."""
    import base64
    import hashlib
    import zipfile

    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    files = {
        f"{module}.py": f"VERSION = {version!r}\n",
        f"{dist_info}/METADATA": "".join(
            [f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"]
            + [f"Provides-Extra: {extra}\n" for extra in extras]
            + [f"Requires-Dist: {requirement}\n" for requirement in requires]),
        f"{dist_info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    files[f"{dist_info}/RECORD"] = "\n".join(record + [f"{dist_info}/RECORD,,"]) + "\n"
    wheel = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in files.items():
            archive.writestr(zipfile.ZipInfo(path, (2020, 1, 1, 0, 0, 0)), text)
    return wheel


@pytest.fixture(scope="module")
def probe_release(tmp_path_factory):
    """Make a lock of two made packages and a folder that also holds a newer release.

    plugin 1.0 needs core[extra]>=1.0; the lock pins core 1.0; core 2.0 is 'released after'.
    """
    import hashlib

    folder = tmp_path_factory.mktemp("wheels")
    core, plugin = f"{PROBE}-core", f"{PROBE}-plugin"
    locked = [make_wheel(folder, core, "1.0", extras=("extra",)),
              make_wheel(folder, plugin, "1.0", requires=(f"{core}[extra]>=1.0",))]
    make_wheel(folder, core, "2.0", extras=("extra",))
    lock = folder.parent / "probe-lock.txt"
    lock.write_text("".join(
        f"{name}==1.0 \\\n    --hash=sha256:{hashlib.sha256(wheel.read_bytes()).hexdigest()}\n"
        for name, wheel in zip((core, plugin), locked)))
    return folder, lock


def fresh_venv(path: Path) -> Path:
    """Make a venv as .ci/setup does on a fresh machine, with the lane's interpreter."""
    base = sys._base_executable
    subprocess.run([base, "-m", "venv", str(path)], check=True, timeout=120)
    return path / "bin" / "python"


def local_only(folder: Path) -> dict:
    """Return pip settings that add ``folder`` to where packages are found (the index stays)."""
    return {**os.environ, "PIP_FIND_LINKS": str(folder), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def test_a_fresh_venv_installs_the_lock_exactly_after_a_newer_release(probe_release, tmp_path):
    folder, lock = probe_release
    python = fresh_venv(tmp_path / "venv")
    result = subprocess.run(["bash", str(INSTALL_LOCK), str(python), str(lock),
                             str(tmp_path / "pip.log")], env=local_only(folder),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr + (tmp_path / "pip.log").read_text()[-3000:]
    versions = subprocess.run(
        [str(python), "-c", "from importlib import metadata as m; print(m.version('pip'), "
         f"m.version('{PROBE}-core'), m.version('{PROBE}-plugin'))"],
        capture_output=True, text=True, check=True).stdout.split()
    installer = re.search(r"^pip==(\S+)", (REPO / ".ci" / "installer.txt").read_text(), re.M)[1]
    assert versions == [installer, "1.0", "1.0"]


def test_the_bundled_pip_alone_would_take_the_newer_release(probe_release, tmp_path):
    """What the check above guards against, shown where the interpreter bundles such a pip."""
    folder, lock = probe_release
    python = fresh_venv(tmp_path / "venv")
    bundled = subprocess.run([str(python), "-m", "pip", "--version"], capture_output=True,
                             text=True, check=True).stdout.split()[1]
    if release(bundled) >= (23, 3):
        pytest.skip(f"the bundled pip {bundled} keeps extras to their pins (fixed in 23.3)")
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", "--require-hashes",
                             "-r", str(lock)], env=local_only(folder), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode != 0
    assert f"{PROBE}-core[extra]>=1.0" in result.stderr


# --- Room on the disk: set-up stops before pip when the disk cannot hold a venv (a CI run once
# ended half-way with pip's "[Errno 28] No space left on device" and a venv importing nothing).

CHECK_SPACE = REPO / ".ci" / "check_space"


def test_check_space_stops_naming_the_free_space_and_the_need(tmp_path):
    free_gib = shutil.disk_usage(tmp_path).free / 2**30
    too_much = int(free_gib) + 100
    refused = subprocess.run([str(CHECK_SPACE), str(tmp_path / "venv" / "bin"), str(too_much),
                              "installing a lock"], capture_output=True, text=True, timeout=30)
    assert refused.returncode == 1
    assert f"installing a lock needs about {too_much} GiB free" in refused.stderr
    assert f"the disk of {tmp_path} has" in refused.stderr  # the nearest folder that exists
    free_mib = int(refused.stderr.split(" has ")[1].split(" MiB")[0])
    assert abs(free_mib - free_gib * 1024) < 1024
    allowed = subprocess.run([str(CHECK_SPACE), str(tmp_path), "0", "installing a lock"],
                             capture_output=True, text=True, timeout=30)
    assert allowed.returncode == 0 and allowed.stderr == ""
