"""PNG plots for docs/img/ (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench.simrace import Race
from wfbatch.sim.wireflow.options import window_limits


def completions_over_time(race: Race, title: str, path: Path) -> Path:
    """Images completed over time, wfbatch vs the article's loop, in real-API minutes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    to_minutes = race.scale.factor / 60.0  # simulated seconds → minutes of the real API
    for side, style in ((race.wfbatch, "-"), (race.baseline, "--")):
        xs = [0.0, *(t * to_minutes for t in side.completed_at)]
        ys = list(range(len(xs)))
        label = f"{side.name}: {side.images} images in {side.makespan * to_minutes:.1f} min"
        ax.step(xs, ys, style, where="post", label=label)
    limit = window_limits(race.options).executions
    ideal_end = race.prompts / limit
    ax.plot([0, ideal_end], [0, race.prompts], ":", color="grey", label=f"limit: {limit} starts/min")
    ax.set_xlabel(f"minutes (real-API time; the run was scaled down ×{race.scale.factor:g})")
    ax.set_ylabel("images completed")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
