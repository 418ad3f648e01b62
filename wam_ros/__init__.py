"""wam_ros: a World Action Model for ROS 2.

The torch core (model, sim, data, train, export, runtime) never imports rclpy; `wam_ros.ros` holds the thin ROS 2 adapters.
"""

__version__ = "0.1.0"
