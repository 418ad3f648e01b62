"""The LeRobot dataset v3.0 layout: paths, feature keys, the tasks table and statistics, shared by export and import.

Taken from LeRobot's own code (lerobot/datasets/utils.py, dataset_metadata.py, compute_stats.py, io_utils.py):

    meta/info.json                                   codebase_version "v3.0", fps, features, path templates, totals
    meta/stats.json                                  per feature: min, max, mean, std, count, q01 q10 q50 q90 q99
    meta/tasks.parquet                               written by pandas: index "task" (the string), column task_index
    meta/episodes/chunk-CCC/file-FFF.parquet         one row per episode: episode_index, tasks, length,
                                                     data/chunk_index, data/file_index, dataset_from_index,
                                                     dataset_to_index, videos/<key>/{chunk_index, file_index,
                                                     from_timestamp, to_timestamp}, meta/episodes/{chunk_index,
                                                     file_index}, stats/<feature>/<stat>
    data/chunk-CCC/file-FFF.parquet                  one row per frame, many episodes per file
    videos/<key>/chunk-CCC/file-FFF.mp4              many episodes per file, one after another; an episode's frame
                                                     with data timestamp t is shown at from_timestamp + t

A file index rolls over into the next chunk after `chunks_size` files (LeRobot's update_chunk_file_indices).
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
INFO_PATH, STATS_PATH, TASKS_PATH = "meta/info.json", "meta/stats.json", "meta/tasks.parquet"
CHUNKS_SIZE, DATA_FILE_MB, VIDEO_FILE_MB = 1000, 100, 200  # LeRobot's DEFAULT_CHUNK_SIZE and file size limits

STATE, ACTION, VELOCITY = "observation.state", "action", "observation.velocity"
IMAGES = "observation.images."  # camera features are observation.images.<camera>
INDEX_COLUMNS = ("frame_index", "episode_index", "index", "task_index")  # int64, with "timestamp" (float32):
DEFAULT_FEATURES = ("timestamp", *INDEX_COLUMNS)  # the columns every LeRobot dataset has
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)  # LeRobot's DEFAULT_QUANTILES -> stats keys q01 q10 q50 q90 q99
# stats.json std floor for a dimension that never moves (a gripper never used in reach): LeRobot and lerobot-doctor
# flag std == 0 because z-score normalisation then divides by ~0. Same value as wam_ros.model.modeling.STD_FLOOR.
STD_FLOOR = 1e-3


def next_file(chunk_index: int, file_index: int, chunks_size: int = CHUNKS_SIZE) -> tuple[int, int]:
    """The (chunk, file) after this one (LeRobot's update_chunk_file_indices)."""
    return (chunk_index + 1, 0) if file_index + 1 >= chunks_size else (chunk_index, file_index + 1)


def tasks_table(tasks: list[str]) -> pa.Table:
    """meta/tasks.parquet as pandas writes LeRobot's tasks DataFrame: the task string is the index."""
    table = pa.table(
        {"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())}
    )
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [
            {
                "name": None,
                "field_name": None,
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": {"encoding": "UTF-8"},
            }
        ],
        "columns": [
            {
                "name": "task_index",
                "field_name": "task_index",
                "pandas_type": "int64",
                "numpy_type": "int64",
                "metadata": None,
            },
            {
                "name": "task",
                "field_name": "task",
                "pandas_type": "unicode",
                "numpy_type": "object",
                "metadata": None,
            },
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def feature_stats(x: np.ndarray, std_floor: float = 0.0) -> dict[str, list]:
    """min/max/mean/std/count and the quantiles of the rows of x (N, D), JSON-ready (LeRobot's get_feature_stats).
    Image statistics are per channel from pixel histograms: export._Histogram."""
    x = np.asarray(x, np.float64)
    stats = {
        "min": np.min(x, axis=0),
        "max": np.max(x, axis=0),
        "mean": np.mean(x, axis=0),
        "std": np.maximum(np.std(x, axis=0), std_floor),
        **{f"q{round(q * 100):02d}": np.quantile(x, q, axis=0) for q in QUANTILES},
    }
    out = {k: v.tolist() for k, v in stats.items()}
    out["count"] = [int(x.shape[0])]
    return out
