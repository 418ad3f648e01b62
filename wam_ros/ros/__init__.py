"""wam_ros.ros: ROS 2 nodes, message <-> numpy conversions and in-process bringup (thin adapters over the core)."""
