"""The fall campaign runner: N fall episodes over local worker processes or a Ray cluster, resumable, loss-free.

    >>> spec = CampaignSpec(out="runs/falls", episodes=100_000, seed=0, workers=2)
    >>> summary = run_campaign(spec)          # or `wam campaign falls --episodes 100000 --workers 2 --out runs/falls`
    >>> table = load_results("runs/falls")    # pyarrow.Table, one row per episode, sorted by `index`

Split along its seams: `spec` (CampaignSpec, the identity a rerun must match, the table's columns), `storage` (row
logs, compaction, load_results, the directory lock), `episodes` (one episode -> row + episode format), `local` (the
process runner), `ray_runner` (the Ray runner), `runner` (run_campaign), `report` (summary + plots). The episode
itself (robot, push, fall detection) is the environment wam_ros.sim.falls.

Durability: a worker writes each finished episode's row with one `write()` to its own O_APPEND log, after any
recorded episode file (atomic) is in place. A killed process loses only the episode it was running.

Never imports rclpy.
"""

from wam_ros.train.campaign.runner import run_campaign
from wam_ros.train.campaign.spec import (
    BACKENDS,
    CAMPAIGN_VERSION,
    COLUMNS,
    RESULTS,
    CampaignError,
    CampaignSpec,
    CampaignSummary,
    RecordSelection,
    read_campaign_config,
)
from wam_ros.train.campaign.storage import compact, load_results

__all__ = [
    "BACKENDS",
    "CAMPAIGN_VERSION",
    "COLUMNS",
    "RESULTS",
    "CampaignError",
    "CampaignSpec",
    "CampaignSummary",
    "RecordSelection",
    "compact",
    "load_results",
    "read_campaign_config",
    "run_campaign",
]
