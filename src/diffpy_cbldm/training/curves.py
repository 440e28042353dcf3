"""Loss curves of a training stage: ``losses.csv`` and ``losses.png``.

One row per finished epoch: the epoch, the optimiser steps so far, the
learning rate and KL weight at the end of the epoch, the mean training
loss terms, the validation loss terms (EMA weights), the training
throughput in samples per second (all processes) and the seconds spent
training and validating. Both files are rewritten atomically from the
checkpoint's history, so a resumed run continues the same files: the CSV
after every epoch, the PNG after the last epoch of a stage and otherwise
at most once a minute (drawing it takes longer than an epoch of a tiny
test run).
"""

import csv

from diffpy_cbldm.atomic import atomic_path

__all__ = ["write_curves"]


def _columns(history):
    columns = []
    for row in history:
        for key in row:
            if key not in columns:
                columns.append(key)
    return columns


def write_curves(history, csv_path, png_path, title, plot=True):
    """Write the loss history as CSV and (if `plot`) as a PNG plot.

    Parameters
    ----------
    history : list of dict
        One dict per epoch with at least ``epoch``, ``train_loss`` and
        ``val_loss``.
    csv_path, png_path : path-like
    title : str
        Plot title (the stage name).
    plot : bool
        Also draw the PNG.
    """
    columns = _columns(history)
    with atomic_path(csv_path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            writer.writeheader()
            for row in history:
                writer.writerow(row)
    if not plot:
        return

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.0))
    # Fixed margins: a layout engine costs more than the rest of the plot.
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.12, top=0.92)
    ax = fig.add_subplot()
    epochs = [row["epoch"] for row in history]
    for key, style in (("train_loss", "-o"), ("val_loss", "-s")):
        ax.plot(
            epochs,
            [row[key] for row in history],
            style,
            ms=3,
            label=key.replace("_", " "),
        )
    if all(row[k] > 0 for row in history for k in ("train_loss", "val_loss")):
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
