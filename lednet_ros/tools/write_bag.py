r"""Write a rosbag2 (mcap or sqlite3) of camera frames and ground-truth labels (core.data.bags).

    python -m lednet_ros.tools.write_bag --dataset camvid --data-path ../shared/data/camvid \
        --split test --out camvid_test_bag --rate 2
    python -m lednet_ros.tools.write_bag --images frames/ --labels labels/ --out my_bag \
        --storage sqlite3
    python -m lednet_ros.tools.write_bag --video street.avi --out street_bag --limit 100

sensor_msgs/Image rgb8 on /camera/image_raw, sensor_msgs/CameraInfo on /camera/camera_info and,
where labels exist, mono8 class ids on /ground_truth/labels, all three with the same header
stamp: a bag `ros2 bag play` replays. No ROS install needed.
"""

from __future__ import annotations

import argparse
import sys
from itertools import islice
from pathlib import Path

from lednet_ros.core.data.bags import (
    STORAGES, BagError, dataset_frames, folder_frames, video_frames, write_bag,
)
from lednet_ros.core.data.datasets import DATASETS, DatasetError
from lednet_ros.core.data.frame_sources import FrameReadError


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--dataset", choices=sorted(DATASETS),
                        help="a dataset layout (with --data-path and --split)")
    source.add_argument("--images", type=Path, help="a folder of images (see --labels)")
    source.add_argument("--video", type=Path, help="a video file (no ground truth)")
    parser.add_argument("--data-path", type=Path)
    parser.add_argument("--split", default="test")
    parser.add_argument("--labels", type=Path,
                        help="with --images: a folder of <image stem>.png class-id labels")
    parser.add_argument("--out", type=Path, required=True, help="the bag folder to create")
    parser.add_argument("--storage", choices=STORAGES, default="mcap")
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second of stamps")
    parser.add_argument("--limit", type=int, default=0, help="at most this many frames (0: all)")
    args = parser.parse_args(argv)
    try:
        if args.dataset:
            if args.data_path is None:
                parser.error("--dataset needs --data-path")
            frames = dataset_frames(args.dataset, args.data_path, args.split)
        elif args.images:
            frames = folder_frames(args.images, args.labels)
        else:
            frames = video_frames(args.video)
        count = write_bag(args.out, islice(frames, args.limit or None), storage=args.storage,
                          rate_hz=args.rate)
    except (BagError, DatasetError, FrameReadError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {count} frames to {args.out} ({args.storage})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
