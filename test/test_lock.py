"""The pinned install: the lock .ci/requirements.txt against .ci/requirements.in and the venv.

The lock (made by .ci/lock) must cover every direct requirement within its bounds, pin every
package with == and sha256 hashes, and be what the running venv holds, version for version: this
fails where .ci/setup did not install from the lock, or the lock was not refreshed after an edit
of requirements.in. Needs no ROS.
"""

from __future__ import annotations

import operator
import re
import sysconfig
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DIRECT = REPO / ".ci" / "requirements.in"
LOCK = REPO / ".ci" / "requirements.txt"

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


def test_every_lock_line_is_pinned_with_hashes():
    pins, problems = parse_lock(LOCK.read_text())
    assert not problems, "\n".join(problems)
    assert len(pins) > 100  # the whole closure, not just the direct requirements


def test_the_lock_covers_every_direct_requirement_within_its_bounds():
    pins, _ = parse_lock(LOCK.read_text())
    problems = direct_problems(DIRECT.read_text(), pins)
    assert not problems, "\n".join(problems)


def test_the_venv_holds_exactly_the_locked_versions():
    pins, _ = parse_lock(LOCK.read_text())
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
