"""The loss curve of a training run as a PNG, for /model info and the end of /train.

    png = loss_curve_png(bundle.history, title="lyrics.pt")   # bytes, or None without any epoch

Drawn with matplotlib's object API on an Agg canvas: no pyplot, so no global figure state and no GUI
backend, and it is safe to call from a worker thread (asyncio.to_thread) while the bot serves.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _series(history: Sequence[Mapping[str, float]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) for the records that have a finite `key`."""
    points = [
        (float(record["epoch"]), float(record[key]))
        for record in history
        if isinstance(record.get(key), (int, float))
        and math.isfinite(record[key])
        and isinstance(record.get("epoch"), (int, float))
    ]
    return [x for x, _ in points], [y for _, y in points]


def loss_curve_png(
    history: Sequence[Mapping[str, float]], *, title: str = "", trigram_bpc: float | None = None
) -> bytes | None:
    """Train and held-out loss per epoch (left), held-out bits per character (right) with the trigram bar.

    Returns None when there is nothing to draw (a bundle without history).
    """
    epochs, train = _series(history, "train_loss")
    heldout_epochs, heldout = _series(history, "heldout_loss")
    bpc_epochs, bpc = _series(history, "bpc")
    if not (epochs or heldout_epochs or bpc_epochs):
        return None

    figure = Figure(figsize=(8, 3.2), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself to the figure; savefig renders through it
    loss_axes, bpc_axes = figure.subplots(1, 2)
    marker = "o" if max(len(epochs), len(heldout_epochs)) <= 30 else None  # dots only while they can be told apart
    loss_axes.plot(epochs, train, marker=marker, label="train")
    loss_axes.plot(heldout_epochs, heldout, marker=marker, label="held-out")
    loss_axes.set(xlabel="epoch", ylabel="loss (nats per token)", title="loss")
    loss_axes.legend()
    bpc_axes.plot(bpc_epochs, bpc, marker=marker, color="tab:green", label="held-out (network)")
    if trigram_bpc is not None and math.isfinite(trigram_bpc):
        bpc_axes.axhline(trigram_bpc, color="tab:red", linestyle="--", label="character trigram")
    bpc_axes.set(xlabel="epoch", ylabel="bits per character", title="held-out bpc (lower is better)")
    bpc_axes.legend()
    for axes in (loss_axes, bpc_axes):
        axes.grid(alpha=0.3)
        axes.xaxis.get_major_locator().set_params(integer=True)
    if title:
        figure.suptitle(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
