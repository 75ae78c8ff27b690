"""Ground maps (core.ground.mapping) as nav_msgs/OccupancyGrid and sensor_msgs/PointCloud2.

Both copy the given header (frame: the base frame the grid and points are in, stamp: the image's).
"""

from __future__ import annotations

import sys
from array import array

import numpy as np
from nav_msgs.msg import OccupancyGrid
from sensor_msgs.msg import PointCloud2, PointField
from std_msgs.msg import Header

# numpy dtype -> PointField datatype
_POINT_FIELD_TYPES = {
    np.dtype(np.int8): PointField.INT8, np.dtype(np.uint8): PointField.UINT8,
    np.dtype(np.int16): PointField.INT16, np.dtype(np.uint16): PointField.UINT16,
    np.dtype(np.int32): PointField.INT32, np.dtype(np.uint32): PointField.UINT32,
    np.dtype(np.float32): PointField.FLOAT32, np.dtype(np.float64): PointField.FLOAT64,
}


def occupancy_grid_message(grid: np.ndarray, resolution: float, origin_xy, header: Header
                           ) -> OccupancyGrid:
    """Return an OccupancyGrid of an int8 ``grid[row, col]`` (rows along y, columns along x).

    The origin (the corner of cell (0, 0)) is ``origin_xy`` in the header's frame, unrotated.

    Raises:
        ValueError: a grid that is not 2-D int8 with values in -1..100, or a bad resolution.
    """
    if grid.ndim != 2 or grid.dtype != np.int8:
        raise ValueError(f"grid of shape {grid.shape} and dtype {grid.dtype}; expected a 2-D "
                         "int8 array")
    if grid.size and (grid.min() < -1 or grid.max() > 100):
        raise ValueError(f"grid values span {grid.min()}..{grid.max()}; expected -1..100")
    if not resolution > 0:
        raise ValueError(f"resolution {resolution}; expected > 0 (metres per cell)")
    msg = OccupancyGrid(header=header)
    msg.info.map_load_time = header.stamp
    msg.info.resolution = float(resolution)
    msg.info.height, msg.info.width = (int(n) for n in grid.shape)
    msg.info.origin.position.x, msg.info.origin.position.y = (float(v) for v in origin_xy)
    msg.info.origin.orientation.w = 1.0
    msg.data = array("b", np.ascontiguousarray(grid).tobytes())
    return msg


def point_cloud_message(points: np.ndarray, header: Header) -> PointCloud2:
    """Return a PointCloud2 of a structured array, a PointField per field.

    A 1-D array makes an unordered cloud (height 1); an h x w array an organized one (height h,
    width w: one point per pixel of an h x w image, row by row).

    Raises:
        ValueError: an array that is not 1-D or 2-D structured, or a field type PointCloud2 lacks.
    """
    if points.dtype.names is None or points.ndim not in (1, 2):
        raise ValueError(f"points of shape {points.shape} and dtype {points.dtype}; expected a "
                         "1-D or 2-D structured array (core.ground.mapping.POINT_DTYPE)")
    fields = []
    for name in points.dtype.names:
        dtype, offset = points.dtype.fields[name][:2]
        if dtype not in _POINT_FIELD_TYPES or not dtype.isnative:
            raise ValueError(f"point field {name!r} has type {dtype.str}; expected a scalar in "
                             f"native byte order of {sorted(str(t) for t in _POINT_FIELD_TYPES)}")
        fields.append(PointField(name=name, offset=offset, count=1,
                                 datatype=_POINT_FIELD_TYPES[dtype]))
    # dense: no NaN or inf coordinate (a packed "rgb" float is no coordinate)
    dense = all(np.isfinite(points[name]).all() for name in ("x", "y", "z")
                if name in points.dtype.names)
    height, width = points.shape if points.ndim == 2 else (1, len(points))
    return PointCloud2(
        header=header, height=height, width=width, fields=fields,
        is_bigendian=sys.byteorder == "big", point_step=points.dtype.itemsize,
        row_step=points.dtype.itemsize * width, is_dense=bool(dense),
        data=np.ascontiguousarray(points).tobytes(),
    )
