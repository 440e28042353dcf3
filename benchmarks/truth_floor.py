"""Benchmark: the raw and refined Rw of the true structures, the floors
of every candidate's.

For the cases :mod:`benchmarks/evaluate.py` and
:mod:`benchmarks/structure_vae_quality.py` use (``select_cases``, first
stored PDF draw), the true cluster itself is given as a candidate: G(r)
with the data's Q settings, free scale, no refinement of the positions,
at the data's displacement (Uiso, delta2) refined with it
(:func:`diffpy_cbldm.generator.set_raw_rw`), exactly as a proposed
candidate's raw Rw is computed since 2026-12-03; column "raw .005": at
Uiso 0.005 Å² and no delta2
(:func:`diffpy_cbldm.generator.candidate_rw`), as it was computed
before. The stored PDFs carry noise and their own Biso, Qdamp, Qbroad
and delta2, so even the truth does not reach Rw 0; a generator's median
raw Rw cannot be expected below this table's. The
true cluster is then refined with the recipe every candidate gets
(:func:`diffpy_cbldm.refine.refine_cluster` defaults: scale, zoomscale,
Uiso, delta2; positions fixed), which gives the floor of the refined Rw.
Beside them, the Rw of the stored noise alone
(:func:`diffpy_cbldm.evaluation.noise_rw`, the noise regenerated from its
stored seed): the Rw of a model that is exactly the noiseless PDF. If the
refined truth sits on it, the refinement recipe models everything but
the noise, and the noise alone sets the floor. With ``--noiseless`` the
truth is fitted to the PDFs without their noise instead (noise Rw 0).
Medians per structure type and per extent (whether the particle's
largest interatomic distance fits in the PDF's r-range,
:func:`diffpy_cbldm.evaluation.extent`).

Run from the repository root::

    python benchmarks/truth_floor.py --data data/mmnp-v2.h5
    python benchmarks/truth_floor.py --noiseless \
        --out benchmarks/results/truth_floor_noiseless.json

Writes ``benchmarks/results/truth_floor.json``.
"""

import argparse
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "truth_floor.json"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/mmnp-v2.h5")
    parser.add_argument(
        "--cases",
        default="test:5,val:4",
        help="split:per-type pairs, as evaluate.py (test, 5) and "
        "structure_vae_quality.py (val, 4) select them",
    )
    parser.add_argument(
        "--noiseless",
        action="store_true",
        help="fit the PDFs without their stored noise",
    )
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    from ase import Atoms

    from diffpy_cbldm.atomic import write_json
    from diffpy_cbldm.dataset.store import open_dataset
    from diffpy_cbldm.evaluation import (
        case_groups,
        case_data,
        diameter,
        extent,
        noise_rw,
        select_cases,
    )
    from diffpy_cbldm.generator import candidate_rw, set_raw_rw
    from diffpy_cbldm.refine import refine_cluster

    ds = open_dataset(args.data)
    out = {}
    print(
        f"{'cases':<10} {'group':<14} {'n':>3} {'truth raw Rw':>12} "
        f"{'raw .005':>8} {'refined':>8} {'noise Rw':>8}"
    )
    for item in args.cases.split(","):
        split, per_type = item.split(":")
        rows = select_cases(ds, split, int(per_type), seed=0)
        records = []
        for row in rows:
            data, sample = case_data(ds, int(row), args.noiseless)
            x = sample.positions
            atoms = Atoms(f"{sample.element}{len(x)}", positions=x)
            size = diameter(x)
            set_raw_rw([atoms], data)
            records.append(
                {
                    "row": int(row),
                    "type": sample.structure_type,
                    "natoms": len(x),
                    "diameter": size,
                    "extent": extent(size, float(data.r[-1])),
                    "rw": atoms.info["rw"],
                    "rw_uiso": atoms.info["rw_uiso"],
                    "rw_delta2": atoms.info["rw_delta2"],
                    "rw_uiso_005": float(candidate_rw([atoms], data)[0]),
                    "refined_rw": float(refine_cluster(atoms, data).rw),
                    "noise_rw": (
                        0.0 if args.noiseless else noise_rw(ds, int(row))
                    ),
                }
            )
        summary, at_005, refined, noise = {}, {}, {}, {}
        for t, grp in case_groups(records):
            summary[t] = float(np.median([r["rw"] for r in grp]))
            at_005[t] = float(np.median([r["rw_uiso_005"] for r in grp]))
            refined[t] = float(np.median([r["refined_rw"] for r in grp]))
            noise[t] = float(np.median([r["noise_rw"] for r in grp]))
            print(
                f"{item:<10} {t:<14} {len(grp):>3} {summary[t]:>12.3f} "
                f"{at_005[t]:>8.3f} {refined[t]:>8.3f} {noise[t]:>8.3f}"
            )
        out[item] = {
            "summary": summary,
            "summary_uiso_005": at_005,
            "summary_refined": refined,
            "summary_noise": noise,
            "records": records,
        }
    path = Path(args.out)
    write_json(
        path,
        {
            "args": vars(args),
            "results": out,
            "load_average": list(os.getloadavg()),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
