"""LeRobot datasets (format v3.0) in and out: `export_lerobot` writes episodes as one, `import_lerobot` reads one
(ours or the community's) back into episodes. Layout and conventions: layout.py and docs/lerobot.md.

    info = export_lerobot(list_episodes("data/teleop"), "data/teleop_lerobot", ExportConfig())
    summary = import_lerobot("data/some_lerobot_dataset", "data/imported", ImportConfig(robot="panda"))
"""

from wam_ros.data.lerobot.export import ExportConfig, export_lerobot
from wam_ros.data.lerobot.importer import ImportConfig, LeRobotError, import_lerobot

__all__ = ["ExportConfig", "ImportConfig", "LeRobotError", "export_lerobot", "import_lerobot"]
