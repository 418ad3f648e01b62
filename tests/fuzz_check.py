"""Judge a wam_node run against the outsider robot's ground truth (the JSON of tests/outsider_robot.py).

    report = analyse(json.loads(path.read_text()), Rules.for_profile(RobotProfile.load("panda"), control_hz=10))

Used by tests/test_node_fuzz.py and benchmarks/fuzz_node.py. What is checked (issue 15, item 2):
  - every trajectory command: finite, inside the position limits, consecutive points within one velocity step, the
    points 1/control_hz apart;
  - a motion command (a chunk): its first point within one step of a VALID reading the robot sent at or shortly
    before it (within input_timeout + slack: in-flight latency); both streams had content-valid messages within
    input_timeout + slack before it (else: a command from invalid input); its stamp (the camera frame it was computed
    from) is never that of a bad frame;
  - a hold (one point): exactly the clip of one of the last valid readings sent before it (never a refused one);
  - every bad input class sent appears in an ERROR diagnostic with its reason; instruction words nobody trained on
    appear in a WARN diagnostic naming them; no diagnostics status or /rosout line carries more than 100 characters
    of any instruction.
A reading within the tolerance past a limit gets a first point within one step of the reading itself, like any
other (until session 5's fix it got one step from its CLIPPED value: `first_point_past_clipped` counts such commands
and is a violation; tests/test_safety_property.py::test_first_point_within_one_step_of_a_measurement_just_outside_the_limits
is the regression test).
"""

from __future__ import annotations

import bisect
from collections import Counter
from dataclasses import dataclass

import numpy as np

OK, WARN, ERROR, STALE = 0, 1, 2, 3
ECHO_LIMIT = (
    100  # no diagnostics/rosout text may carry more than this many consecutive characters of an instruction
)

# What wam_node says when it refuses each class the outsider sends (any of the substrings).
REASONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("joints", "absurd_1e300"): ("outside its limits",),
    ("joints", "far_outside"): ("outside its limits",),
    ("joints", "finger_far"): ("outside its limits",),
    ("joints", "nan"): ("non-finite positions",),
    ("joints", "inf"): ("non-finite positions",),
    ("joints", "missing_joint"): ("missing joints",),
    ("joints", "missing_finger"): ("missing joints",),
    ("joints", "length_mismatch"): ("names but",),
    ("joints", "duplicate_name"): ("duplicate joint names",),
    ("joints", "empty"): ("missing joints",),
    ("joints", "out_of_order"): ("joint_states stamp",),
    ("camera", "huge"): ("exceeds max_image_pixels",),
    ("camera", "zero_size"): ("expected width and height > 0",),
    ("camera", "short_step"): ("image step",),
    ("camera", "truncated_data"): ("bytes, expected step*height",),
    ("camera", "unknown_encoding"): ("not supported",),
    ("camera", "cdr_garbage"): ("malformed serialized Image",),
    ("camera", "cdr_truncated"): ("malformed serialized Image", "bytes, expected step*height"),
    ("camera", "out_of_order"): ("camera stamp",),
    ("instruction", "too_long"): ("longer than max_instruction_chars",),
    ("instruction", "empty"): ("non-empty string",),
    ("instruction", "blank"): ("non-empty string",),
}


