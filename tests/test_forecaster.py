"""The fall forecaster end to end on real campaigns (tiny ones): traces -> training -> ONNX -> onnxruntime runtime ->
evaluation beside the baselines -> report plots; the alarm metrics on hand-made episodes; damaged model folders.

Run: .venv/bin/pytest tests/test_forecaster.py
"""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch

from wam_ros.cli import main as wam
from wam_ros.model.forecaster import FallForecaster, ForecasterConfig, features, input_columns
from wam_ros.runtime.fall_forecaster import (
    ONNX_FILE,
    SPEC_FILE,
    AlarmRule,
    AlarmState,
    FallForecasterRuntime,
    ForecasterError,
    debounced,
)
from wam_ros.sim.falls import FallConfig
from wam_ros.train.campaign import CampaignSpec, run_campaign
from wam_ros.train.forecaster_data import FallData, load_fall_data, mirror_map
from wam_ros.train.forecaster_eval import alarm_metrics, auroc, tune_for_recall

FALL = FallConfig(standing_fraction=0.2, standing_s=2.0)


@pytest.fixture(scope="module")
def campaigns(tmp_path_factory):
    """A training campaign (seed 0) and an evaluation campaign (seed 1), 60 episodes each, with traces."""
    root = tmp_path_factory.mktemp("fc")
    for seed in (0, 1):
        run_campaign(
            CampaignSpec(out=root / f"s{seed}", episodes=60, seed=seed, workers=2, fall=FALL), progress=False
        )
    return root / "s0", root / "s1"


