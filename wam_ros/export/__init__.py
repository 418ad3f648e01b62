"""wam_ros.export (torch core: never imports rclpy)."""
