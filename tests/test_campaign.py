"""The fall campaign runner (wam_ros/train/campaign/, `wam campaign`): resume, killed workers, Ray, report, bad input.

Every run here is a real campaign: real worker processes, real PyBullet, real SIGKILLs, a real local Ray instance.
Run: .venv/bin/pytest tests/test_campaign.py
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from wam_ros.cli import main as wam
from wam_ros.data.episode import list_episodes, read_episode
from wam_ros.sim.falls import FallConfig, FallSim, sample_params
from wam_ros.train.campaign import (
    COLUMNS,
    CampaignError,
    CampaignSpec,
    RecordSelection,
    compact,
    load_results,
    run_campaign,
)
from wam_ros.train.campaign.traces import (
    TraceLog,
    iter_traces,
    log_schema,
    shard_paths,
    trace_columns,
    trace_log_paths,
    trace_matrix,
    trace_metadata,
)

N = 48
RECORD = "0,5"
CLI = [sys.executable, "-m", "wam_ros.cli", "campaign", "falls"]


def falls_cmd(out: Path) -> list[str]:
    """`wam campaign falls` for the reference campaign (N episodes, 2 workers, RECORD) into `out`, no bar."""
    options = ["--episodes", str(N), "--workers", "2", "--no-progress", "--record", RECORD]
    return [*CLI, *options, "--out", str(out)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, list[dict]]:
    """An uninterrupted campaign of N episodes: the rows every other run must reproduce exactly."""
    out = tmp_path_factory.mktemp("ref") / "falls"
    summary = run_campaign(CampaignSpec(out=out, episodes=N, workers=2, record=RECORD), progress=False)
    assert summary.complete and summary.ran == N and summary.worker_deaths == 0
    return out, pq.read_table(out / "results.parquet").to_pylist()


def traces_of(out: Path) -> dict[int, np.ndarray]:
    """index -> (T, C) trace; fails on an index stored twice."""
    got: dict[int, np.ndarray] = {}
    for tr in iter_traces(out):
        assert tr.index not in got, f"episode {tr.index} has two traces"
        got[tr.index] = tr.data
    return got


def traces_equal(a: dict[int, np.ndarray], b: dict[int, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[i], b[i]) for i in a)


def rows_equal(a: list[dict], b: list[dict]) -> bool:
    def eq(x, y):
        return x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))

    return len(a) == len(b) and all(eq(ra[k], rb[k]) for ra, rb in zip(a, b, strict=True) for k in COLUMNS)


def log_rows(out: Path) -> dict[Path, int]:
    logs = sorted((out / "logs").glob("rows-*.jsonl")) if (out / "logs").is_dir() else []
    return {p: p.read_bytes().count(b"\n") for p in logs}


def wait_for_rows(out: Path, proc: subprocess.Popen, at_least: int, per_log: bool = False) -> dict[Path, int]:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        counts = log_rows(out)
        if (max(counts.values(), default=0) if per_log else sum(counts.values())) >= at_least:
            return counts
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.01)
    raise AssertionError(f"no {at_least} rows in {out}/logs after 90 s")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead
        return f.read().split(") ")[1][0] != "Z"


def test_reference_run_is_complete_and_records_the_chosen_episodes(reference):
    out, rows = reference
    assert [r["index"] for r in rows] == list(range(N))
    assert {r["outcome"] for r in rows} >= {"fell", "recovered"}
    assert [r["index"] for r in rows if r["recorded"]] == [0, 5]
    eps = list_episodes(out / "episodes")
    assert [p.name for p in eps] == ["episode_000000.npz", "episode_000005.npz"]
    ep = read_episode(eps[1])
    assert ep.meta["outcome"]["outcome"] == rows[5]["outcome"] and ep.frames.shape[1:] == (64, 64, 3)
    assert not list((out / "logs").glob("*.jsonl"))  # compacted


def test_every_episode_has_its_trace_exactly_as_the_sim_measured_it(reference):
    out, rows = reference
    traces = traces_of(out)
    assert sorted(traces) == list(range(N)) and not trace_log_paths(out)  # compacted: shards only
    meta = trace_metadata(out)
    assert meta["trace_hz"] == 100 and meta["robot"] == "laikago" and len(meta["joint_names"]) == 12
    table = pq.read_table(shard_paths(out)[0])
    assert table.column_names == ["index", *trace_columns(12)]
    assert table.schema.field("imu_ax").type == "float"
    with FallSim(FallConfig()) as sim:  # an independent in-process run of three of the episodes
        for i in (0, 5, 7):
            tr = sim.run_full(sample_params(0, i, sim.cfg), trace=True).trace
            assert np.array_equal(traces[i], trace_matrix(tr))
    for i, row in enumerate(rows):
        t = traces[i][:, 0]
        assert np.allclose(np.diff(t), 0.01) and t[0] == 0  # 100 Hz from the episode start
        # up to the episode's end (a fall ends it); a sample holds the last physics state (1/240 s) before it
        assert row["sim_time"] - 0.01 < t[-1] <= row["sim_time"] + 1 / 240 + 1e-6


def test_killed_worker_costs_no_row_and_no_duplicate(reference, tmp_path):
    out = tmp_path / "falls"
    proc = subprocess.Popen(falls_cmd(out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    counts = wait_for_rows(out, proc, at_least=3, per_log=True)
    victim = max(counts, key=counts.get)
    pid = int(victim.name.split("-")[1])
    os.kill(pid, signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert "worker deaths 1" in stdout, stdout
    assert "died" in stderr  # the parent logged the death and re-queued the block
    rows = pq.read_table(out / "results.parquet").to_pylist()
    assert [r["index"] for r in rows] == list(range(N))  # exactly 0..N-1, once each
    assert rows_equal(rows, reference[1])  # bit for bit what an uninterrupted run gives
    assert traces_equal(traces_of(out), traces_of(reference[0]))  # traces too: once each, identical


def test_resume_after_the_whole_run_is_killed(reference, tmp_path):
    out = tmp_path / "falls"
    cmd = falls_cmd(out)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    counts = wait_for_rows(out, proc, at_least=10)
    workers = [int(p.name.split("-")[1]) for p in counts]
    os.kill(
        proc.pid, signal.SIGKILL
    )  # only the parent: its workers must die with it (no orphan writing rows)
    proc.communicate(timeout=30)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers), "workers outlived their killed parent"
    partial = load_results(out)
    assert 10 <= partial.num_rows < N
    assert not (out / ".lock").exists() or _lock_is_free(out)  # the kernel released the dead run's lock

    again = subprocess.run(
        [c for c in cmd if c != "--no-progress"], capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr
    assert "eps/s, fall rate" in again.stderr  # the progress bar's live postfix
    assert f"({N - partial.num_rows} run now" in again.stdout, again.stdout  # only the missing ones ran
    rows = pq.read_table(out / "results.parquet").to_pylist()
    assert [r["index"] for r in rows] == list(range(N))
    assert rows_equal(rows, reference[1])
    assert [p.name for p in list_episodes(out / "episodes")] == ["episode_000000.npz", "episode_000005.npz"]
    assert traces_equal(traces_of(out), traces_of(reference[0]))

    third = subprocess.run(cmd, capture_output=True, text=True, timeout=60)  # nothing left: a no-op
    assert third.returncode == 0 and "(0 run now" in third.stdout


def _lock_is_free(out: Path) -> bool:
    fd = os.open(out / ".lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_extend_campaign_and_torn_log_line(reference, tmp_path):
    out = tmp_path / "falls"
    first = run_campaign(CampaignSpec(out=out, episodes=6, workers=1, record=RECORD), progress=False)
    assert first.ran == 6
    # a crash mid-write leaves a torn last line: it is ignored, never fatal, and its episode reruns
    torn = out / "logs" / "rows-1-torn.jsonl"
    torn.parent.mkdir(exist_ok=True)
    torn.write_bytes(b'{"index": 6, "seed": 0, "push_fo')
    # a trace log with a second copy of episode 2 (a crash between trace and row) and a torn batch for episode 6
    ref = traces_of(reference[0])
    with FallSim(FallConfig()) as sim:
        dup = sim.run_full(sample_params(0, 2, sim.cfg), trace=True).trace
        schema = log_schema(sim.profile["joint_names"], 100, "laikago")
    dup.joint_pos[:] = 99.0  # a stale copy must never replace the stored one
    bad = TraceLog(out / "traces" / "logs" / "traces-1-crash.arrows", schema)
    bad.append(2, dup)
    bad.append(6, dup)
    bad.close()
    data = bad.path.read_bytes()
    bad.path.write_bytes(data[: len(data) - 100])
    second = run_campaign(CampaignSpec(out=out, episodes=10, workers=2, record=RECORD), progress=False)
    assert second.ran == 4 and second.episodes == 10
    assert rows_equal(pq.read_table(out / "results.parquet").to_pylist(), reference[1][:10])
    assert traces_equal(traces_of(out), {i: ref[i] for i in range(10)})


def test_ray_backend_runs_the_same_campaign(reference, tmp_path):
    out = tmp_path / "falls_ray"
    spec = CampaignSpec(out=out, episodes=12, workers=2, backend="ray", block=4, record=RECORD)
    summary = run_campaign(spec, progress=False)
    assert summary.complete and summary.ran == 12
    rows = pq.read_table(out / "results.parquet").to_pylist()
    assert rows_equal(rows, reference[1][:12])
    assert [p.name for p in list_episodes(out / "episodes")] == ["episode_000000.npz", "episode_000005.npz"]
    ref = traces_of(reference[0])
    assert traces_equal(traces_of(out), {i: ref[i] for i in range(12)})  # the driver wrote the actors' traces


def test_report_writes_table_and_plots(reference, tmp_path, capsys):
    out, rows = reference
    dest = tmp_path / "report"
    assert wam(["campaign", "report", str(out), "--plots", str(dest)]) == 0
    printed = capsys.readouterr().out
    falls = sum(r["fell"] for r in rows)
    assert f"| episodes | {N} (indices 0..{N - 1}) |" in printed
    assert f"| fell | {falls} ({falls / N:.1%}) |" in printed
    assert (dest / "summary.md").read_text() in printed
    for name in ("fall_rate_vs_impulse.png", "time_to_fall_hist.png", "fall_rate_vs_friction_slope.png"):
        data = (dest / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name


def test_record_selection():
    sel = RecordSelection("0-3, 10, every:100")
    assert [i for i in range(250) if i in sel] == [0, 1, 2, 3, 10, 100, 200]
    assert not any(i in RecordSelection("") for i in range(100))
    for bad, why in (("x", "not understood"), ("5-2", "empty"), ("every:0", "K >= 1")):
        with pytest.raises(ValueError, match=why):
            RecordSelection(bad)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--episodes", "0"], "episodes must be an integer >= 1, got 0"),
        (["--episodes", "5", "--workers", "0"], "workers must be an integer in [1, 4096], got 0"),
        (["--episodes", "5", "--seed", "-3"], "seed must be an integer >= 0, got -3"),
        (["--episodes", "5", "--record", "first ten"], "--record term 'first ten' not understood"),
        (["--episodes", "5", "--ray-address", "10.0.0.1:6379"], "use backend='ray'"),
        (["--episodes", "5", "--camera-size", "4"], "camera_size must be in [8, 512], got 4"),
    ],
)
def test_bad_arguments_are_clear_errors(args, message, tmp_path, capsys):
    assert wam(["campaign", "falls", "--out", str(tmp_path / "x"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # refused before touching the disk


def test_bad_directories_are_refused(reference, tmp_path, capsys):
    out, _ = reference
    a_file = tmp_path / "file"
    a_file.write_text("not a campaign")
    assert wam(["campaign", "falls", "--episodes", "3", "--out", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert wam(["campaign", "falls", "--episodes", "3", "--out", str(other)]) == 1
    assert "not empty and holds no campaign.json" in capsys.readouterr().err
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    assert wam(["campaign", "falls", "--episodes", str(N), "--out", str(copy), "--seed", "1"]) == 1
    assert "seed: stored 0, asked 1" in capsys.readouterr().err
    assert wam(["campaign", "falls", "--episodes", str(N), "--out", str(copy), "--robot", "a1"]) == 1
    assert "fall.robot: stored 'laikago', asked 'a1'" in capsys.readouterr().err
    assert rows_equal(load_results(copy).to_pylist(), reference[1])  # refusals never touch the data
    fd = os.open(copy / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as if another campaign were running there
    try:
        with pytest.raises(CampaignError, match="another campaign is running"):
            run_campaign(CampaignSpec(out=copy, episodes=N + 2), progress=False)
    finally:
        os.close(fd)
    assert (
        wam(
            [
                "campaign",
                "falls",
                "--episodes",
                "3",
                "--out",
                str(tmp_path / "r"),
                "--backend",
                "ray",
                "--ray-address",
                "127.0.0.1:1",
            ]
        )
        == 1
    )  # nothing listens on port 1: refused at once
    assert "cannot reach the Ray cluster at '127.0.0.1:1'" in capsys.readouterr().err
    assert wam(["campaign", "report", str(tmp_path / "missing")]) == 2
    assert "no campaign in" in capsys.readouterr().err
    assert wam(["campaign"]) == 2
    assert "expected a sub-command" in capsys.readouterr().err
    compact(copy)  # idempotent on a complete campaign
    assert load_results(copy).num_rows == N
    # a campaign written before traces and standing episodes existed: its campaign.json lacks those keys
    old = json.loads((copy / "campaign.json").read_text())
    del old["traces"]
    for key in ("trace_hz", "standing_fraction", "standing_s"):
        del old["fall"][key]
    (copy / "campaign.json").write_text(json.dumps(old))
    assert wam(["campaign", "falls", "--episodes", str(N), "--out", str(copy)]) == 1
    assert "traces: stored False, asked True" in capsys.readouterr().err  # says what to change
    assert wam(["campaign", "falls", "--episodes", str(N), "--out", str(copy), "--no-traces"]) == 0
    assert "(0 run now" in capsys.readouterr().out  # it resumes under its own settings


def test_a_worker_that_keeps_crashing_stops_the_run_and_keeps_the_rows(tmp_path):
    out = tmp_path / "falls"
    run_campaign(CampaignSpec(out=out, episodes=2, workers=1), progress=False)
    (out / "episodes").write_text(
        "a file where the episode directory should be"
    )  # recording episode 3 will fail
    spec = CampaignSpec(out=out, episodes=6, workers=1, block=2, record="3", max_restarts=1)
    with pytest.raises(CampaignError, match=r"2 worker deaths \(limit 1\).*in episodes 3\.\.3"):
        run_campaign(spec, progress=False)
    assert load_results(out).column("index").to_pylist() == [0, 1, 2]  # nothing finished is lost
