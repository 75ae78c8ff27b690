"""Scoring: the one confusion-matrix/mIoU implementation, evaluations and their reports."""
