"""wam_ros.sim (torch core: never imports rclpy)."""
