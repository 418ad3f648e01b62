"""`run_campaign(spec)`: claim the directory, fold an interrupted run's logs in, run what is missing, compact.

Resume = every index in results.parquet or any log is done; only the others run. Episodes are deterministic, so a
rerun row equals a lost one bit for bit.
"""

from __future__ import annotations

import time

from wam_ros.train.campaign.local import run_local
from wam_ros.train.campaign.spec import RESULTS, CampaignError, CampaignSpec, CampaignSummary
from wam_ros.train.campaign.storage import claim, compact
from wam_ros.train.campaign.traces import compact_traces


def run_campaign(spec: CampaignSpec, progress: bool = True) -> CampaignSummary:
    """Run (or resume) the campaign; returns when every episode 0..episodes-1 has a row. Ctrl-C stops cleanly."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    with claim(spec):
        compact(spec.out)  # fold logs of an interrupted run into the table: resume = indices in it
        compact_traces(spec.out)
        done = set(pq.read_table(spec.out / RESULTS, columns=["index"]).column("index").to_pylist())
        pending = [i for i in range(spec.episodes) if i not in done]
        prior = sum(1 for i in done if i < spec.episodes)
        prior_falls = _count_falls(spec, spec.episodes)
        bar = _Bar(spec.episodes, prior, prior_falls, enabled=progress)
        t0 = time.perf_counter()
        deaths = 0
        try:
            if pending:
                if spec.backend == "local":
                    deaths = run_local(spec, pending, bar.update)
                else:
                    from wam_ros.train.campaign.ray_runner import run_ray

                    deaths = run_ray(spec, pending, bar.update)
        finally:
            bar.close()
            wall = time.perf_counter() - t0
            table = compact(spec.out)
            compact_traces(spec.out)
        in_range = table.filter(pc.less(table.column("index"), spec.episodes))
        falls = int(pc.sum(in_range.column("fell").cast(pa.int64())).as_py() or 0)
        complete = in_range.num_rows == spec.episodes
        if not complete:
            raise CampaignError(
                f"campaign incomplete: {in_range.num_rows} of {spec.episodes} episodes have a row; "
                f"rerun the same command to continue"
            )
        return CampaignSummary(spec.out, in_range.num_rows, bar.ran, falls, wall, deaths, complete)


def _count_falls(spec: CampaignSpec, n: int) -> int:
    import pyarrow.parquet as pq

    t = pq.read_table(spec.out / RESULTS, columns=["index", "fell"])
    return sum(
        1
        for i, f in zip(t.column("index").to_pylist(), t.column("fell").to_pylist(), strict=True)
        if f and i < n
    )


class _Bar:
    """tqdm progress with live episodes/s (this run) and the fall rate (whole campaign)."""

    def __init__(self, total: int, done: int, falls: int, enabled: bool) -> None:
        from tqdm import tqdm

        self.falls, self.seen, self.ran = falls, done, 0
        self.t0 = time.perf_counter()
        self.bar = tqdm(
            total=total,
            initial=done,
            unit="ep",
            desc="falls",
            disable=not enabled,
            mininterval=0.5,
            smoothing=0.05,
            dynamic_ncols=True,
        )
        self.last = 0.0

    def update(self, index: int, fell: bool) -> None:
        self.ran += 1
        self.seen += 1
        self.falls += bool(fell)
        self.bar.update(1)
        now = time.perf_counter()
        if now - self.last > 0.5:
            self.last = now
            rate = self.ran / max(now - self.t0, 1e-9)
            self.bar.set_postfix_str(
                f"{rate:.1f} eps/s, fall rate {self.falls / self.seen:.1%}", refresh=False
            )

    def close(self) -> None:
        self.bar.close()
