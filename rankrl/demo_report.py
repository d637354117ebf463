"""The demo's outputs: the table of held-out nDCG@10 per stage and a PNG of reward and nDCG against step."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rich.table import Table

NDCG_KEY = "eval_ndcg@10"


def results_table(scores: dict[str, float], num_queries: int) -> Table:
    """Held-out nDCG@10 per stage with the gain over the random ordering."""
    baseline = scores["random order"]
    table = Table(title=f"held-out nDCG@10 ({num_queries} queries never seen in training)")
    table.add_column("stage")
    table.add_column("nDCG@10", justify="right")
    table.add_column("vs random", justify="right")
    for stage, value in scores.items():
        table.add_row(stage, f"{value:.3f}", "" if stage == "random order" else f"{value - baseline:+.3f}")
    return table


def _series(history: Sequence[dict], key: str) -> tuple[list[int], list[float]]:
    points = [(entry["step"], entry[key]) for entry in history if key in entry]
    return [step for step, _ in points], [value for _, value in points]


def plot_history(sft_history: Sequence[dict], grpo_history: Sequence[dict], path: Path) -> Path:
    """Two panels: SFT loss and held-out nDCG@10; GRPO mean reward and held-out nDCG@10, against step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (sft_axis, grpo_axis) = plt.subplots(1, 2, figsize=(11, 4))
    panels = (
        (sft_axis, sft_history, "loss", "SFT: training loss"),
        (grpo_axis, grpo_history, "reward", "GRPO: mean reward"),
    )
    for axis, history, key, label in panels:
        axis.plot(*_series(history, key), color="tab:blue", label=label)
        axis.set_xlabel("step")
        axis.set_ylabel(label, color="tab:blue")
        ndcg_axis = axis.twinx()
        ndcg_axis.plot(*_series(history, NDCG_KEY), "o-", color="tab:orange", label="held-out nDCG@10")
        ndcg_axis.set_ylabel("held-out nDCG@10", color="tab:orange")
        axis.set_title(label.split(":")[0])
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
