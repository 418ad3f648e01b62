"""ros2 launch wam_ros sim_demo.launch.py [NAME:=VALUE ...]

The node graph, its arguments, parameter files and remappings live in config/bringup/sim_demo.yaml, the file that
`wam bringup sim_demo` also reads (no ROS 2 launch needed there); this file only turns it into launch actions.
"""

from wam_ros.ros.launch_util import launch_description


def generate_launch_description():
    return launch_description("sim_demo")
