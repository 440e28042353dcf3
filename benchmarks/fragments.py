"""Benchmark: compact fragments on every few-atom cluster of a split.

``propose`` offers the compact fragments of 5-16 atoms
(:mod:`diffpy_cbldm.clusters.fragments`) when the count it reads is at
most 16 atoms. ``benchmarks/evaluate.py`` meets only a handful of such
clusters; this takes every row of ``--split`` with at most ``--max-atoms``
atoms (all metals, draw 0, with its stored noise unless ``--noiseless``),
proposes ``-n`` candidates with the fragments and without them (the
same seed, so the same draws), refines them and ranks by Rw, as
``solve`` does.

Per setting: cases whose top-ranked candidate has the atom count within
10 % of the truth, the exact count, the median refined Rw and how many
top candidates are fragments; per case the same.

Run from the repository root (one torch thread)::

    python benchmarks/fragments.py --split val

Writes ``benchmarks/results/fragments_<split>.json``.
"""

import argparse
import logging
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"fragments": True, "no fragments": False}


def solve_rows(gen, dataset, rows, n, seed, noiseless):
    """One record per row and setting."""
    from diffpy_cbldm.evaluation import case_data, count_right
    from diffpy_cbldm.generator import refine_candidates

    records = []
    for row in rows:
        data, sample = case_data(dataset, int(row), noiseless)
        truth = len(sample.positions)
        for label, fragments in SETTINGS.items():
            started = time.perf_counter()
            cands = gen.propose(data, n, seed=seed, fragments=fragments)
            top = refine_candidates(cands, data, progress=False)[0]
            records.append(
                {
                    "row": int(row),
                    "type": sample.structure_type,
                    "natoms": truth,
                    "setting": label,
                    "count_estimate": cands[0].info["count_estimate"],
                    "top_natoms": len(top.atoms),
                    "count_right": count_right(len(top.atoms), truth),
                    "exact": len(top.atoms) == truth,
                    "refined_rw": float(top.rw),
                    "top_generator": top.atoms.info["generator"],
                    "seconds": time.perf_counter() - started,
                }
            )
    return records


def summarise(records):
    out = {}
    for label in SETTINGS:
        chosen = [r for r in records if r["setting"] == label]
        out[label] = {
            "cases": len(chosen),
            "count_right": sum(r["count_right"] for r in chosen),
            "exact": sum(r["exact"] for r in chosen),
            "median_refined_rw": float(
                np.median([r["refined_rw"] for r in chosen])
            ),
            "top_fragments": sum(
                r["top_generator"] == "compact fragment" for r in chosen
            ),
            "median_seconds": float(np.median([r["seconds"] for r in chosen])),
        }
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/mmnp-v2.h5")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--split", default="val")
    parser.add_argument("--max-atoms", type=int, default=20)
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noiseless", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)

    import torch

    from diffpy_cbldm.atomic import write_json
    from diffpy_cbldm.dataset.store import open_dataset
    from diffpy_cbldm.evaluation import machine_record
    from diffpy_cbldm.generator import CbLDMGenerator

    torch.set_num_threads(args.threads)
    logging.getLogger("diffpy_cbldm").setLevel(logging.ERROR)
    gen = CbLDMGenerator.from_pretrained(args.weights, device="cpu")
    started = time.perf_counter()
    with open_dataset(args.data) as ds:
        rows = ds.split_indices(args.split)
        rows = rows[ds.array("natoms")[rows] <= args.max_atoms]
        records = solve_rows(gen, ds, rows, args.n, args.seed, args.noiseless)
    summary = summarise(records)
    version = "without noise" if args.noiseless else "with noise"
    print(
        f"{len(rows)} {args.split} clusters of at most {args.max_atoms} "
        f"atoms, {version}, n = {args.n}"
    )
    print(
        f"{'setting':<13} {'N ±10 %':>8} {'exact':>6} {'ref. Rw':>8} "
        f"{'top frag.':>9} {'s':>6}"
    )
    for label, row in summary.items():
        print(
            f"{label:<13} {row['count_right']:>4}/{row['cases']:<3} "
            f"{row['exact']:>6} {row['median_refined_rw']:>8.3f} "
            f"{row['top_fragments']:>9} {row['median_seconds']:>6.1f}"
        )
    suffix = "_noiseless" if args.noiseless else ""
    out = args.out or (
        ROOT
        / "benchmarks"
        / "results"
        / f"fragments_{args.split}{suffix}.json"
    )
    write_json(
        out,
        {
            "args": vars(args),
            "weights": gen.name,
            "summary": summary,
            "records": records,
            "wall_s": time.perf_counter() - started,
            "machine": machine_record(),
        },
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
