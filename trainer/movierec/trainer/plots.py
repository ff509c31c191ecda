"""PNG plots (matplotlib, headless)."""

from __future__ import annotations

import io
from collections.abc import Sequence

from movierec.trainer.train import EpochStats


def learning_curve_png(history: Sequence[EpochStats], title: str, best_epoch: int | None = None) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    epochs = [h.epoch for h in history]
    ax.plot(epochs, [h.train_rmse for h in history], label="train RMSE (rated entries)")
    ax.plot(epochs, [h.valid_rmse for h in history], label="validation RMSE (held out of the training file)")
    if best_epoch:
        ax.axvline(best_epoch, color="grey", linestyle="--", linewidth=1, label=f"selected epoch {best_epoch}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("RMSE")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
