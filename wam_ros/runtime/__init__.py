"""wam_ros.runtime (torch core: never imports rclpy)."""
