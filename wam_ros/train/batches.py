"""The training set: which episodes a run trains on.

    episodes = load_episodes(["data/reach", "data/push"])          # successful (and DAgger) episodes
    data = WindowArrays(episodes, k_frames=2, chunk=8, image_size=64, tokenizer=model.tokenizer)

The windows and batches themselves are wam_ros.data.windows.WindowArrays (the one implementation).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from wam_ros.data.episode import Episode, list_episodes, read_episode


def load_episodes(dirs: Sequence[str | Path], only_success: bool = True) -> list[Episode]:
    """Every complete episode under the given directories (successful ones only, by default).

    DAgger episodes (meta "dagger", `wam collect --dagger`) are kept whatever their outcome: the model drove them and
    the expert labelled every step, so a failure is exactly the state whose correction is to be learned."""
    eps: list[Episode] = []
    for d in dirs:
        paths = list_episodes(d)
        if not paths:
            raise ValueError(f"no episode_*.npz files under {d}")
        eps.extend(
            ep for ep in map(read_episode, paths) if ep.success or not only_success or ep.meta.get("dagger")
        )
    if not eps:
        raise ValueError(f"no {'successful ' if only_success else ''}episodes in {list(map(str, dirs))}")
    return eps
