"""Parameters and QoS shared by every node: one way to declare, describe and check parameters.

A node lists its parameters as :class:`Spec` values in one table; :func:`declare` declares them
with descriptors (description, read-only, integer or float range, allowed values in
``additional_constraints``) and checks fixed-choice values at start-up; rclpy itself enforces
the ranges, and a node's settings objects check what is left when a value changes. The same
table gives ``--help`` (ros/runner.py) and docs/parameters.md (:func:`markdown_table`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.exceptions import ParameterUninitializedException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT,
               "reliable": ReliabilityPolicy.RELIABLE}


def _number(value) -> str:
    return {math.pi: "π", -math.pi: "-π"}.get(value, str(value))


class ConfigurationError(ValueError):
    """A start-up setting a node cannot run with; the message names the value."""


@dataclass(frozen=True)
class Spec:
    """A parameter: default (its type is the parameter's), description and constraints.

    A tuple default is a string list (``str[]``). ``by_weights``: what of the weights the
    default depends on ("class set", "health reference"); it is given when the parameter is
    declared (``default`` is the packaged weights' one). A name with ``<name>`` is a pattern:
    one parameter per value of another parameter, declared by the node.
    """

    default: object
    description: str
    read_only: bool = False
    integers: tuple[int, int] | None = None
    floats: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    by_weights: str = ""

    @property
    def type_name(self) -> str:
        return "str[]" if isinstance(self.default, tuple) else type(self.default).__name__

    def limits(self) -> list[str]:
        """Range, choices and read-only as short texts (for --help and docs)."""
        limits = [f"{_number(low)}..{_number(high)}"
                  for low, high in filter(None, (self.integers, self.floats))]
        limits += [f"one of: {', '.join(self.choices)}"] if self.choices else []
        return limits + (["read-only"] if self.read_only else [])

    def descriptor(self) -> ParameterDescriptor:
        descriptor = ParameterDescriptor(description=self.description, read_only=self.read_only)
        if self.integers is not None:
            low, high = self.integers
            descriptor.integer_range = [IntegerRange(from_value=low, to_value=high)]
        if self.floats is not None:
            low, high = self.floats
            descriptor.floating_point_range = [FloatingPointRange(from_value=low, to_value=high)]
        if self.choices is not None:
            descriptor.additional_constraints = f"one of: {', '.join(self.choices)}"
        return descriptor

    def refusal(self, name: str, value) -> str:
        """Why ``value`` is not allowed for parameter ``name`` ('' when it is)."""
        if self.choices is None or value in self.choices:
            return ""
        return f"parameter {name} is {value!r}; expected one of {', '.join(self.choices)}"


def declare(node: Node, specs: dict[str, Spec], defaults: dict | None = None
            ) -> dict[str, object]:
    """Declare every parameter of ``specs`` (patterns aside); return their values.

    ``defaults`` overrides the specs' defaults (those that depend on the weights). A parameter
    declared already (a lifecycle node configured again) keeps its value.

    Raises:
        ConfigurationError: a value outside its choices (ranges are refused by rclpy itself,
            as rclpy.exceptions.ParameterException).
    """
    values = {}
    for name, spec in specs.items():
        if "<" in name:
            continue
        default = (defaults or {}).get(name, spec.default)
        if isinstance(default, tuple | list):  # an empty list has no type of its own
            default = list(default) or Parameter.Type.STRING_ARRAY
        value = (_declared_value(node, name) if node.has_parameter(name)
                 else node.declare_parameter(name, default, spec.descriptor()).value)
        values[name] = list(value or []) if isinstance(spec.default, tuple) else value
        problem = spec.refusal(name, values[name])
        if problem:
            raise ConfigurationError(problem)
    return values


def _declared_value(node: Node, name: str):
    """Return a declared parameter's value; None for an empty list (declared by type only)."""
    try:
        return node.get_parameter(name).value
    except ParameterUninitializedException:
        return None


def undeclared_overrides(node: Node) -> list[str]:
    """Names given to ``node`` (-p, --params-file) that it has not declared: ignored by rclpy.

    rclpy keeps a node's overrides in ``Node._parameter_overrides`` and offers no public call.
    """
    given = getattr(node, "_parameter_overrides", {})
    return sorted(name for name in given if not node.has_parameter(name))


def warn_undeclared(node: Node, names: list[str]) -> None:
    """Log a warning for each parameter given to ``node`` that it has not declared (``names``)."""
    for name in names:
        node.get_logger().warning(f"parameter {name} was given but this node has none of that "
                                  "name: ignored")


def markdown_table(specs: dict[str, Spec]) -> str:
    """Return a Markdown table of ``specs``: name, type, default, range, change, description."""
    def shown(value) -> str:
        if isinstance(value, bool):
            return f"`{str(value).lower()}`"
        if isinstance(value, tuple):
            return f"`[{', '.join(value)}]`"
        return f"`{value}`" if value != "" else "`''`"

    lines = ["| name | type | default | range / choices | change | description |",
             "|---|---|---|---|---|---|"]
    for name, spec in specs.items():
        limits = [limit for limit in spec.limits() if limit != "read-only"]
        default = "per group" if "<" in name else shown(spec.default)
        default += f" (packaged weights; by their {spec.by_weights})" if spec.by_weights else ""
        change = "read-only" if spec.read_only else "runtime"
        lines.append(f"| `{name}` | {spec.type_name} | {default} | "
                     f"{'; '.join(limits).replace('one of: ', '') or '-'} | {change} | "
                     f"{spec.description} |")
    return "\n".join(lines) + "\n"


def qos(reliability: str, depth: int) -> QoSProfile:
    """Keep-last, volatile QoS with a reliability named as in RELIABILITY."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=RELIABILITY[reliability], durability=DurabilityPolicy.VOLATILE)


LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
