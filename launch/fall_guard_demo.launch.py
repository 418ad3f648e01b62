"""ros2 launch wam_ros fall_guard_demo.launch.py [NAME:=VALUE ...]

The node graph, its arguments, parameter files and remappings live in config/bringup/fall_guard_demo.yaml, the file
that `wam bringup fall_guard_demo` also reads (no ROS 2 launch needed there); this file only turns it into launch
actions.
"""

from wam_ros.ros.launch_util import launch_description


def generate_launch_description():
    return launch_description("fall_guard_demo")
