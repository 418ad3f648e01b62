"""`wam collect` with real worker processes and real PyBullet: scenes once per instruction, resumable, failed
episodes kept, clear errors for bad arguments."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from wam_ros.data.episode import episode_path, list_episodes, read_episode
from wam_ros.train.collect import CollectConfig, collect, episode_plan, scene_seed

WAM = [sys.executable, "-m", "wam_ros.cli"]


def wam(*args: str, timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run([*WAM, *args], capture_output=True, text=True, timeout=timeout)


def collect_args(out: Path, *switches: str, **options: object) -> list[str]:
    """`collect` with `--name value` for each keyword (underscores become dashes), the switches and `--out`."""
    words = [w for name, value in options.items() for w in (f"--{name.replace('_', '-')}", str(value))]
    return ["collect", *words, *switches, "--out", str(out)]


def test_collect_two_workers_every_scene_once_per_instruction_then_resume(tmp_path):
    out = tmp_path / "reach"
    res = wam(*collect_args(out, task="reach", episodes=6, workers=2, seed=3, image_size=32))
    assert res.returncode == 0, res.stderr
    assert "6 episodes written" in res.stdout and "expert success 6/6" in res.stdout
    assert "collect reach" in res.stderr  # the progress bar
    paths = list_episodes(out)
    assert [p.name for p in paths] == [f"episode_{i:06d}.npz" for i in range(6)]
    eps = [read_episode(p) for p in paths]
    for i, ep in enumerate(eps):
        assert ep.meta["scene_seed"] == scene_seed(3, i // 3) and ep.meta["instruction_index"] == i % 3
        assert ep.meta["episode_index"] == i and ep.success and ep.frames.shape[1:] == (32, 32, 3)
    for scene in (eps[0:3], eps[3:6]):  # one scene, three different instructions, same objects
        assert len({ep.instruction for ep in scene}) == 3
        assert all(ep.meta["scene"]["objects"] == scene[0].meta["scene"]["objects"] for ep in scene)
        assert all(ep.meta["randomisation"] == scene[0].meta["randomisation"] for ep in scene)
    assert eps[0].meta["scene"]["objects"] != eps[3].meta["scene"]["objects"]

    # resume: one episode lost, a crashed writer's temp file left behind, and two more asked for
    mtimes = {p.name: p.stat().st_mtime_ns for p in paths}
    paths[4].unlink()
    (out / ".episode_000006.npz.tmp-999").write_bytes(b"half")
    res = wam(*collect_args(out, "--quiet", task="reach", episodes=8, workers=2, seed=3, image_size=32))
    assert res.returncode == 0, res.stderr
    assert "3 episodes written" in res.stdout and "(5 already there)" in res.stdout
    now = list_episodes(out)
    assert len(now) == 8
    assert all(
        p.stat().st_mtime_ns == mtimes[p.name] for p in now if p.name in mtimes and p.name != paths[4].name
    )
    again = read_episode(out / paths[4].name)  # the refilled episode is the same episode (deterministic)
    assert (again.frames == eps[4].frames).all() and again.instruction == eps[4].instruction

    # other settings into the same directory: refused, nothing touched
    res = wam(*collect_args(out, task="reach", episodes=8, seed=4, image_size=32))
    assert res.returncode == 2 and "other settings" in res.stderr and "seed" in res.stderr
    assert json.loads((out / "collect.json").read_text())["seed"] == 3


def test_push_collection_in_process_and_failed_episodes_are_kept(tmp_path):
    summary = collect(
        CollectConfig(task="push", episodes=2, out=str(tmp_path / "push"), workers=1, seed=0, image_size=32),
        progress=False,
    )
    assert (summary.written, summary.succeeded, summary.errors) == (2, 2, [])
    ep = read_episode(episode_path(tmp_path / "push", 1))
    assert ep.task == "push" and ep.instruction.startswith("push the cube onto the")
    # a step limit too short for the expert: episodes are still written, with success=False, and counted
    summary = collect(
        CollectConfig(
            task="reach", episodes=3, out=str(tmp_path / "short"), workers=1, image_size=32, max_steps=2
        ),
        progress=False,
    )
    assert (summary.written, summary.succeeded) == (3, 0)
    eps = [read_episode(p) for p in list_episodes(tmp_path / "short")]
    assert [len(e) for e in eps] == [3, 3, 3] and not any(e.success for e in eps)


def test_scene_per_episode_plan():
    cfg = CollectConfig(task="reach", episodes=4, scene_per_episode=True)
    plans = [episode_plan(cfg, i) for i in range(4)]
    assert len({s for s, _, _ in plans}) == 4 and all(k is None for _, k, _ in plans)


@pytest.mark.parametrize(
    "args, match",
    [
        (["--task", "stack"], "unknown task 'stack'"),
        (["--episodes", "-3"], "episodes must be an int >= 0, got -3"),
        (["--workers", "0"], "workers must be an int >= 1, got 0"),
        (["--image-size", "4"], "image_size must be"),
        (["--noise", "-0.1"], "noise must be a std in [0, 0.2] rad, got -0.1"),
        (["--ray-address", "127.0.0.1:6379"], "needs --backend ray"),
        (["--backend", "ray", "--ray-address", "127.0.0.1:1"], "cannot reach the Ray cluster"),
    ],
)
def test_bad_arguments_are_clear_errors(args, match, tmp_path):
    res = wam("collect", "--out", str(tmp_path / "x"), *args, timeout=60)
    assert res.returncode == 2
    assert match in res.stderr
    assert "Traceback" not in res.stderr


def test_unwritable_output_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    res = wam("collect", "--episodes", "1", "--out", str(blocker / "sub"), timeout=60)
    assert res.returncode == 2
    assert "not writable" in res.stderr and "Traceback" not in res.stderr


def _worker_pids(parent: int) -> list[int]:
    """Spawned pool workers of `parent` (not the multiprocessing resource tracker)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    pids = []
    for pid in map(int, children):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except FileNotFoundError:
            continue
        if "spawn_main" in cmd and "resource_tracker" not in cmd:
            pids.append(pid)
    return pids


