"""Where things are on the ground: camera geometry, class groups, grids, costmap, point clouds."""
