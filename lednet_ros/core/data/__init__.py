"""Data: class sets, datasets, frames from videos, folders and rosbag2 files."""
