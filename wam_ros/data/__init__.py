"""wam_ros.data (torch core: never imports rclpy)."""
