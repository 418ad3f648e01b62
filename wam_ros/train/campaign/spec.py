"""What a fall campaign is: its spec (CampaignSpec), the identity a rerun must match, the results table's columns.

Nothing here runs an episode or touches the disk except `read_campaign_config`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wam_ros.sim.falls import FallConfig

if TYPE_CHECKING:
    import pyarrow as pa

CAMPAIGN_VERSION = 1
RESULTS = "results.parquet"
BACKENDS = ("local", "ray")

# The results table, one row per episode (pyarrow type names; pyarrow is imported lazily: workers never need it).
COLUMN_TYPES: tuple[tuple[str, str], ...] = (
    ("index", "int64"),
    ("seed", "int64"),
    ("push_force", "float64"),
    ("push_yaw", "float64"),
    ("push_start", "float64"),
    ("push_duration", "float64"),
    ("push_impulse", "float64"),
    ("slope_deg", "float64"),
    ("slope_yaw", "float64"),
    ("friction", "float64"),
    ("mass_scale", "float64"),
    ("motor_strength", "float64"),
    ("fell", "bool_"),
    ("recovered", "bool_"),
    ("outcome", "string"),
    ("fall_time", "float64"),
    ("time_to_fall", "float64"),
    ("max_tilt_deg", "float64"),
    ("min_height", "float64"),
    ("final_tilt_deg", "float64"),
    ("final_height", "float64"),
    ("sim_time", "float64"),
    ("steps", "int64"),
    ("recorded", "bool_"),
    ("standing", "bool_"),
)
COLUMNS = tuple(name for name, _ in COLUMN_TYPES)
# Columns added after the first campaigns, with the value rows written before them hold.
ADDED_COLUMNS: dict[str, Any] = {"standing": False}
# Identity keys added after version 1, with the value a campaign.json written before them implies.
ADDED_FALL_FIELDS: dict[str, Any] = {"trace_hz": 100, "standing_fraction": 0.0, "standing_s": 10.0}


def schema() -> pa.Schema:
    import pyarrow as pa

    return pa.schema([(name, getattr(pa, kind)()) for name, kind in COLUMN_TYPES])


class CampaignError(RuntimeError):
    """The campaign cannot run as asked (bad output directory, mismatching campaign, too many worker deaths)."""


# -- which episodes to record ---------------------------------------------------------------------------------------
_RECORD_TERM = re.compile(r"^(?:(\d+)|(\d+)-(\d+)|every:(\d+))$")


@dataclass(frozen=True)
class RecordSelection:
    """Episodes to record with traces and camera frames: comma-separated `I`, `A-B` (inclusive), `every:K`.

    "" selects none (physics only, the default); "0-9,every:1000" selects 0..9 and every 1000th episode.
    """

    spec: str = ""
    ranges: tuple[tuple[int, int], ...] = field(default=(), init=False)
    every: tuple[int, ...] = field(default=(), init=False)

    def __post_init__(self) -> None:
        ranges, every = [], []
        for term in filter(None, (t.strip() for t in self.spec.split(","))):
            m = _RECORD_TERM.match(term)
            if not m:
                raise ValueError(
                    f"--record term {term!r} not understood; expected I, A-B or every:K "
                    f"(e.g. '0-9,every:1000')"
                )
            if m.group(1):
                ranges.append((int(m.group(1)), int(m.group(1))))
            elif m.group(2):
                a, b = int(m.group(2)), int(m.group(3))
                if a > b:
                    raise ValueError(f"--record range {term!r} is empty: start {a} > end {b}")
                ranges.append((a, b))
            else:
                if int(m.group(4)) < 1:
                    raise ValueError(f"--record every:K needs K >= 1, got {term!r}")
                every.append(int(m.group(4)))
        object.__setattr__(self, "ranges", tuple(ranges))
        object.__setattr__(self, "every", tuple(every))

    def __contains__(self, index: int) -> bool:
        return any(a <= index <= b for a, b in self.ranges) or any(index % k == 0 for k in self.every)


# -- the campaign's definition ----------------------------------------------------------------------------------------
@dataclass
class CampaignSpec:
    """One campaign run.

    Args:
        out: output directory (created); rerunning with the same directory resumes.
        episodes: run episodes 0..episodes-1 (a rerun with more extends the campaign).
        seed: campaign seed; episode parameters are a pure function of (seed, index, fall config).
        workers: local processes, or Ray actors.
        backend: "local" or "ray".
        ray_address: Ray cluster address (ray.init(address=...)); None starts a local instance with `workers` CPUs.
        record: which episodes to record (RecordSelection syntax).
        block: indices handed to a worker at a time (small: a dead Ray actor's block is redone).
        fall: the episode definition (robot, rates, thresholds, randomisation ranges, standing share).
        max_restarts: local worker deaths tolerated before the run stops with an error.
        traces: write every episode's IMU + joint trace (traces/, wam_ros.train.campaign.traces).
    """

    out: str | Path
    episodes: int
    seed: int = 0
    workers: int = 2
    backend: str = "local"
    ray_address: str | None = None
    record: str = ""
    block: int = 16
    fall: FallConfig = field(default_factory=FallConfig)
    max_restarts: int = 8
    traces: bool = True

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if not isinstance(self.episodes, int) or self.episodes < 1:
            raise ValueError(f"episodes must be an integer >= 1, got {self.episodes!r}")
        if self.episodes > 100_000_000:
            raise ValueError(f"episodes must be <= 100,000,000, got {self.episodes}")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {self.seed!r}")
        if not isinstance(self.workers, int) or not 1 <= self.workers <= 4096:
            raise ValueError(f"workers must be an integer in [1, 4096], got {self.workers!r}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")
        if self.ray_address and self.backend != "ray":
            raise ValueError(
                f"ray_address={self.ray_address!r} given but backend is {self.backend!r}; use backend='ray'"
            )
        if not isinstance(self.block, int) or self.block < 1:
            raise ValueError(f"block must be an integer >= 1, got {self.block!r}")
        RecordSelection(self.record)  # validates
        if self.out.exists() and not self.out.is_dir():
            raise ValueError(f"out must be a directory, but {self.out} is a file")

    def identity(self) -> dict[str, Any]:
        """What defines the episodes: a rerun in the same directory must match it."""
        ident = {
            "version": CAMPAIGN_VERSION,
            "seed": self.seed,
            "fall": self.fall.to_dict(),
            "traces": self.traces,
        }
        return json.loads(json.dumps(ident))  # as stored: tuples become lists


def upgrade_identity(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored identity with the keys added since it was written filled in with what they meant then (an old
    campaign had no traces and no standing episodes), so an old campaign resumes under the same settings."""
    if not isinstance(stored, dict):
        return stored
    up = dict(stored)
    up.setdefault("traces", False)
    if isinstance(up.get("fall"), dict):
        up["fall"] = {**ADDED_FALL_FIELDS, **up["fall"]}
    return up


@dataclass
class CampaignSummary:
    out: Path
    episodes: int  # rows in the table (0..N-1 once each when complete)
    ran: int  # episodes run by this call
    falls: int
    wall_s: float
    worker_deaths: int
    complete: bool

    @property
    def fall_rate(self) -> float:
        return self.falls / self.episodes if self.episodes else math.nan

    @property
    def eps_per_s(self) -> float:
        return self.ran / self.wall_s if self.wall_s > 0 else math.nan


def identity_diff(stored: dict, wanted: dict, prefix: str = "") -> str:
    """The first difference between a stored and a wanted identity, as `key: stored X, asked Y`."""
    for key in sorted(set(stored) | set(wanted)):
        a, b = stored.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            if a != b:
                return identity_diff(a, b, f"{prefix}{key}.")
        elif a != b:
            return f"{prefix}{key}: stored {a!r}, asked {b!r}"
    return "no difference"


def read_campaign_config(out: str | Path) -> dict[str, Any]:
    path = Path(out) / "campaign.json"
    if not path.is_file():
        raise FileNotFoundError(f"no campaign in {out}: {path} not found")
    return json.loads(path.read_text())
