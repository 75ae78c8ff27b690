"""The ROS-free core: inference, runtime, ground, data, evaluation, adaptation (no ROS import)."""