@pytest.fixture(scope="module")
def model(campaigns, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "fall_forecaster_test"
    code = wam(
        [
            "campaign",
            "train-forecaster",
            "--campaign",
            str(campaigns[0]),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--threads",
            "1",
            "--target-recall",
            "0.9",
        ]
    )
    assert code == 0
    return out


def test_data_labels_windows_and_episode_split(campaigns):
    data = load_fall_data(campaigns[0])
    assert data.episodes == 60 and data.standing.sum() >= 5 and data.fell.sum() >= 5
    assert data.x.shape == (data.samples, 46) and data.joint_names[0] == "FR_hip_motor_2_chassis_joint"
    y05, y1, ttf = data.labels()
    e = data.ep
    before_push = data.t < data.push_start[e] - 1e-6
    assert not y1[before_push].any()  # the push is not observed: nothing before it is a positive
    assert not y1[data.standing[e]].any() and not y1[~data.fell[e]].any()
    pos = data.fell[e] & ~before_push & (data.fall_time[e] - data.t <= 1.0)
    assert np.array_equal(y1.astype(bool), pos) and np.all(y05 <= y1)
    assert np.allclose(ttf[pos], np.minimum(data.fall_time[e][pos] - data.t[pos], 2.0))
    # a window ending at an episode's 3rd sample: the first sample repeated before it, never another episode's
    k = data.start[5] + 2
    w = data.windows(np.array([k]), 50)[0]
    assert np.array_equal(w[-3:], data.x[k - 2 : k + 1]) and np.array_equal(
        w[:-3], np.repeat(data.x[k - 2 : k - 1], 47, 0)
    )
    train, val = data.split(0.2, seed=3)
    assert set(train.index).isdisjoint(val.index) and train.episodes + val.episodes == 60
    assert np.array_equal(
        val.x[val.start[0] : val.start[0] + val.length[0]],
        data.x[data.start[data.index == val.index[0]][0] :][: val.length[0]],
    )


def test_mirror_map_turns_a_pybullet_episode_into_its_mirrored_twin():
    """The training augmentation's mirror is physics: laikago pushed towards yaw a on a slope falling towards b,
    mirrored, reads as the same robot pushed towards pi - a on a slope falling towards pi - b (PyBullet, both run)."""
    import dataclasses

    from wam_ros.model.forecaster import input_columns
    from wam_ros.sim.falls import EpisodeParams, FallSim

    def readings(sim, p):
        tr = sim.run_full(p, trace=True).trace
        return np.concatenate(
            [
                tr.orientation,
                tr.angular_velocity,
                tr.linear_acceleration,
                tr.joint_pos,
                tr.joint_vel,
                tr.joint_effort,
            ],
            axis=1,
        )

    a = EpisodeParams(0, 0, 250.0, 0.7, 0.3, 0.15, 5.0, 0.3, 0.8, 1.0, 1.0)
    b = dataclasses.replace(a, push_yaw=math.pi - 0.7, slope_yaw=math.pi - 0.3)
    with FallSim(FallConfig()) as sim:
        names = [sim.client.getJointInfo(sim.robot, j)[1].decode() for j in sim.spec.motor_joints]
        xa, xb = readings(sim, a), readings(sim, b)
    assert xa.shape[1] == len(input_columns(12)) and len(xa) == len(xb)
    perm, sign = mirror_map("laikago", names)
    assert sorted(perm) == list(range(46))
    err = np.abs(xa[:, perm] * sign - xb).max(0)
    # per kind of reading (quaternion, gyro, accelerometer, joint positions, velocities, torques): the error against
    # how far that reading moves in the episode (the model's asymmetries leave a few %)
    for lo, hi, tol in (
        (0, 4, 0.05),
        (4, 7, 0.1),
        (7, 10, 0.1),
        (10, 22, 0.02),
        (22, 34, 0.1),
        (34, 46, 0.1),
    ):
        moved = np.abs(xa[:, lo:hi] - xa[:1, lo:hi]).max()
        assert err[lo:hi].max() <= tol * moved, (lo, hi, err[lo:hi].max(), moved)
    # the mirror without the joint swap (or with a flipped abduction) is far off: the check can fail
    flipped = sign.copy()
    flipped[10::3] *= -1  # abduction position, velocity and torque the other way round
    unswapped = np.r_[perm[:10], np.arange(10, 46)]
    for p, s in ((perm, flipped), (unswapped, sign)):
        assert np.abs(xa[:, p] * s - xb)[:, 22:].max() > 10 * err[22:].max()
    assert mirror_map("a1", names) is None  # not checked for the a1: no augmentation rather than a wrong one
    with pytest.raises(ValueError, match="no mirrored partner"):
        mirror_map("laikago", ["FR_a", "FL_a", "RR_a", "XX_a", "FR_b", "FL_b"])


def _episodes(lengths, fell, fall_time, push_start, standing) -> FallData:
    lengths = np.asarray(lengths)
    n = int(lengths.sum())
    start = np.r_[0, np.cumsum(lengths)[:-1]]
    t = np.concatenate([np.arange(k) / 100 for k in lengths]).astype(np.float32)
    return FallData(
        x=np.zeros((n, 46), np.float32),
        t=t,
        ep=np.repeat(np.arange(len(lengths)), lengths),
        start=start,
        length=lengths,
        index=np.arange(len(lengths)),
        fell=np.asarray(fell),
        fall_time=np.asarray(fall_time, np.float32),
        push_start=np.asarray(push_start, np.float32),
        push_end=np.asarray(push_start, np.float32) + 0.1,
        push_impulse=np.arange(len(lengths), dtype=np.float32),
        standing=np.asarray(standing),
        outcome=np.array(["x"] * len(lengths)),
        rate_hz=100.0,
    )


def test_alarm_metrics_count_what_they_say_on_hand_made_episodes():
    # ep0 falls at 1.0 s (push 0.5 s); ep1 recovers; ep2 stands 10 s; ep3 falls at 0.8 s
    data = _episodes(
        [100, 100, 1000, 80],
        [True, False, False, True],
        [1.0, np.inf, np.inf, 0.8],
        [0.5, 0.5, 0.5, 0.3],
        [False, False, True, False],
    )
    s = np.zeros(data.samples)
    s[data.start[0] + 60 : data.start[0] + 100] = 0.9  # alarm from 0.60 s: lead 0.40 s
    s[data.start[1] + 55 : data.start[1] + 58] = 0.9  # a recovered push with an alarm
    s[data.start[2] + 100 : data.start[2] + 101] = 0.9  # one sample: a debounce of 2 suppresses it
    s[data.start[2] + 500 : data.start[2] + 510] = 0.9  # a standing false alarm
    s[data.start[3] + 10 : data.start[3] + 20] = 0.9  # before the push: standing time, not a forecast
    s[data.start[3] + 70 : data.start[3] + 80] = 0.9  # lead 0.10 s
    m = alarm_metrics(data, s, AlarmRule(0.5, consecutive=2))
    assert m["recall"] == 1.0 and m["falls"] == 2
    assert sorted(np.round(m["_lead"], 3)) == [
        0.09,
        0.39,
    ]  # the 2nd sample above threshold raises a 2-sample alarm
    assert m["recovered_alarm_rate"] == 1.0 and m["recovered_episodes"] == 1
    assert m["false_alarms"] == 2  # the standing one + the pre-push one of ep3
    standing_s = (1000 + 50 + 50 + 30) / 100
    assert m["false_alarms_per_10min"] == pytest.approx(2 / standing_s * 600)
    one = alarm_metrics(data, s, AlarmRule(0.5, consecutive=1))
    assert one["false_alarms"] == 3 and sorted(np.round(one["_lead"], 3)) == [0.1, 0.4]
    rule = tune_for_recall(data, s, recall=1.0, consecutive=1)
    assert rule.threshold == pytest.approx(0.9)
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == 0.75


def test_streaming_alarm_equals_the_batch_rule():
    rng = np.random.default_rng(1)
    for k in (1, 2, 3, 5):
        lengths = rng.integers(1, 30, size=8)
        starts = np.r_[0, np.cumsum(lengths)[:-1]]
        score = rng.random(lengths.sum())
        batch = debounced(score, starts, k) >= 0.5
        stream = []
        for a, n in zip(starts, lengths, strict=True):
            st = AlarmState(AlarmRule(0.5, k))
            stream += [st.update(v) for v in score[a : a + n]]
        assert np.array_equal(batch, np.array(stream))


def test_features_and_folded_normalisation_are_exact():
    torch.manual_seed(0)
    net = FallForecaster(ForecasterConfig()).eval()  # eval: no dropout
    net.set_normalisation(torch.randn(45), torch.rand(45) + 0.5)
    q = torch.randn(4, 50, 4)
    q = q / q.norm(dim=-1, keepdim=True)
    x = torch.cat([q, torch.randn(4, 50, 42)], -1)
    qx, qy, qz, qw = q.unbind(-1)
    up = torch.stack([2 * (qx * qz - qy * qw), 2 * (qy * qz + qx * qw), 1 - 2 * (qx * qx + qy * qy)], -1)
    assert torch.allclose(features(x)[..., :3], up, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(net.logits(x), net.folded().logits(x), atol=1e-5)
    assert len(input_columns(12)) == 46 and input_columns(12)[:4] == ["imu_qx", "imu_qy", "imu_qz", "imu_qw"]


def test_trained_model_folder_runs_on_onnxruntime_without_torch(model, campaigns):
    spec = json.loads((model / SPEC_FILE).read_text())
    assert spec["onnx_parity_max_abs"] <= 1e-4 and spec["window"] == 50 and spec["rate_hz"] == 100
    assert set(spec["baselines"]) == {"tilt", "tilt_rate"} and (model / ONNX_FILE).stat().st_size < 10e6
    fc = FallForecasterRuntime.load(model)
    data = load_fall_data(campaigns[1])
    pos = np.arange(0, data.samples, 37)
    p05, p1, ttf = fc.predict(data.windows(pos, 50))
    assert np.all((p1 >= 0) & (p1 <= 1)) and np.all((ttf >= 0) & (ttf <= 2.0))
    # the stream (ring buffer, batch 1) gives what the batch gives on the same windows
    ep = 3
    stream = fc.stream()
    a = data.start[ep]
    got = [stream.push(data.x[k]).p_fall_1s for k in range(a, a + data.length[ep])]
    want = fc.predict(data.windows(np.arange(a, a + data.length[ep]), 50))[1]
    assert np.allclose(got, want, atol=1e-6)
    # the runtime module works without torch in the process (what fall_guard_node needs)
    import subprocess

    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from wam_ros.runtime.fall_forecaster import FallForecasterRuntime\n"
        f"fc = FallForecasterRuntime.load({str(model)!r}); import numpy as np\n"
        "print(fc.stream().push(np.r_[0, 0, 0, 1, [0] * 42].astype(np.float32)).p_fall_1s)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert 0.0 <= float(out.stdout.strip()) <= 1.0


def test_training_options_mirror_early_weight_and_auxiliary_head(campaigns, tmp_path):
    """The options tried for a longer lead: they train, the auxiliary head stays out of the exported graph (same
    parameters and outputs as without it), and the weights single out the first early_s after each push."""
    import onnx

    from wam_ros.export.forecaster_onnx import export_forecaster
    from wam_ros.train.forecaster import ForecasterTrainConfig, _aux_targets, _weights, train_forecaster

    cfg = ForecasterTrainConfig(
        campaigns[0], mirror=True, early_weight=2.0, aux_weight=0.3, max_epochs=1, threads=1, eval_every=20
    )
    result = train_forecaster(cfg, progress=False)
    assert result.data["mirrored"] and result.net.cfg.n_aux == 5 and result.net.aux is not None
    spec = export_forecaster(result.net, tmp_path / "m", result.rule, result.joint_names, "laikago", None, {})
    graph = onnx.load(str(tmp_path / "m" / ONNX_FILE))
    assert [o.name for o in graph.graph.output] == ["p_fall_0_5s", "p_fall_1s", "time_to_fall_s"]
    plain = FallForecaster(ForecasterConfig())
    assert (
        spec["parameters"] == sum(p.numel() for p in plain.parameters())
        and spec["onnx_parity_max_abs"] <= 1e-4
    )
    data = load_fall_data(campaigns[0])
    w = _weights(data, cfg)
    e = data.ep
    since = data.t - data.push_start[e]
    early = ~data.standing[e] & (since >= 0) & (since <= 0.3)
    assert np.all(w[early] == 3.0) and np.all(w[~early & (np.abs(since - 0.3) > 1e-3)] == 1.0)
    aux = _aux_targets(data)
    assert aux.shape == (data.samples, 5) and np.all(aux[data.standing[e], 3:] == 0)
    last = data.start + data.length - 1  # after the push: the whole impulse delivered
    pushed = ~data.standing & (data.t[last] > data.push_end)
    assert np.allclose(aux[last[pushed], 4], data.push_impulse[pushed], rtol=1e-4)


def test_damaged_or_stale_model_folders_are_refused(model, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(model, bad)
    data = bytearray((bad / ONNX_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (bad / ONNX_FILE).write_bytes(bytes(data))
    with pytest.raises(ForecasterError, match="sha256 differs"):
        FallForecasterRuntime.load(bad)
    (bad / SPEC_FILE).write_text("{not json")
    with pytest.raises(ForecasterError, match="not valid JSON"):
        FallForecasterRuntime.load(bad)
    with pytest.raises(ForecasterError, match="not found"):
        FallForecasterRuntime.load(tmp_path / "nothing")
    fc = FallForecasterRuntime.load(model)
    with pytest.raises(ValueError, match=r"windows must be \(B, 50, 46\)"):
        fc.predict(np.zeros((2, 40, 46), np.float32))


def test_eval_forecaster_and_report_on_another_seed(model, campaigns, tmp_path, capsys):
    out = tmp_path / "eval.json"
    assert (
        wam(
            [
                "campaign",
                "eval-forecaster",
                "--model",
                str(model),
                "--campaign",
                str(campaigns[1]),
                "--json",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())
    keys = ("auroc", "recall", "false_alarms_per_10min", "recovered_alarm_rate", "lead_time_median_s")
    for k in keys:
        assert k in report and all(k in report["baselines"][b] for b in ("tilt", "tilt_rate")), k
    assert report["campaign_seed"] == 1 and report["train_campaign_seed"] == 0
    assert 0.0 <= report["recall"] <= 1.0 and report["standing_minutes"] > 0
    assert not math.isnan(report["auroc"])
    printed = capsys.readouterr().out
    assert "| forecaster |" in printed and "| tilt_rate |" in printed
    dest = tmp_path / "report"
    assert (
        wam(["campaign", "report", str(campaigns[1]), "--plots", str(dest), "--forecast-eval", str(out)]) == 0
    )
    for name in ("forecaster_roc.png", "forecaster_lead_hist.png", "forecaster_lead_vs_impulse.png"):
        png = (dest / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000, name
    assert "## Fall forecaster" in (dest / "summary.md").read_text()


def test_bad_forecaster_inputs_are_clear_errors(campaigns, tmp_path, capsys):
    plain = tmp_path / "plain"
    run_campaign(CampaignSpec(out=plain, episodes=4, workers=1, traces=False), progress=False)
    assert wam(["campaign", "train-forecaster", "--campaign", str(plain), "--out", str(tmp_path / "m")]) == 2
    assert "holds no traces" in capsys.readouterr().err
    assert (
        wam(
            [
                "campaign",
                "eval-forecaster",
                "--model",
                str(tmp_path / "none"),
                "--campaign",
                str(campaigns[1]),
                "--json",
                str(tmp_path / "x.json"),
            ]
        )
        == 2
    )
    assert "no fall forecaster" in capsys.readouterr().err
    assert (
        wam(
            [
                "campaign",
                "train-forecaster",
                "--campaign",
                str(campaigns[0]),
                "--out",
                str(tmp_path / "m"),
                "--target-recall",
                "1.5",
            ]
        )
        == 2
    )
    assert "target_recall" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
