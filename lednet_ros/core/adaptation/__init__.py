"""Adapting weights to a new camera from unlabelled frames: offline methods and the live stream."""
