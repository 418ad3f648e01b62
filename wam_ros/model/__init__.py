"""wam_ros.model (torch core: never imports rclpy)."""
