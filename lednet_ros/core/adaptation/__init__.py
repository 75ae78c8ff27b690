"""Adapting weights to a new camera from unlabelled frames: offline methods and the live stream."""

# Named here, where torch is not imported (the node's parameters and ~/adapt read them).
METHODS = ("bn", "entropy", "self-training")  # core.adaptation.methods
DEFAULT_METHOD = "entropy"  # chosen in docs/weights.md (the tool's and the node's default)
# The decoder's global branch normalises one pooled value per frame: a batch needs two frames.
MIN_FRAMES = 2
