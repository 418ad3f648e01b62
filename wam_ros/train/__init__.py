"""wam_ros.train (torch core: never imports rclpy)."""
