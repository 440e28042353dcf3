"""Benchmark: how much the Morse relaxation of candidates helps, and with
which potential.

For ``--per-type`` validation structures per type (stored PDF, first
draw), CbLDM proposes ``-n`` candidates without relaxation; each setting
below then relaxes the same candidates
(:func:`diffpy_cbldm.clusters.relax.relax_clusters`, nearest-neighbour
distance from the data's first peak). The table gives, per structure
type, the median best-of-n Rw against the data (free scale, no
refinement), the share of cases whose best candidate has the true
structure type (:class:`~diffpy_cbldm.evaluation.StructureTyper`) and
the median relaxation time of the n candidates.

Run from the repository root::

    python benchmarks/relaxation.py --data data/mmnp-v2.h5 --per-type 3

Writes ``benchmarks/results/relaxation.json``.
"""

import argparse
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "relaxation.json"

SETTINGS = {
    "none": None,
    "rho0 6, cut 1.9-2.7 (ASE)": dict(rho0=6.0, rcut1=1.9, rcut2=2.7),
    "rho0 6, cut 1.9-2.7, 50 steps": dict(
        rho0=6.0, rcut1=1.9, rcut2=2.7, steps=50
    ),
    "rho0 10, cut 1.25-1.45": dict(rho0=10.0, rcut1=1.25, rcut2=1.45),
    "rho0 14, cut 1.2-1.35 (default)": {},
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/mmnp-v2.h5")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--per-type", type=int, default=3)
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    import torch

    from diffpy_cbldm.atomic import write_json
    from ase import Atoms

    from diffpy_cbldm import CbLDMGenerator
    from diffpy_cbldm.clusters.relax import relax_clusters
    from diffpy_cbldm.dataset.store import open_dataset
    from diffpy_cbldm.evaluation import (
        StructureTyper,
        case_data,
        select_cases,
    )
    from diffpy_cbldm.generator import candidate_rw, merge_close_atoms
    from diffpy_cbldm.pdf.peaks import first_peak

    torch.set_num_threads(args.threads)
    gen = CbLDMGenerator.from_pretrained(args.weights)
    ds = open_dataset(args.data)
    typer = StructureTyper(ds, ds.split_indices("train"))
    rows = select_cases(ds, "val", args.per_type, seed=1)
    records = []
    for row in rows:
        data, sample = case_data(ds, int(row))
        raw = gen.propose(data, args.n, seed=args.seed, relax=False)
        nn = first_peak(data.r, data.g)
        for name, options in SETTINGS.items():
            xs = [a.positions for a in raw]
            t0 = time.perf_counter()
            if options is not None:
                xs, _ = relax_clusters(xs, nn, **options)
                xs = [merge_close_atoms(x)[0] for x in xs]
            seconds = time.perf_counter() - t0
            atoms = [Atoms(f"Au{len(x)}", positions=x) for x in xs]
            rw = candidate_rw(atoms, data)
            best = atoms[int(np.argmin(rw))]
            records.append(
                {
                    "row": int(row),
                    "type": sample.structure_type,
                    "setting": name,
                    "best_rw": float(rw.min()),
                    "best_type": typer(best) if len(best) > 1 else "none",
                    "relax_s": seconds,
                }
            )
        print(
            f"row {row} ({sample.structure_type}): "
            + ", ".join(
                f"{r['best_rw']:.3f}"
                for r in records[-len(SETTINGS) :]  # noqa: E203
            ),
            flush=True,
        )
    types = sorted({r["type"] for r in records})
    header = f"{'setting':<32}" + "".join(f"{t[:7]:>8}" for t in types)
    print(header + f"{'all':>8}{'type ok':>8}{'relax s':>8}")
    summary = {}
    for name in SETTINGS:
        group = [r for r in records if r["setting"] == name]
        per_type = {
            t: float(
                np.median([r["best_rw"] for r in group if r["type"] == t])
            )
            for t in types
        }
        per_type["all"] = float(np.median([r["best_rw"] for r in group]))
        ok = float(np.mean([r["type"] == r["best_type"] for r in group]))
        secs = float(np.median([r["relax_s"] for r in group]))
        summary[name] = {
            "median_best_rw": per_type,
            "type_ok": ok,
            "median_relax_s": secs,
        }
        print(
            f"{name:<32}"
            + "".join(f"{per_type[t]:>8.3f}" for t in types + ["all"])
            + f"{ok:>8.2f}{secs:>8.2f}"
        )
    path = Path(args.out)
    write_json(
        path,
        {
            "args": vars(args),
            "summary": summary,
            "records": records,
            "load_average": list(os.getloadavg()),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
