"""Benchmark: library screening from sums against the stretched curves.

:meth:`LibraryGenerator.screen <diffpy_cbldm.library.LibraryGenerator
.screen>` computes each library cluster's Rw at each trial stretch from
three sums (products of the stored PDFs, their squares and neighbour
products with vectors over the data grid), without forming the
stretched curves. This benchmark times it against the direct way, the
way it was done until 2026-12-04: at each trial stretch, interpolate
every library PDF at ``r / s``, apply the Qdamp envelope and compute the
free-scale Rw of the curves
(:func:`~diffpy_cbldm.pdf.rw.rw_free_scale`). For each test case of
``benchmarks/evaluate.py`` (with and without the stored noise) it
records both times, the largest difference of the best Rw over all
library clusters, and whether the best cluster and its stretch agree.
The library PDFs are computed once per Q setting (the first screen of a
case with new settings: ``cold`` time) and cached; the times compared
are those of warm screens.

Run from the repository root (one torch thread)::

    python benchmarks/library_screen.py --data data/mmnp-v2.h5 --per-type 1

Writes ``benchmarks/results/library_screen.json``.
"""

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "library_screen.json"


def screen_directly(library, data):
    """Best Rw and stretch of every library cluster from the stretched,
    damped curves themselves (the reference)."""
    from diffpy_cbldm.generator import _fit_points, as_pdf_data
    from diffpy_cbldm.pdf.rw import rw_free_scale

    settings, r, gobs, dg = _fit_points(as_pdf_data(data))
    grid, lib, _, _ = library._library_pdfs(settings, r[-1])
    envelope = np.exp(-0.5 * (settings["qdamp"] * r) ** 2)
    step = grid[1] - grid[0]
    best = np.full(len(library), np.inf)
    best_s = np.ones(len(library))
    for s in library.stretch:
        x = r / s / step
        i = np.clip(x.astype(int), 0, len(grid) - 2)
        f = (x - i).astype(np.float32)
        curves = (lib[:, i] * (1 - f) + lib[:, i + 1] * f) * envelope
        rw, _ = rw_free_scale(gobs, curves.astype(float), dg)
        better = rw < best
        best[better] = rw[better]
        best_s[better] = s
    return best, best_s


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/mmnp-v2.h5")
    parser.add_argument("--per-type", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    import torch

    from diffpy_cbldm.atomic import write_json
    from diffpy_cbldm.dataset.store import open_dataset
    from diffpy_cbldm.evaluation import (
        case_data,
        machine_record,
        select_cases,
    )
    from diffpy_cbldm.library import LibraryGenerator

    torch.set_num_threads(args.threads)
    library = LibraryGenerator(args.data)
    records = []
    with open_dataset(args.data) as ds:
        rows = select_cases(ds, "test", args.per_type, seed=args.seed)
        cases = [
            (int(row), noiseless, case_data(ds, int(row), noiseless)[0])
            for row in rows
            for noiseless in (False, True)
        ]
    head = (
        f"{'row':>6} {'noise':>5} {'cold s':>7} {'sums s':>7} "
        f"{'curves s':>8} {'max |dRw|':>9} {'same best':>9}"
    )
    print(f"{len(library)} library clusters, {len(library.stretch)} stretches")
    print(head)
    print("-" * len(head))
    for row, noiseless, data in cases:
        t0 = time.perf_counter()
        library.screen(data)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        rw, stretch = library.screen(data)
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        want, want_s = screen_directly(library, data)
        direct = time.perf_counter() - t0
        k = int(np.argmin(rw))
        rec = {
            "row": row,
            "noiseless": noiseless,
            "cold_s": cold,
            "sums_s": warm,
            "curves_s": direct,
            "max_abs_rw_difference": float(np.max(np.abs(rw - want))),
            "same_best": bool(
                k == int(np.argmin(want)) and stretch[k] == want_s[k]
            ),
        }
        records.append(rec)
        print(
            f"{row:>6} {'no' if noiseless else 'yes':>5} {cold:>7.2f} "
            f"{warm:>7.2f} {direct:>8.2f} "
            f"{rec['max_abs_rw_difference']:>9.1e} "
            f"{'yes' if rec['same_best'] else 'NO':>9}"
        )
    summary = {
        "cases": len(records),
        "median_sums_s": float(np.median([r["sums_s"] for r in records])),
        "median_curves_s": float(np.median([r["curves_s"] for r in records])),
        "median_cold_s": float(np.median([r["cold_s"] for r in records])),
        "max_abs_rw_difference": max(
            r["max_abs_rw_difference"] for r in records
        ),
        "same_best": sum(r["same_best"] for r in records),
    }
    print(
        f"median screen {summary['median_sums_s']:.2f} s from sums, "
        f"{summary['median_curves_s']:.2f} s from curves; largest |dRw| "
        f"{summary['max_abs_rw_difference']:.1e}; same best cluster and "
        f"stretch in {summary['same_best']} of {summary['cases']}"
    )
    path = Path(args.out)
    write_json(
        path,
        {
            "args": vars(args),
            "library_clusters": len(library),
            "stretches": len(library.stretch),
            "summary": summary,
            "records": records,
            "machine": machine_record(),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
