"""Benchmark: how close the held-out shapes are to training shapes.

The data set's ``split`` holds shapes out (docs/user_dataset.rst,
"Splits"). Shapes with an incomplete outer shell that share a parent
cluster (:attr:`ClusterShape.family`: the icosahedral and octahedral
families extended atom by atom) have nearly the same PDF when a few
atoms apart: mmnp-v1 drew them one by one, so a held-out shape could
have a relative one atom away in training; mmnp-v2 holds them out in
windows with a buffer of 5 atoms. For every val and
test shape this counts, per structure type, those with a relative of
their family in the train split, how many atoms apart the nearest one
is, and the Rw between the two clusters' PDFs (Pt at its NN distance,
the paper's PDF settings, no noise, free scale): the relative of
nearest atom count, and the best of the 5 relatives nearest in count.
With ``--any-type`` it also compares each held-out shape with every
train shape of any type within 3 atoms (cubic types share motifs: an
eroded octahedron is an fcc cluster): the median best Rw, how many are
below 0.02, and how many of the best are of another type.

With ``--evaluations``, the records of ``benchmarks/evaluate.py`` result
files are grouped by whether their test shape has such a relative (and
the others by whether they fit in the 30 Å r-range; with ``--any-type``
by whether it has a train twin instead: a train shape of any type
within 3 atoms, or one of its 5 nearest relatives, whose PDF is within
Rw 0.02 of its own): CbLDM's atom count within 10 % and median refined
Rw per group.

Run from the repository root (a built data set is needed)::

    python benchmarks/split_relatives.py [--data data/mmnp-v2.h5] \
        [--any-type] [--evaluations benchmarks/results/evaluate_70.json ...]

Prints tables and writes ``benchmarks/results/split_relatives.json``.
"""

import argparse
import json
import platform
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from diffpy_cbldm.atomic import write_json
from diffpy_cbldm.clusters.build import (
    STRUCTURE_TYPES,
    enumerate_shapes,
)
from diffpy_cbldm.dataset.acquisition import PAPER_SETTINGS
from diffpy_cbldm.dataset.store import open_dataset
from diffpy_cbldm.evaluation import COUNT_TOLERANCE
from diffpy_cbldm.pdf.debye import DebyePDFCalculator
from diffpy_cbldm.pdf.rw import rw_free_scale

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "python benchmarks/split_relatives.py"
SPLITS = ("train", "val", "test")
NEAREST = 5  # relatives nearest in atom count compared for the best Rw
WITHIN = 3  # atoms: train shapes of any type compared with --any-type
TWIN_RW = 0.02  # a train shape this close to a held-out one is its twin


def shape_splits(data):
    """The shape_id of each row of a data set, and {shape_id: split
    name} (a shape is in one split)."""
    with open_dataset(data) as ds:
        ids = ds.array("shape_id")
        codes = ds.array("split")
    ids = [sid.decode() if isinstance(sid, bytes) else str(sid) for sid in ids]
    return ids, {sid: SPLITS[int(code)] for sid, code in zip(ids, codes)}