def test_a_killed_worker_stops_the_run_cleanly_and_a_rerun_completes(tmp_path):
    out = tmp_path / "reach"
    args = collect_args(out, "--quiet", task="reach", episodes=24, workers=2, image_size=32)
    proc = subprocess.Popen([*WAM, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (out.is_dir() and len(list_episodes(out)) >= 2):
            time.sleep(0.02)
        workers = _worker_pids(proc.pid)
        assert workers, "no worker processes found"
        os.kill(workers[0], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, stdout + stderr
    assert "worker process died" in stderr and "re-run" in stderr
    done = list_episodes(out)
    assert 2 <= len(done) < 24
    for p in done:  # everything listed is a complete episode
        read_episode(p)
    res = wam(*args)
    assert res.returncode == 0, res.stderr
    assert len(list_episodes(out)) == 24


def _alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def test_a_sigkilled_collect_leaves_no_worker_running(tmp_path):
    """SIGKILL gives the parent no chance to stop its pool: the workers must go by themselves (PR_SET_PDEATHSIG)."""
    out = tmp_path / "reach"
    args = [*WAM, *collect_args(out, "--quiet", task="reach", episodes=40, workers=2, image_size=32)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and not (out.is_dir() and len(list_episodes(out)) >= 2):
            time.sleep(0.05)
        workers = _worker_pids(proc.pid)
        assert len(workers) == 2, f"expected 2 pool workers, found {workers}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and any(map(_alive, workers)):
            time.sleep(0.05)
        left = [pid for pid in workers if _alive(pid)]
        assert not left, f"workers {left} outlived their SIGKILLed parent"
    finally:
        for pid in workers:  # never leave them behind, whatever the outcome
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
    assert len(list_episodes(out)) < 40  # it really was killed mid-run
    for path in list_episodes(out):  # and what it wrote is complete
        read_episode(path)


def test_die_with_parent_in_a_process_whose_parent_is_gone_exits():
    """The race the prctl cannot cover: the parent died before the worker asked. The worker exits at once."""
    code = "from wam_ros.train.workers import die_with_parent; die_with_parent(1); print('still here')"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert res.returncode == 1 and "still here" not in res.stdout


def test_foreign_episodes_in_the_output_directory_are_not_mixed_in(tmp_path):
    (tmp_path / "episode_000000.npz").write_bytes(b"someone else's")
    res = wam("collect", "--episodes", "2", "--out", str(tmp_path), timeout=60)
    assert res.returncode == 2 and "did not make" in res.stderr
    assert (tmp_path / "episode_000000.npz").read_bytes() == b"someone else's"


def test_dart_noise_collection_labels_the_clean_expert_and_resumes_only_with_the_same_noise(tmp_path):
    out = tmp_path / "dart"
    summary = collect(
        CollectConfig(task="push", episodes=2, out=str(out), workers=1, seed=0, image_size=32, noise=0.02),
        progress=False,
    )
    assert (summary.written, summary.errors) == (2, [])
    ep = read_episode(episode_path(out, 0))
    assert ep.meta["action_noise_std"] == 0.02 and "executed_actions" in ep.extra
    executed = ep.extra["executed_actions"]
    assert executed.shape == ep.actions.shape
    # the env ran perturbed targets while the labels are the expert's clean ones: they differ on the arm joints by
    # about the noise std, and the gripper (never perturbed) is identical
    diff = np.abs(executed[:-1, :7] - ep.actions[:-1, :7])
    assert 0.005 < diff.mean() < 0.05
    assert np.array_equal(executed[:, 7], ep.actions[:, 7])
    # the perturbed run is what the frames show: the recorded joints follow the executed targets, not the labels
    # (checked on a step where the two differ most)
    t = int(diff.max(1).argmax())
    assert (
        np.abs(ep.joint_pos[t + 1, :7] - executed[t, :7]).max()
        < np.abs(ep.joint_pos[t + 1, :7] - ep.actions[t, :7]).max() + 0.05
    )
    # same settings resume; another noise level is refused (it would mix two data distributions in one directory)
    res = wam(
        *collect_args(out, task="push", episodes=2, seed=0, image_size=32, noise=0.05, workers=1), timeout=120
    )
    assert res.returncode == 2 and "other settings" in res.stderr and "noise" in res.stderr
    # a clean collection records the applied actions and no executed_actions
    collect(
        CollectConfig(task="push", episodes=1, out=str(tmp_path / "clean"), workers=1, seed=0, image_size=32),
        progress=False,
    )
    clean = read_episode(episode_path(tmp_path / "clean", 0))
    assert clean.meta["action_noise_std"] == 0.0 and "executed_actions" not in clean.extra


MODEL = Path(__file__).resolve().parent.parent / "models" / "panda_tabletop"


# one 10-step push episode (too short to finish), DAgger with the shipped model
DAGGER = dict(task="push", episodes=1, seed=4, image_size=32, max_steps=10, workers=1, dagger=str(MODEL))


def test_dagger_collection_the_model_drives_the_expert_labels_and_failures_are_trained_on(tmp_path):
    from wam_ros.runtime.policy import load_policy
    from wam_ros.train.batches import load_episodes

    out = tmp_path / "dagger"
    summary = collect(CollectConfig(**DAGGER, out=str(out), beta=0.0), progress=False)
    assert (summary.written, summary.errors) == (1, [])
    ep = read_episode(episode_path(out, 0))
    assert ep.meta["dagger"] == {
        "model": str(MODEL),
        "beta": 0.0,
        "replan": 4,
        "expert_steps": 0,
        "steps": 10,
    }
    executed = ep.extra["executed_actions"]
    # beta 0: every executed target is the model's; its first chunk is what predict() gives on the first frame
    # (repeated K times, as in closed loop) and joint state, clamped by the env like any command
    policy = load_policy(MODEL, backend="torch", threads=1)
    chunk = policy.predict(
        {
            "images": [ep.frames[0]] * policy.spec.k_frames,
            "joint_pos": ep.joint_pos[0],
            "instruction": ep.instruction,
        }
    )["action"]
    assert np.allclose(executed[:4], chunk[:4], atol=2e-3)
    # ... while the labels are the scripted expert's, which drives differently from the model
    assert np.abs(executed[:-1] - ep.actions[:-1]).max() > 1e-3
    assert not ep.success  # 10 steps cannot finish a push, yet the episode is trained on
    assert len(load_episodes([out])) == 1
    # beta 1: the expert executes every step, so executed targets and labels coincide
    full = collect(CollectConfig(**DAGGER, out=str(tmp_path / "beta1"), beta=1.0), progress=False)
    assert full.errors == []
    ep1 = read_episode(episode_path(tmp_path / "beta1", 0))
    assert ep1.meta["dagger"]["expert_steps"] == 10
    assert np.allclose(ep1.extra["executed_actions"], ep1.actions, atol=1e-6)
    # resuming with another beta is refused; a missing model is a clear error
    res = wam(*collect_args(out, **DAGGER, beta=0.5), timeout=120)
    assert res.returncode == 2 and "other settings" in res.stderr and "beta" in res.stderr
    res = wam(*collect_args(tmp_path / "x", task="push", episodes=1, dagger=tmp_path / "nope"), timeout=60)
    assert res.returncode == 2 and "does not exist" in res.stderr


def _same_episode(a, b) -> bool:
    arrays = ("frames", "joint_pos", "joint_vel", "actions", "timestamps")
    return (
        all(np.array_equal(getattr(a, k), getattr(b, k)) for k in arrays)
        and a.meta == b.meta
        and a.extra.keys() == b.extra.keys()
        and all(np.array_equal(a.extra[k], b.extra[k]) for k in a.extra)
    )


def test_ray_backend_writes_the_same_resumable_collection(tmp_path):
    """A local Ray instance (2 actors) writes the very episodes the local backend writes, and the two resume each
    other's directories."""
    common = dict(task="reach", seed=2, image_size=32, noise=0.02)
    local, remote = tmp_path / "local", tmp_path / "ray"
    summary = collect(CollectConfig(episodes=4, out=str(local), workers=1, **common), progress=False)
    assert (summary.written, summary.errors) == (4, [])
    summary = collect(
        CollectConfig(episodes=4, out=str(remote), workers=2, backend="ray", **common), progress=False
    )
    assert (summary.written, summary.succeeded, summary.errors) == (4, 4, [])
    assert (local / "collect.json").read_text() == (remote / "collect.json").read_text()
    for a, b in zip(list_episodes(local), list_episodes(remote), strict=True):
        assert a.name == b.name and _same_episode(read_episode(a), read_episode(b)), a.name

    episode_path(
        remote, 1
    ).unlink()  # lost; then the local backend fills it in, and Ray extends the collection
    summary = collect(CollectConfig(episodes=4, out=str(remote), workers=1, **common), progress=False)
    assert (summary.present_before, summary.written) == (3, 1)
    assert _same_episode(read_episode(episode_path(remote, 1)), read_episode(episode_path(local, 1)))
    summary = collect(
        CollectConfig(episodes=6, out=str(remote), workers=2, backend="ray", **common), progress=False
    )
    assert (summary.present_before, summary.written, summary.errors) == (4, 2, [])
    assert [read_episode(p).meta["episode_index"] for p in list_episodes(remote)] == list(range(6))
    with pytest.raises(ValueError, match="other settings"):  # the resume check is the backend's too
        collect(
            CollectConfig(episodes=6, out=str(remote), backend="ray", task="reach", seed=3, image_size=32)
        )
