"""The per-frame work around the network: images in, pipeline, rendering, occupancy, stats."""