def group_evaluation(path, ids, related, label="train relative"):
    """CbLDM's count within 10 % and median refined Rw of an evaluation's
    records (rows of the data set whose shape_ids are `ids`), grouped:
    test shapes with a train relative, the others that fit in the
    r-range, the others beyond it."""
    records = [
        r
        for r in json.loads(Path(path).read_text())["records"]
        if r["generator"] == "cbldm"
    ]
    groups = defaultdict(list)
    for r in records:
        if related.get(ids[r["row"]]):
            groups[label].append(r)
        else:
            groups[f"no {label}, {r['extent']}"].append(r)
    groups[f"no {label}, all"] = [
        r for key, g in groups.items() if key.startswith("no ") for r in g
    ]
    return {
        key: dict(
            cases=len(g),
            count_ok=sum(r["count_error"] <= COUNT_TOLERANCE for r in g),
            median_refined_rw=float(np.median([r["refined_rw"] for r in g])),
        )
        for key, g in sorted(groups.items())
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/mmnp-v2.h5")
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks/results/split_relatives.json")
    )
    parser.add_argument(
        "--any-type",
        action="store_true",
        help=f"also compare each held-out shape with every train shape "
        f"of any type within {WITHIN} atoms (about 2 minutes)",
    )
    parser.add_argument(
        "--evaluations",
        nargs="*",
        default=[],
        metavar="JSON",
        help="benchmarks/evaluate.py results to group by relatives",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()

    row_ids, split_of = shape_splits(args.data)
    shapes = {s.shape_id: s for s in enumerate_shapes()}
    missing = sorted(set(split_of) - set(shapes))
    if missing:
        raise SystemExit(
            f"{len(missing)} shapes of {args.data} are not enumerated "
            f"(e.g. {missing[0]}): a data set of another version"
        )
    families = defaultdict(list)
    for sid in split_of:
        families[shapes[sid].family].append(shapes[sid])

    calc = DebyePDFCalculator.from_settings(
        PAPER_SETTINGS, dtype=torch.float64
    )
    cache = {}

    def pdf(shape):
        if shape.shape_id not in cache:
            atoms = shape.build("Pt")
            n = len(atoms)
            cache[shape.shape_id] = calc.compute(
                torch.as_tensor(atoms.positions)[None],
                torch.as_tensor(atoms.numbers)[None],
                torch.ones(1, n, dtype=torch.bool),
            )[0].numpy()
        return cache[shape.shape_id]

    train_by_count = defaultdict(list)
    for sid, split in split_of.items():
        if split == "train":
            train_by_count[shapes[sid].natoms].append(shapes[sid])
    records = []
    for sid, split in sorted(split_of.items()):
        if split == "train":
            continue
        shape = shapes[sid]
        train = [
            s
            for s in families[shape.family]
            if split_of[s.shape_id] == "train"
        ]
        record = dict(
            shape_id=sid,
            split=split,
            type=shape.stype,
            natoms=shape.natoms,
            family=shape.family,
            train_relatives=len(train),
        )
        if train:
            gaps = [abs(s.natoms - shape.natoms) for s in train]
            near = [train[k] for k in np.argsort(gaps, kind="stable")]
            record.update(
                atoms_apart=int(min(gaps)),
                nearest=near[0].shape_id,
                rw_nearest=float(rw_free_scale(pdf(shape), pdf(near[0]))[0]),
                rw_best_near=float(
                    min(
                        rw_free_scale(pdf(shape), pdf(s))[0]
                        for s in near[:NEAREST]
                    )
                ),
            )
        if args.any_type:
            near = [
                s
                for n in range(
                    shape.natoms - WITHIN, shape.natoms + WITHIN + 1
                )
                for s in train_by_count.get(n, ())
            ]
            # None when no train shape is that close (a sparse set).
            record.update(rw_best_any=None, best_any=None)
            if near:
                rws = [rw_free_scale(pdf(shape), pdf(s))[0] for s in near]
                k = int(np.argmin(rws))
                record.update(
                    rw_best_any=float(rws[k]),
                    best_any=near[k].shape_id,
                    best_any_same_type=near[k].stype == shape.stype,
                )
        records.append(record)

    summary = {}
    for split in ("val", "test"):
        for stype in STRUCTURE_TYPES:
            group = [
                r
                for r in records
                if r["split"] == split and r["type"] == stype
            ]
            related = [r for r in group if r["train_relatives"]]
            row = dict(shapes=len(group), with_train_relative=len(related))
            near = [r for r in group if r.get("rw_best_any") is not None]
            if args.any_type and near:
                best = [r["rw_best_any"] for r in near]
                row.update(
                    with_any_within=len(near),
                    median_rw_best_any=float(np.median(best)),
                    best_any_below_002=sum(b < 0.02 for b in best),
                    best_any_other_type=sum(
                        not r["best_any_same_type"] for r in near
                    ),
                )
            if related:
                row.update(
                    one_atom_apart=sum(r["atoms_apart"] <= 1 for r in related),
                    median_atoms_apart=float(
                        np.median([r["atoms_apart"] for r in related])
                    ),
                    median_rw_nearest=float(
                        np.median([r["rw_nearest"] for r in related])
                    ),
                )
                row["median_rw_best_near"] = float(
                    np.median([r["rw_best_near"] for r in related])
                )
            summary[f"{split}/{stype}"] = row

    header = (
        f"{'split':<5} {'type':<12} {'shapes':>6} {'related':>7} "
        f"{'1 apart':>7} {'apart':>5} {'Rw near':>7} {'Rw best':>7}"
    )
    if args.any_type:
        header += f" {'any type':>8} {'<0.02':>5} {'other':>5}"
    print(header)
    print("-" * len(header))
    for key, row in summary.items():
        split, stype = key.split("/")

        def cell(name, fmt):
            value = row.get(name)
            return "--" if value is None else format(value, fmt)

        print(
            f"{split:<5} {stype:<12} {row['shapes']:>6} "
            f"{row['with_train_relative']:>7} "
            f"{cell('one_atom_apart', 'd'):>7} "
            f"{cell('median_atoms_apart', '.0f'):>5} "
            f"{cell('median_rw_nearest', '.3f'):>7} "
            f"{cell('median_rw_best_near', '.3f'):>7}"
            + (
                f" {cell('median_rw_best_any', '.3f'):>8}"
                f" {cell('best_any_below_002', 'd'):>5}"
                f" {cell('best_any_other_type', 'd'):>5}"
                if args.any_type
                else ""
            )
        )
    if args.any_type:  # a twin: a train shape whose PDF is this close
        related = {
            r["shape_id"]: min(
                r.get("rw_best_near", 1.0),
                1.0 if r["rw_best_any"] is None else r["rw_best_any"],
            )
            < TWIN_RW
            for r in records
        }
    else:
        related = {r["shape_id"]: r["train_relatives"] > 0 for r in records}
    evaluations = {}
    for path in args.evaluations:
        evaluations[path] = group_evaluation(
            path,
            row_ids,
            related,
            "train twin" if args.any_type else "train relative",
        )
        print(f"\n{path}: CbLDM, count within 10 %, median refined Rw")
        for key, row in evaluations[path].items():
            print(
                f"  {key:<30} {row['count_ok']:>3} of {row['cases']:<3} "
                f"{row['median_refined_rw']:.3f}"
            )
    result = dict(
        command=COMMAND,
        args=vars(args),
        machine=f"{platform.node()} {platform.processor()}",
        wall_s=time.perf_counter() - started,
        summary=summary,
        evaluations=evaluations,
        records=records,
    )
    out = Path(args.out)
    write_json(out, result)
    print(f"wrote {out} ({result['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
