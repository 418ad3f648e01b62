"""wam_ros.teleop: teleoperation core (joint / Cartesian jog, Joy mapping, keyboard) — pure numpy + pybullet, no rclpy."""