@dataclass
class Rules:
    joint_names: list[str]  # the node's (model) joint order, as in its commands
    lower: np.ndarray
    upper: np.ndarray
    step: np.ndarray  # velocity_limit / control_hz
    dt: float
    input_timeout_s: float = 0.3
    slack_s: float = (
        0.3  # in-flight latency allowed on top of the input timeout (delivery both ways, scheduling)
    )
    max_instruction_chars: int = 200
    gripper: str = (
        "panda_gripper"  # the model joint that is the width (finger1 + finger2) in the ground truth
    )

    @classmethod
    def for_profile(cls, profile: object, control_hz: float, **kw: object) -> Rules:
        dt = 1.0 / control_hz
        return cls(
            list(profile.joint_names),
            np.asarray(profile.position_lower, float),
            np.asarray(profile.position_upper, float),
            np.asarray(profile.velocity_limit, float) * dt,
            dt,
            **kw,
        )


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def analyse(result: dict, rules: Rules, min_count: int = 2) -> dict:
    """The report: counts, and lists (first few examples) of everything that broke a rule."""
    sent = sorted(result["sent"], key=lambda s: s["t"])
    state = result["state_names"]
    order = [state.index("gripper_width" if n == rules.gripper else n) for n in rules.joint_names]
    valid_q = [s for s in sent if s["stream"] == "joints" and s.get("q") is not None]
    vq_t = [s["t"] for s in valid_q]
    vq = np.asarray([[s["q"][i] for i in order] for s in valid_q]).reshape(-1, len(order))
    ok_t = {
        k: [s["t"] for s in sent if s["stream"] == k and s["kind"] != "invalid"] for k in ("joints", "camera")
    }
    camera_by_stamp = {tuple(s["stamp"]): s for s in sent if s["stream"] == "camera" and any(s["stamp"])}
    lo, hi, step, eps = rules.lower, rules.upper, rules.step, 1e-9
    window = rules.input_timeout_s + rules.slack_s

    violations, from_invalid, ages = [], [], []
    motion = holds = past_clipped = accepted_out_of_order = 0
    for c in result["commands"]:
        t = c["t"]
        if c["type"] != "trajectory":
            violations.append(f"t={t:.3f}: unexpected command type {c['type']}")
            continue
        pts = np.asarray(c["points"], float)
        where = f"command at t={t - result.get('t0', 0):.3f}s"
        if c["names"] != rules.joint_names:
            violations.append(f"{where}: joint names {c['names']}")
            continue
        if pts.ndim != 2 or pts.shape[1] != len(order) or not np.all(np.isfinite(pts)):
            violations.append(f"{where}: points not finite (J={len(order)}) values: {pts.tolist()}")
            continue
        if np.any(pts < lo - eps) or np.any(pts > hi + eps):
            violations.append(f"{where}: a point outside the position limits: {pts.tolist()}")
        if np.any(np.abs(np.diff(pts, axis=0)) > step + eps):
            violations.append(f"{where}: consecutive points more than one velocity step apart")
        if not np.allclose(c["times"], rules.dt * np.arange(1, len(pts) + 1), atol=1e-6):
            violations.append(f"{where}: point times {c['times']} are not k/control_hz")
        last = bisect.bisect_right(vq_t, t)  # valid readings sent before the command arrived
        if len(pts) == 1:  # a hold: the clip of one of the last valid readings
            holds += 1
            if last == 0:
                violations.append(f"{where}: a hold before any valid reading was sent")
                continue
            first = bisect.bisect_left(vq_t, vq_t[last - 1] - rules.slack_s)
            cand = np.clip(vq[first:last], lo, hi)
            if not np.any(np.all(np.abs(cand - pts[0]) <= eps, axis=1)):
                near = cand[np.argmin(np.max(np.abs(cand - pts[0]), axis=1))]
                violations.append(
                    f"{where}: hold {pts[0].tolist()} is no recent valid reading (nearest {near})"
                )
            continue
        motion += 1
        tc = ok_t["camera"][bisect.bisect_right(ok_t["camera"], t) - 1] if ok_t["camera"] else None
        tj = ok_t["joints"][bisect.bisect_right(ok_t["joints"], t) - 1] if ok_t["joints"] else None
        if tc is None or tj is None or tc > t or tj > t:
            from_invalid.append(f"{where}: motion before any valid camera frame and joint reading")
            continue
        age = t - min(tc, tj)
        ages.append(age)
        if age > window:
            from_invalid.append(f"{where}: the last valid camera/joints were sent {age * 1e3:.0f} ms before")
        source = camera_by_stamp.get(tuple(c["stamp"]))
        if source is not None and source["kind"] == "invalid":
            from_invalid.append(f"{where}: stamped with a refused camera frame ({source['cls']})")
        elif source is not None and source["kind"] == "stamp":
            accepted_out_of_order += 1  # true content, out-of-order stamp: taken after a gap (guard reset)
        first = bisect.bisect_left(vq_t, t - window)
        cand = vq[first:last]
        if len(cand) == 0:
            violations.append(f"{where}: no valid reading within {window * 1e3:.0f} ms before it")
            continue
        dist = np.abs(cand - pts[0])
        if np.any(np.all(dist <= step + eps, axis=1)):
            continue
        outside = np.abs(cand - np.clip(cand, lo, hi))
        if np.any(np.all(dist <= step + outside + eps, axis=1)):
            past_clipped += 1  # one step from the CLIPPED reading only: the fixed bug, a violation
        k = int(np.argmin(np.max(dist - step, axis=1)))
        violations.append(
            f"{where}: first point {np.round(pts[0], 4).tolist()} more than one step from every valid reading "
            f"of the last {window * 1e3:.0f} ms (nearest {np.round(cand[k], 4).tolist()})"
        )

    diags = result["diagnostics"]
    errors = "\n".join(d["message"] for d in diags if d["level"] == ERROR)
    sent_classes = Counter((s["stream"], s["cls"]) for s in sent if s["kind"] in ("invalid", "stamp"))
    missing_reasons = [
        f"{stream}/{cls} (sent {n}): no ERROR diagnostic says any of {REASONS[(stream, cls)]}"
        for (stream, cls), n in sorted(sent_classes.items())
        if n >= min_count and not any(r in errors for r in REASONS[(stream, cls)])
    ]

    instructions = [s for s in sent if s["stream"] == "instruction"]
    end = result.get("t_end", sent[-1]["t"] if sent else 0.0)
    not_warned, not_logged = [], []
    for i, s in enumerate(instructions):
        accepted = s["text"].strip() and len(s["text"]) <= rules.max_instruction_chars
        if not (s["unknown"] and accepted):
            continue
        until = instructions[i + 1]["t"] if i + 1 < len(instructions) else end + 1.0
        word = s["unknown"][0]
        if not any(
            d["level"] == WARN and word in d["message"] and s["t"] <= d["t"] <= until + 0.2 for d in diags
        ):
            not_warned.append(f"{s['cls']} {s['text'][:60]!r}: no WARN naming {word!r}")
        if not any(
            word in r["msg"] and r["level"] >= 30 and r["t"] >= s["t"] for r in result.get("rosout", [])
        ):
            not_logged.append(f"{s['cls']} {s['text'][:60]!r}: no WARN log line naming {word!r}")

    echo = []
    for s in instructions:
        text = s["text"]
        if len(text) <= ECHO_LIMIT:
            continue
        grams = {text[i : i + ECHO_LIMIT + 1] for i in range(len(text) - ECHO_LIMIT)}
        texts = [(f"diag t={d['t']:.3f}", x) for d in diags for x in (d["message"], *d["values"].values())]
        texts += [(f"rosout t={r['t']:.3f}", r["msg"]) for r in result.get("rosout", [])]
        for where, x in texts:
            if len(x) > ECHO_LIMIT and any(
                x[i : i + ECHO_LIMIT + 1] in grams for i in range(len(x) - ECHO_LIMIT)
            ):
                echo.append(
                    f"{where} echoes more than {ECHO_LIMIT} characters of a {len(text)}-character instruction"
                )

    return {
        "sent": len(sent),
        "sent_by_kind": dict(Counter(s["kind"] for s in sent)),
        "sent_by_class": dict(sorted(Counter(f"{s['stream']}/{s['cls']}" for s in sent).items())),
        "windows": dict(Counter(w["kind"] for w in result.get("windows", []))),
        "commands": len(result["commands"]),
        "motion": motion,
        "holds": holds,
        "violations": violations,
        "commands_from_invalid_input": from_invalid,
        "first_point_past_clipped": past_clipped,
        "accepted_out_of_order": accepted_out_of_order,
        "missing_reasons": missing_reasons,
        "unknown_not_warned": not_warned,
        "unknown_not_logged": not_logged,
        "echo": echo,
        "diagnostics_by_level": dict(
            Counter({0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}[d["level"]] for d in diags)
        ),
        "input_age_at_motion_ms": {
            "p50": _pct(ages, 50) * 1e3,
            "p99": _pct(ages, 99) * 1e3,
            "max": max(ages, default=float("nan")) * 1e3,
        },
    }
