"""ros2 launch wam_ros teleop_record.launch.py [task:="reach the red target" operator:=me output_dir:=bags/teleop]

Sim robot + teleop + recorder. The node graph, its arguments, parameter files and remappings live in
config/bringup/teleop_record.yaml, the file `wam bringup teleop_record` also reads; this file only turns it into
launch actions. Episode control: `ros2 service call /recorder/start std_srvs/srv/Trigger` (stop_success,
stop_failure, discard) or keys r / y / n / x in the terminal.
"""

from wam_ros.ros.launch_util import launch_description


def generate_launch_description():
    return launch_description("teleop_record")
