"""Export the fall forecaster (wam_ros.model.forecaster) to ONNX, checked against torch, as a model folder.

    report = export_forecaster(net, "models/fall_forecaster_laikago", rule, joint_names, robot="laikago",
                               parity_windows=real_windows)

Writes fall_forecaster.onnx (input `window` (B, W, 10 + 3J) raw readings, outputs p_fall_0_5s, p_fall_1s,
time_to_fall_s (B,); dynamic batch, opset 17, one file), fall_forecaster.pt (the torch checkpoint) and
fall_forecaster.json (the contract the runtime reads: wam_ros.runtime.fall_forecaster). Parity: max |torch -
onnxruntime| <= 1e-4 on every output, at batch 1 and 7, on the given real windows and on random ones, and the folded
normalisation within 1e-4 of the training network; a graph that fails is not written (ForecasterExportError). Every
file is written atomically; the .json last (it names the .onnx's hash).
"""

from __future__ import annotations

import io
import json
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from wam_ros.fileio import atomic_write_bytes, atomic_write_text, sha256_file
from wam_ros.model.forecaster import FallForecaster, input_columns, save_forecaster
from wam_ros.runtime.fall_forecaster import INPUT, ONNX_FILE, OUTPUTS, SPEC_FILE, TORCH_FILE, AlarmRule

PARITY_ATOL = (
    1e-4  # exported graph vs the (folded) torch network it was traced from (the WAM export's fp32 bar)
)
FOLD_ATOL = 1e-4  # folded vs unfolded network (float rounding of the folded weights)


class ForecasterExportError(RuntimeError):
    """The exported graph does not match the torch network."""


class _Graph(nn.Module):
    def __init__(self, net: FallForecaster) -> None:
        super().__init__()
        self.net = net

    def forward(self, window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.net(window)


def to_onnx(net: FallForecaster, opset: int = 17) -> onnx.ModelProto:
    """The graph of `net` with its normalisation folded into the first convolution (FallForecaster.folded)."""
    net = net.folded()
    example = torch.zeros(2, net.cfg.window, net.cfg.n_inputs)  # batch 2: never specialise the batch to 1
    example[..., 3] = 1.0
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Graph(net),
            (example,),
            buf,
            dynamo=False,
            opset_version=opset,
            do_constant_folding=True,
            input_names=[INPUT],
            output_names=list(OUTPUTS),
            dynamic_axes={name: {0: "batch"} for name in (INPUT, *OUTPUTS)},
        )
    m = onnx.load_from_string(buf.getvalue())
    m.ir_version = min(m.ir_version, 10)
    m.producer_name, m.producer_version = "wam_ros", "1"
    m.graph.name = "fall_forecaster"
    return m


def parity(
    net: FallForecaster, model: onnx.ModelProto, windows: np.ndarray | None = None
) -> tuple[float, float]:
    """(max |torch - onnxruntime|, max |net - its folded copy|) over every output, at batch 1 and 7, on `windows`
    and random readings. The first compares the exported graph with the folded network it was traced from; the
    second bounds what folding the normalisation changed (float rounding only)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    cfg = net.cfg
    rand = rng.normal(size=(8, cfg.window, cfg.n_inputs)).astype(np.float32)
    q = rng.normal(size=(8, cfg.window, 4))
    rand[..., :4] = q / np.linalg.norm(q, axis=-1, keepdims=True)
    sets = [rand] + ([np.asarray(windows, dtype=np.float32)] if windows is not None and len(windows) else [])
    folded = net.folded()
    worst = fold = 0.0
    for data in sets:
        for b in (1, 7):
            x = data[:b]
            with torch.inference_mode():
                ref = [t.numpy() for t in folded(torch.from_numpy(x))]
                orig = [t.numpy() for t in net.eval()(torch.from_numpy(x))]
            got = sess.run(None, {INPUT: x})
            worst = max(worst, *(float(np.max(np.abs(r - g))) for r, g in zip(ref, got, strict=True)))
            fold = max(fold, *(float(np.max(np.abs(r - o))) for r, o in zip(ref, orig, strict=True)))
    return worst, fold


def export_forecaster(
    net: FallForecaster,
    out: str | Path,
    rule: AlarmRule,
    joint_names: list[str],
    robot: str,
    parity_windows: np.ndarray | None = None,
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the model folder; returns the contract written to fall_forecaster.json (with the parity figure)."""
    if len(joint_names) != net.cfg.n_joints:
        raise ValueError(f"{len(joint_names)} joint names for a network of {net.cfg.n_joints} joints")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = to_onnx(net)
    worst, fold = parity(net, model, parity_windows)
    if not worst <= PARITY_ATOL:
        raise ForecasterExportError(f"ONNX parity {worst:.2e} > {PARITY_ATOL:.0e}: graph not written")
    if not fold <= FOLD_ATOL:
        raise ForecasterExportError(
            f"folding the normalisation changed outputs by {fold:.2e} > {FOLD_ATOL:.0e}"
        )
    save_forecaster(out / TORCH_FILE, net, {"alarm": asdict(rule), "joint_names": list(joint_names)})
    atomic_write_bytes(out / ONNX_FILE, model.SerializeToString())
    spec = {
        "format": "wam_ros.fall_forecaster/1",
        "robot": robot,
        "window": net.cfg.window,
        "rate_hz": net.cfg.rate_hz,
        "horizon_s": net.cfg.horizon_s,
        "input_columns": input_columns(net.cfg.n_joints),
        "joint_names": list(joint_names),
        "alarm": asdict(rule),
        "config": net.cfg.to_dict(),
        "onnx_sha256": sha256_file(out / ONNX_FILE),
        "onnx_parity_max_abs": worst,
        "fold_max_abs": fold,
        "parameters": sum(p.numel() for n, p in net.named_parameters() if not n.startswith("aux.")),
        **(info or {}),
    }
    atomic_write_text(out / SPEC_FILE, json.dumps(spec, indent=1))
    return spec
