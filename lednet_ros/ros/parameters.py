"""Parameters and QoS shared by every node: one way to declare, describe and check parameters.

A node lists its parameters as :class:`Spec` values; :func:`declare` declares them all with
descriptors (description, read-only, integer or float range, allowed values in
``additional_constraints``) and checks fixed-choice values at start-up; :func:`check_choices`
refuses runtime changes outside the allowed values. rclpy itself enforces the ranges.
"""

from __future__ import annotations

from dataclasses import dataclass

from rcl_interfaces.msg import (
    FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult,
)
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT,
               "reliable": ReliabilityPolicy.RELIABLE}


class ConfigurationError(ValueError):
    """A start-up setting a node cannot run with; the message names the value."""


@dataclass(frozen=True)
class Spec:
    """A parameter: default (its type is the parameter's), description and constraints."""

    default: object
    description: str
    read_only: bool = False
    integers: tuple[int, int] | None = None
    floats: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None

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


def declare(node: Node, specs: dict[str, Spec]) -> dict[str, object]:
    """Declare every parameter of ``specs``; return their values.

    Raises:
        ConfigurationError: a value outside its choices (ranges are refused by rclpy itself,
            as rclpy.exceptions.ParameterException).
    """
    values = {}
    for name, spec in specs.items():
        values[name] = node.declare_parameter(name, spec.default, spec.descriptor()).value
        problem = spec.refusal(name, values[name])
        if problem:
            raise ConfigurationError(problem)
    return values


def check_choices(specs: dict[str, Spec], parameters) -> SetParametersResult:
    """Return an on-set-parameters result refusing values outside their choices (with reason)."""
    for parameter in parameters:
        spec = specs.get(parameter.name)
        problem = spec.refusal(parameter.name, parameter.value) if spec else ""
        if problem:
            return SetParametersResult(successful=False, reason=problem)
    return SetParametersResult(successful=True)


def qos(reliability: str, depth: int) -> QoSProfile:
    """Keep-last, volatile QoS with a reliability named as in RELIABILITY."""
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=RELIABILITY[reliability], durability=DurabilityPolicy.VOLATILE)


LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
