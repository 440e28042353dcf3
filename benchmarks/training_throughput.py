"""Throughput of the four training stages (CbLDM's three and the cluster
estimator), and the projected time of ``cbldm train --stage all`` on the
full training set.

Each stage is trained for two epochs with the default networks and the
default stage settings, through the real training loop
(:func:`diffpy_cbldm.training.train`: data assembly, on-the-fly
Laplacians, EMA, validation, checkpoints), for every combination of
precision (fp32, bf16 autocast) and torch threads asked for. The second
epoch's training throughput (samples per second) is reported, with the
validation time per epoch and the one-off set-up time of each stage
(frozen networks, conditions, latent encoding).

The projection scales these to a training set of ``--project`` (default
the full set, ``data/mmnp-v2.h5``, when it exists) with the default
number of epochs of each stage.

Usage::

    python benchmarks/training_throughput.py                 # builds a set
    python benchmarks/training_throughput.py --data set.h5 --threads 1 2

Prints a table and writes ``benchmarks/results/training_throughput.json``.
"""

import argparse
import logging
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from diffpy_cbldm.atomic import write_json

RESULTS = Path(__file__).parent / "results" / "training_throughput.json"
FULL_SET = Path(__file__).parents[1] / "data" / "mmnp-v1.h5"
STAGES = ("condition", "structure", "diffusion", "estimator")
EPOCHS = 2


def cpu_name():
    try:
        out = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()
    for line in out.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def split_sizes(path, scheme):
    from diffpy_cbldm.dataset.store import open_dataset

    with open_dataset(path) as ds:
        return {
            "train": int(ds.split_indices("train", scheme).size),
            "val": int(ds.split_indices("val", scheme).size),
            "draws": ds.n_draws,
        }


def measure(data, out, precision, threads):
    """Two epochs of each stage; rates from the second epoch."""
    from diffpy_cbldm.training import default_config, train
    from diffpy_cbldm.training.checkpoint import load_checkpoint

    torch.set_num_threads(threads)
    config = default_config(data).with_stage_settings(
        epochs=EPOCHS, precision=precision
    )
    rows = {}
    for stage in STAGES:
        started = time.perf_counter()
        train(stage, data, out, config, progress=False, resume=False)
        wall = time.perf_counter() - started
        history = load_checkpoint(out / stage / "last.pt")["history"]
        looped = sum(r["seconds_train"] + r["seconds_val"] for r in history)
        rows[stage] = {
            "samples_per_s": history[-1]["samples_per_s"],
            "seconds_val": history[-1]["seconds_val"],
            "seconds_setup": wall - looped,
            "val_loss": history[-1]["val_loss"],
        }
    return rows


def project(rows, bench, full, epochs):
    """Hours for the default epochs of every stage on the full set."""
    scale_val = full["val"] / bench["val"]
    scale_all = (full["train"] + full["val"]) / (bench["train"] + bench["val"])
    hours = {}
    for stage in STAGES:
        r = rows[stage]
        per_epoch = full["train"] / r["samples_per_s"]
        per_epoch += r["seconds_val"] * scale_val
        hours[stage] = (
            epochs[stage] * per_epoch + r["seconds_setup"] * scale_all
        ) / 3600
    hours["all"] = sum(hours.values())
    return hours


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", help="training set (default: build one)")
    parser.add_argument(
        "--project",
        default=str(FULL_SET) if FULL_SET.is_file() else None,
        help="training set to project the time of --stage all to "
        "(default: data/mmnp-v2.h5 if present, else 13,210 structures "
        "split 90/5/5 with 2 PDFs each)",
    )
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--precision",
        nargs="+",
        default=["fp32", "bf16"],
        choices=("fp32", "bf16"),
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from diffpy_cbldm.training import RunConfig

    defaults = RunConfig.__dataclass_fields__
    epochs = {s: defaults[s].default_factory().epochs for s in STAGES}

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = args.data
        if data is None:
            from diffpy_cbldm.dataset.build import build_dataset

            data = build_dataset(
                tmp / "bench.h5",
                types=("decahedral",),
                workers=1,
                progress=False,
            )
        bench = split_sizes(data, "shape")
        if args.project:
            full = split_sizes(args.project, "shape")
        else:
            full = {"train": 11889, "val": 660, "draws": 2}
        results = []
        for threads in args.threads:
            for precision in args.precision:
                rows = measure(
                    data,
                    tmp / f"run-{threads}-{precision}",
                    precision,
                    threads,
                )
                results.append(
                    {
                        "threads": threads,
                        "precision": precision,
                        "stages": rows,
                        "projected_hours": project(rows, bench, full, epochs),
                    }
                )

    load_after = os.getloadavg()
    print(f"load average before {load_before}, after {load_after}")
    print(
        f"CPU: {cpu_name()}; benchmark set: {bench['train']} train / "
        f"{bench['val']} val structures; projected to {full['train']} / "
        f"{full['val']}; default epochs {epochs}"
    )
    header = (
        f"{'threads':>7} {'precision':>9} {'stage':>10} "
        f"{'samples/s':>10} {'val s/epoch':>12} {'setup s':>8} "
        f"{'projected h':>12}"
    )
    print(header)
    for result in results:
        for stage in STAGES:
            r = result["stages"][stage]
            print(
                f"{result['threads']:>7} {result['precision']:>9} "
                f"{stage:>10} {r['samples_per_s']:>10.1f} "
                f"{r['seconds_val']:>12.2f} {r['seconds_setup']:>8.1f} "
                f"{result['projected_hours'][stage]:>12.2f}"
            )
        print(
            f"{'':>7} {'':>9} {'all':>10} {'':>10} {'':>12} {'':>8} "
            f"{result['projected_hours']['all']:>12.2f}"
        )
    RESULTS.parent.mkdir(exist_ok=True)
    write_json(
        RESULTS,
        {
            "cpu": cpu_name(),
            "load_average": {
                "before": load_before,
                "after": load_after,
            },
            "torch": torch.__version__,
            "benchmark_set": bench,
            "projected_set": full,
            "default_epochs": epochs,
            "results": results,
        },
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
