"""Benchmark: build the default training set and measure it.

Builds every structure type with 5-256 atoms, the default metals and
draws, on all cores, into ``data/mmnp-v2.h5`` (git-ignored), then reports
wall time, file size, structures per type and size bin, and the cost of
the alternative to stored draws: computing a PDF with freshly drawn
settings at training time, against reading a stored one.

Run from the repository root::

    python benchmarks/dataset_build.py --out data/mmnp-v2.h5

Writes ``benchmarks/results/dataset_build.json``.
"""

import argparse
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "dataset_build.json"


def cpu_model():
    try:
        text = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in text.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def on_the_fly_cost(path, n_samples=200, seed=0):
    """Milliseconds per PDF: computed with new settings vs read from disk.

    Both on one torch thread, for `n_samples` structures drawn at random
    from the set (so with its mix of sizes).
    """
    import torch

    from diffpy_cbldm.dataset.acquisition import draw_settings
    from diffpy_cbldm.dataset.store import open_dataset
    from diffpy_cbldm.pdf.debye import DebyePDFCalculator

    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    with open_dataset(path) as ds:
        rows = np.sort(rng.choice(len(ds), size=n_samples, replace=False))
        structures = [ds.atoms(i) for i in rows]
        started = time.perf_counter()
        for i in rng.permutation(rows):
            ds.array("pdf", int(i))
        read_ms = (time.perf_counter() - started) / n_samples * 1e3
    started = time.perf_counter()
    for atoms in structures:
        acquisition = draw_settings(rng)
        calc = DebyePDFCalculator.from_settings(acquisition.settings)
        r, g = calc(atoms)
        acquisition.add_noise(g)
    compute_ms = (time.perf_counter() - started) / n_samples * 1e3
    return {"compute_ms_per_pdf": compute_ms, "read_ms_per_structure": read_ms}


def main(argv=None):
    from diffpy_cbldm.atomic import write_json
    from diffpy_cbldm.dataset.build import build_dataset
    from diffpy_cbldm.dataset.store import open_dataset

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data/mmnp-v2.h5")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="measure an existing --out without rebuilding it",
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    wall = None
    if not args.reuse:
        started = time.perf_counter()
        build_dataset(out, workers=args.workers, overwrite=args.overwrite)
        wall = time.perf_counter() - started
    with open_dataset(out) as ds:
        counts = ds.counts()
        manifest = ds.manifest
        n = len(ds)
        draws = ds.n_draws
        summary = ds.summary()
    cost = on_the_fly_cost(out)
    load = os.getloadavg()
    result = {
        "command": "python benchmarks/dataset_build.py --out " + str(out),
        "machine": {
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "load_average_1_5_15_min_after": load,
        },
        "workers": args.workers or os.cpu_count(),
        "wall_s": wall,
        "file_bytes": out.stat().st_size,
        "structures": n,
        "draws_per_structure": draws,
        "pdfs": n * draws,
        "counts": counts,
        "content_sha256": manifest["content_sha256"],
        "split_by_type": manifest["splits"]["split"]["by_type"],
        "held_out_metals": manifest["splits"]["split"]["held_out_metals"],
        **cost,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    write_json(RESULTS, result)

    print(summary)
    print()
    if wall is not None:
        print(f"wall time      {wall / 60:.1f} min")
    print(f"file size      {result['file_bytes'] / 1e6:.0f} MB")
    print(
        f"on the fly     {cost['compute_ms_per_pdf']:.1f} ms per PDF "
        f"(new settings, 1 thread); read {cost['read_ms_per_structure']:.2f}"
        " ms per structure"
    )
    print(f"load average   {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
