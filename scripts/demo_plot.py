"""The demo's comparison table and plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def print_table(results: dict[str, Any]) -> None:
    table = Table(title="MNIST-1D: does it close the generalization gap?")
    for col in ("regularizer", "status", "epochs", "best", "test_acc", "gen_gap", "ece"):
        table.add_column(col, justify="left" if col in ("regularizer", "status") else "right")
    for name, r in results.items():
        s = r["summary"]
        m = s.get("metrics") or {}
        table.add_row(
            name,
            s["status"],
            str(s.get("epochs_run")),
            str(s.get("best_epoch")),
            *(f"{m[k]:.3f}" if k in m else "-" for k in ("test_acc", "gen_gap", "ece")),
        )
    Console().print(table)


def plot_comparison(results: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for name, r in results.items():
        series = r["series"]
        for ax, key in zip(axes, ("train_loss", "val_loss", "gen_gap"), strict=True):
            points = series.get(key, [])
            ax.plot([p["step"] for p in points], [p["value"] for p in points], label=name)
    for ax, title in zip(
        axes, ("train loss", "validation loss", "gen_gap = val − train loss"), strict=True
    ):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[1].set_yscale("log")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
