"""Runtime: load_policy()/predict() over real torch and real onnxruntime, preprocessing, and bad-input errors.

Run: .venv/bin/pytest tests/test_runtime.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from test_export import make_checkpoint

from wam_ros.export.onnx_export import export_model
from wam_ros.runtime import load_policy
from wam_ros.runtime import preprocess as pp
from wam_ros.runtime.backends import cuda_device_count
from wam_ros.runtime.bench import format_table, run_benchmark

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("runtime")
    ckpt = make_checkpoint(root / "ckpt.pt", seed=3)
    export_model(ckpt, root / "model")
    return root / "model"


def _obs(rng: np.random.Generator, size=(120, 160), k=2, instruction="reach the red target") -> dict:
    return {
        "images": [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(k)],
        "joint_pos": rng.normal(0, 0.5, 8),
        "instruction": instruction,
    }


# ------------------------------------------------------------------ preprocessing
def test_to_rgb_handles_encodings():
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert np.array_equal(pp.to_rgb(rgb, "rgb8"), rgb)
    assert np.array_equal(pp.to_rgb(np.ascontiguousarray(rgb[:, :, ::-1]), "bgr8"), rgb)
    rgba = np.concatenate([rgb, np.full((5, 7, 1), 9, np.uint8)], axis=2)
    assert np.array_equal(pp.to_rgb(rgba, "rgba8"), rgb)
    assert np.array_equal(pp.to_rgb(np.ascontiguousarray(rgba[:, :, [2, 1, 0, 3]]), "bgra8"), rgb)
    mono = rgb[:, :, 0]
    out = pp.to_rgb(mono, "mono8")
    assert out.shape == (5, 7, 3) and all(np.array_equal(out[:, :, c], mono) for c in range(3))
    assert pp.to_rgb(mono[:, :, None], "mono8").shape == (5, 7, 3)


@pytest.mark.parametrize(
    ("img", "enc", "match"),
    [
        (np.zeros((4, 4, 3), np.uint8), "yuv422", r"one of \('rgb8'"),
        (np.zeros((4, 4, 3), np.float32), "rgb8", "uint8"),
        (np.zeros((4, 4), np.uint8), "rgb8", r"\(H, W, 3\).*got \(4, 4\)"),
        (np.zeros((4, 4, 3), np.uint8), "mono8", r"\(H, W\).*got \(4, 4, 3\)"),
        (np.zeros((0, 4, 3), np.uint8), "bgr8", "H, W >= 1"),
    ],
)
def test_to_rgb_bad_input_names_expectation(img, enc, match):
    with pytest.raises(ValueError, match=match):
        pp.to_rgb(img, enc)


def test_stack_frames_resizes_pads_and_orders():
    rng = np.random.default_rng(1)
    a, b = (rng.integers(0, 256, (96, 128, 3), dtype=np.uint8) for _ in range(2))
    out = pp.stack_frames([a, b], k=3, size=(48, 64))
    assert out.shape == (1, 3, 3, 48, 64) and out.dtype == np.uint8
    ref_b = cv2.resize(b, (64, 48), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
    ref_a = cv2.resize(a, (64, 48), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
    assert np.array_equal(out[0, 2], ref_b) and np.array_equal(out[0, 1], ref_a)
    assert np.array_equal(out[0, 0], ref_a), "fewer than K frames: the oldest repeats (as in training)"
    assert np.array_equal(pp.stack_frames(np.stack([a, b]), 2, (96, 128))[0, 1], b.transpose(2, 0, 1))


@pytest.mark.parametrize(
    ("images", "match"),
    [
        ([], r"1\.\.2 frames.*got 0"),
        ([np.zeros((8, 8, 3), np.uint8)] * 3, r"1\.\.2 frames.*got 3"),
        ([np.zeros((8, 8, 3), np.float64)], "uint8 RGB.*float64"),
        ([np.zeros((8, 8), np.uint8)], r"\(h, w, 3\), got shape \(8, 8\)"),
        (np.zeros((2, 2), np.uint8), r"got an array of shape \(2, 2\)"),
        ("frame.png", "got str"),
    ],
)
def test_stack_frames_bad_input(images, match):
    with pytest.raises(ValueError, match=match):
        pp.stack_frames(images, k=2, size=(8, 8))


def test_joint_checks():  # the frame history is ChunkPolicy's (tests/test_chunk_policy.py)
    assert pp.check_joint_pos([0.1] * 8, 8).shape == (1, 8)
    with pytest.raises(ValueError, match=r"shape \(8,\).*got \(7,\)"):
        pp.check_joint_pos(np.zeros(7), 8)
    with pytest.raises(ValueError, match="finite"):
        pp.check_joint_pos([np.nan] + [0.0] * 7, 8)
    with pytest.raises(ValueError, match="8 numbers"):
        pp.check_joint_pos(["a"] * 8, 8)


# ------------------------------------------------------------------ one API over the backends
def test_predict_is_identical_across_backends(model_dir):
    rng = np.random.default_rng(4)
    obs = _obs(rng)
    torch_full = load_policy(model_dir, "torch", graph="full")
    ort_full = load_policy(model_dir, "onnxruntime", graph="full")
    ort_action = load_policy(model_dir, "onnxruntime", graph="action")
    ort_fp16 = load_policy(model_dir, "onnxruntime", graph="full", precision="fp16")
    ref = torch_full.predict(obs)
    N, J = torch_full.spec.chunk, torch_full.spec.num_joints
    assert ref["action"].shape == (N, J) and ref["action"].dtype == np.float64
    assert ref["next_frame"].shape == (64, 64, 3) and ref["next_frame"].dtype == np.uint8
    for policy, atol in ((ort_full, 1e-4), (ort_action, 1e-4), (ort_fp16, 1e-2)):
        out = policy.predict(obs)
        assert np.abs(out["action"] - ref["action"]).max() <= atol, policy
        if policy.graph == "action":
            assert out["next_frame"] is None
        else:
            diff = np.abs(out["next_frame"].astype(int) - ref["next_frame"]).max()
            assert diff <= (1 if atol < 1e-3 else 4), (policy, diff)
    # frames prepared once per camera message (resized to the model size) give the same prediction
    small = {**obs, "images": [ort_full.prepare_image(im) for im in obs["images"]]}
    assert small["images"][0].shape == (64, 64, 3)
    assert np.array_equal(ort_full.predict(small)["action"], ort_full.predict(obs)["action"])
    # the same scene given as bgr8 camera images converts to the same prediction
    bgr = {**obs, "images": [pp.to_rgb(np.ascontiguousarray(im[:, :, ::-1]), "bgr8") for im in obs["images"]]}
    assert np.array_equal(ort_full.predict(bgr)["action"], ort_full.predict(obs)["action"])
    # the inputs matter: another instruction / other joints change the action
    assert not np.allclose(
        ort_full.predict({**obs, "joint_pos": obs["joint_pos"] + 0.2})["action"],
        ort_full.predict(obs)["action"],
    )


@pytest.mark.parametrize("graph", ["full", "action"])
def test_predict_through_the_bound_call_equals_backend_run_on_prepare(model_dir, graph):
    """On onnxruntime CPU predict() writes its inputs into arrays bound to the graph once (OrtBackend.bound) instead of
    calling backend.run(*prepare(obs)); over a camera stream (a new frame each call, the previous one again, fewer
    than K frames, model-size frames, another instruction, a buffer refilled in place) both give the same outputs
    bit for bit, and what predict() returned is never overwritten by the next call."""
    policy = load_policy(model_dir, "onnxruntime", threads=1, graph=graph)
    assert policy.backend.bound() is not None and policy.backend.bound() is policy.backend.bound()
    rng = np.random.default_rng(12)
    cams = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(6)]
    small = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    windows = [
        [cams[0]],
        [cams[0], cams[1]],
        [cams[1], cams[2]],
        (cams[2], cams[3]),
        small,
        [cams[3], small[0]],
    ]
    windows += [[cams[4], cams[5]], [cams[4], cams[5]]]
    outs = []
    for i, images in enumerate(windows):
        if i == len(windows) - 1:
            cams[5][:] = rng.integers(
                0, 256, cams[5].shape, dtype=np.uint8
            )  # refilled in place: resized anew
        obs = {
            "images": images,
            "joint_pos": rng.normal(0, 0.5, 8),
            "instruction": "push the cube onto the blue pad" if i % 3 == 2 else "reach the red target",
        }
        want = policy.backend.run(*policy.prepare(obs))
        got = policy.predict(obs)
        assert np.array_equal(got["action"], want[0][0].astype(np.float64)), i
        if graph == "full":
            assert np.array_equal(got["next_frame"], pp.frame_to_image(want[1][0])), i
        else:
            assert got["next_frame"] is None
        outs.append((got, {k: None if v is None else v.copy() for k, v in got.items()}))
    for got, kept in outs:  # returned arrays are the caller's: the bound outputs are copied out
        assert np.array_equal(got["action"], kept["action"])
        assert graph == "action" or np.array_equal(got["next_frame"], kept["next_frame"])


def test_predict_from_several_threads_at_once_uses_a_binding_per_thread(model_dir):
    from concurrent.futures import ThreadPoolExecutor

    policy = load_policy(model_dir, "onnxruntime", threads=1)
    rng = np.random.default_rng(13)
    observations = [_obs(rng, size=(64, 64)) for _ in range(8)]  # model-size frames: no shared resize cache
    want = [policy.backend.run(*policy.prepare(o))[0][0] for o in observations]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda i: policy.predict(observations[i % 8])["action"], range(64)))
    assert all(np.array_equal(g, want[i % 8].astype(np.float64)) for i, g in enumerate(got))
    bindings = []
    threads = [threading.Thread(target=lambda: bindings.append(policy.backend.bound())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(b) for b in bindings + [policy.backend.bound()]}) == 4
    # camera-size frames shared by the threads go through one resize cache (evicting as they go): same answers
    frames = [rng.integers(0, 256, (120, 160, 3), dtype=np.uint8) for _ in range(12)]
    streams = [{**observations[i % 8], "images": [frames[i], frames[i + 1]]} for i in range(11)]
    want = [policy.backend.run(*policy.prepare(o))[0][0] for o in streams]
    with ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda i: policy.predict(streams[i % 11])["action"], range(200)))
    assert all(np.array_equal(g, want[i % 11].astype(np.float64)) for i, g in enumerate(got))


def test_frame_to_image_rounds_like_numpy_and_joint_pos_fills_a_given_array():
    rng = np.random.default_rng(14)
    frame = np.concatenate(
        [
            rng.random((1, 64, 64), dtype=np.float32) * 1.4 - 0.2,  # out of range on both sides
            (rng.integers(0, 256, (1, 64, 64)) + 0.5).astype(np.float32) / 255,  # near .5 ties
            rng.integers(0, 256, (1, 64, 64)).astype(np.float32) / 255,
        ]
    )
    want = np.rint(np.clip(frame, 0, 1) * np.float32(255)).astype(np.uint8).transpose(1, 2, 0)
    got = pp.frame_to_image(frame)
    assert got.shape == (64, 64, 3) and got.flags.c_contiguous and np.array_equal(got, want)
    out = np.zeros((1, 8), np.float32)
    assert pp.check_joint_pos(np.arange(8.0), 8, out) is out and np.array_equal(out[0], np.arange(8))
    with pytest.raises(ValueError, match="finite"):
        pp.check_joint_pos([1e300] + [0.0] * 7, 8, out)


def test_auto_backend_and_file_paths(model_dir, tmp_path):
    assert load_policy(model_dir).backend_name.startswith("onnxruntime")
    assert load_policy(model_dir / "model.pt").backend_name == "torch"
    only_ckpt = tmp_path / "ckpt_only"
    only_ckpt.mkdir()
    shutil.copy(model_dir / "model.pt", only_ckpt / "model.pt")
    assert load_policy(only_ckpt).backend_name == "torch"
    # the ONNX file alone (no checkpoint beside it) is enough: spec + tokenizer come from its metadata
    lone = tmp_path / "lone.onnx"
    shutil.copy(model_dir / "wam_full.onnx", lone)
    policy = load_policy(lone)
    assert policy.spec.joint_names[0] == "panda_joint1" and policy.spec.k_frames == 2
    obs = _obs(np.random.default_rng(5))
    ref = load_policy(model_dir / "model.pt").predict(obs)
    assert np.abs(policy.predict(obs)["action"] - ref["action"]).max() <= 1e-4
    with pytest.raises(ValueError, match="cannot run model.pt"):
        load_policy(model_dir / "model.pt", backend="onnxruntime")
    with pytest.raises(ValueError, match="'action' graph"):
        load_policy(model_dir / "wam_action.onnx", graph="full")
    with pytest.raises(FileNotFoundError, match="wam export --tensorrt"):
        load_policy(model_dir, backend="tensorrt")
    with pytest.raises(ValueError, match="backend must be one of"):
        load_policy(model_dir, backend="tflite")
    with pytest.raises(ValueError, match="threads"):
        load_policy(model_dir, threads=0)


def test_stale_onnx_beside_a_new_checkpoint_is_not_run(model_dir, tmp_path):
    d = tmp_path / "stale"
    shutil.copytree(model_dir, d)
    assert load_policy(d).backend_name.startswith("onnxruntime")
    make_checkpoint(d / "model.pt", seed=11)  # retrained, not re-exported
    assert load_policy(d).backend_name == "torch", "auto must not run graphs of another checkpoint"
    with pytest.raises(ValueError, match=r"exported from another checkpoint.*wam export"):
        load_policy(d, backend="onnxruntime")
    export_model(d / "model.pt", d)
    assert load_policy(d, backend="onnxruntime").backend_name.startswith("onnxruntime")


def test_thread_count_and_io_binding(model_dir):
    p1 = load_policy(model_dir, "onnxruntime", threads=1)
    assert p1.backend.sess.get_session_options().intra_op_num_threads == 1
    p3 = load_policy(model_dir, "onnxruntime", threads=3, io_binding=True)
    assert p3.backend.sess.get_session_options().intra_op_num_threads == 3 and p3.backend.io_binding
    obs = _obs(np.random.default_rng(6))
    a, b = p1.predict(obs), p3.predict(obs)
    assert np.allclose(a["action"], b["action"], atol=1e-5)
    assert np.abs(a["next_frame"].astype(int) - b["next_frame"]).max() <= 1


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_bad_observations_are_clear_errors(model_dir, backend):
    policy = load_policy(model_dir, backend)
    obs = _obs(np.random.default_rng(7))
    cases = [
        ({k: v for k, v in obs.items() if k != "joint_pos"}, r"missing \['joint_pos'\]"),
        ({**obs, "joint_pos": np.zeros(7)}, r"shape \(8,\).*got \(7,\)"),
        ({**obs, "joint_pos": np.full(8, np.inf)}, "finite"),
        ({**obs, "instruction": 3}, "instruction must be a str"),
        ({**obs, "images": [im.astype(np.float32) for im in obs["images"]]}, "uint8"),
        ({**obs, "images": [obs["images"][0][:, :, :2]]}, r"\(h, w, 3\)"),
        ([1, 2, 3], "obs must be a dict"),
    ]
    for bad, match in cases:
        with pytest.raises(ValueError, match=match):
            policy.predict(bad)
    f, q, t = policy.prepare(obs)
    with pytest.raises(ValueError, match=r"frames must be uint8 \(B, 2, 3, 64, 64\), got float32"):
        policy.run_batch(f.astype(np.float32), q, t)
    with pytest.raises(ValueError, match=r"tokens must be int64 \(B, 12\), got int32"):
        policy.run_batch(f, q, t.astype(np.int32))
    with pytest.raises(ValueError, match="joint_pos has batch 2"):
        policy.run_batch(f, np.repeat(q, 2, axis=0), t)
    a, _ = policy.run_batch(np.repeat(f, 4, axis=0), np.repeat(q, 4, axis=0), np.repeat(t, 4, axis=0))
    assert a.shape == (4, 8, 8)


def test_bad_model_files_are_clear_errors(model_dir, tmp_path):
    data = (model_dir / "wam_full.onnx").read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError, match="truncated.onnx"):
        load_policy(truncated)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not an onnx file" * 50)
    with pytest.raises(ValueError, match="garbage.onnx"):
        load_policy(garbage)
    bare = onnx.load(str(model_dir / "wam_full.onnx"))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ValueError, match=r"no wam_ros metadata.*wam export"):
        load_policy(tmp_path / "bare.onnx")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_policy(tmp_path / "missing.onnx")
    with pytest.raises(ValueError, match="cannot tell the model type"):
        load_policy(garbage.rename(tmp_path / "model.tflite"))
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="holds no model"):
        load_policy(empty)
    ckpt = (model_dir / "model.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(ckpt[: len(ckpt) // 2])
    with pytest.raises(ValueError, match="corrupt"):
        load_policy(tmp_path / "cut.pt")
    fake_engine = tmp_path / "wam_full_fp16.engine"
    fake_engine.write_bytes(b"junk")
    with pytest.raises(ValueError, match="no metadata file"):
        load_policy(fake_engine)


def test_onnxruntime_load_prints_no_cuda_errors(model_dir):
    """On a CPU-only machine, loading + predicting with onnxruntime-gpu must not spam CUDA library errors."""
    code = textwrap.dedent(f"""
        import logging, numpy as np
        logging.basicConfig(level=logging.INFO)
        from wam_ros.runtime import load_policy
        p = load_policy({str(model_dir)!r}, backend="onnxruntime")
        load_policy({str(model_dir)!r}, backend="onnxruntime", graph="action")  # same providers: not logged again
        # GPU providers asked for explicitly: whatever fails is probed quietly and falls back to what works
        q = load_policy({str(model_dir)!r}, backend="onnxruntime",
                        providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        assert q.backend.providers[-1] == "CPUExecutionProvider", q.backend.providers
        p.predict({{"images": [np.zeros((48, 64, 3), np.uint8)], "joint_pos": np.zeros(8), "instruction": "reach"}})
        print(p.backend.providers)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "onnxruntime providers for wam_full.onnx" in out.stderr  # the choice is logged, once per process
    assert out.stderr.count("onnxruntime providers for wam_full.onnx") == 1
    spam = [
        line
        for line in out.stderr.splitlines()
        if "[E:onnxruntime" in line or "[W:onnxruntime" in line or "libcu" in line or "cuDNN" in line
    ]
    assert not spam, spam
    if cuda_device_count() == 0:
        assert "CPUExecutionProvider" in out.stdout and "CUDA" not in out.stdout
        # control: asking onnxruntime-gpu for CUDA naively on this machine does print the errors we avoid
        naive = subprocess.run(
            [
                sys.executable,
                "-c",
                "import onnxruntime as ort; ort.InferenceSession("
                f"{str(model_dir / 'wam_action.onnx')!r}, providers=['CUDAExecutionProvider', "
                "'CPUExecutionProvider'])",
            ],
            capture_output=True,
            text=True,
        )
        assert "CUDA" in naive.stderr


def test_benchmark_runs_every_row_side_by_side(model_dir):
    result = run_benchmark(model_dir, threads=1, iters=5, warmup=2, camera=(48, 64))
    rows = result["rows"]
    assert {
        "torch eager (full)",
        "onnxruntime full",
        "onnxruntime action-only",
        "onnxruntime full fp16",
    } <= set(rows)
    for r in rows.values():
        assert 0 < r["graph"]["p50_ms"] <= r["graph"]["p99_ms"] and r["ratio_vs_torch_p50"] > 0
        assert r["predict_vs_graph_p50"] == pytest.approx(r["predict"]["p50_ms"] / r["graph"]["p50_ms"])
    assert rows["torch eager (full)"]["ratio_vs_torch_p50"] == 1.0
    assert "onnxruntime action-only" in format_table(result)


def test_interleaving_in_turns_calls_each_row_in_blocks_and_times_every_call():
    from wam_ros.runtime.bench import interleaved_latency

    calls: list[str] = []
    fns = {name: (lambda n=name: calls.append(n)) for name in ("a", "b")}
    times = interleaved_latency(fns, iters=5, warmup=1, block=2, pause=0.001)
    # one warm-up round, then turns of 2, 2 and the last 1 call per row
    assert calls == ["a", "b"] + ["a", "a", "b", "b", "a", "a", "b", "b", "a", "b"]
    assert {k: v.shape for k, v in times.items()} == {"a": (5,), "b": (5,)}
    assert all(np.all(v >= 0) for v in times.values())
    calls.clear()
    interleaved_latency(fns, iters=3, warmup=0, block=2, turn_warmup=1)  # one untimed call opens each turn
    assert calls == ["a", "a", "a", "b", "b", "b", "a", "a", "b", "b"]
    calls.clear()
    interleaved_latency(fns, iters=3, warmup=0, alternate=True)  # every other round in reverse order
    assert calls == ["a", "b", "b", "a", "a", "b"]
    with pytest.raises(ValueError, match="block must be >= 1"):
        interleaved_latency(fns, iters=2, block=0)
