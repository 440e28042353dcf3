"""Benchmark: does the PDF fix the atom count? Rivals of the truth.

A generator whose candidates are ranked by refined Rw can only get a
test case's atom count right when the data prefer the right count: when
no cluster whose count is more than 10 % off fits the PDF as well as the
true cluster does. This benchmark measures how often that holds, with
no network involved:

1. the true cluster of each test case (the cases of
   :mod:`benchmarks/evaluate.py`: ``select_cases``, first stored PDF
   draw, with or without its noise) is refined with the recipe every
   candidate gets (:func:`diffpy_cbldm.refine.refine_cluster`
   defaults: scale, zoomscale, Uiso, delta2; positions fixed);
2. every shape of the data set, all splits, one metal per shape
   (:class:`~diffpy_cbldm.library.LibraryGenerator`), is screened
   against the PDF at its best stretch; of those whose count differs
   from the truth's by more than 10 % (the rivals), the ``--refine``
   best by screening Rw are refined with the same recipe;
3. a case is **ambiguous** when the best refined rival's Rw is at most
   the refined truth's: ranking by Rw then prefers a wrong count over
   the truth itself.

The rivals are only the data set's shapes, so the share of ambiguous
cases is a lower bound: clusters outside the set (a generator's) can
rival the truth in more cases. One minus it bounds from above the count
accuracy any Rw-ranked method can reach on these cases.

With ``--evaluation-noisy`` and ``--evaluation-noiseless``
(``evaluate.py`` JSONs of the same cases, with and without noise), the
table also gives CbLDM's count accuracy on all cases and on the
unambiguous ones, and in how many of CbLDM's wrong counts its top
candidate fitted at least as well as the refined truth.

Every case is measured twice, on its stored PDF and on the PDF without
its noise. Run from the repository root::

    python benchmarks/count_ambiguity.py --data data/mmnp-v2.h5 \\
        --evaluation-noisy benchmarks/results/evaluate_v2_70.json \\
        --evaluation-noiseless \\
        benchmarks/results/evaluate_v2_noiseless_70.json

Writes ``benchmarks/results/count_ambiguity.json``.
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

from diffpy_cbldm.evaluation import COUNT_TOLERANCE

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "count_ambiguity.json"


MODES = ("noisy", "noiseless")
"""Each case is measured with its stored noise and without it."""


def rivals(libraries, data, natoms, element, keep):
    """The `keep` clusters of `libraries` whose count is more than
    :data:`~diffpy_cbldm.evaluation.COUNT_TOLERANCE` off `natoms` and
    whose screening Rw against `data` is lowest, as ase.Atoms at their
    best stretch, best first."""
    from ase import Atoms

    found = []
    for lib in libraries:
        rw, stretch = lib.screen(data)
        off = np.abs(lib.natoms - natoms) / natoms > COUNT_TOLERANCE
        for k in np.flatnonzero(off):
            found.append((rw[k], lib, k, stretch[k]))
    found.sort(key=lambda item: item[0])
    out = []
    for screen_rw, lib, k, s in found[:keep]:
        atoms = Atoms(
            f"{element}{lib.natoms[k]}", positions=lib.positions[k] * s
        )
        atoms.info.update(
            screen_rw=float(screen_rw),
            structure_type=str(lib.types[k]),
            library_row=int(lib.rows[k]),
        )
        out.append(atoms)
    return out


def measure(ds, libraries, row, keep):
    """One case, with its stored noise and without: the refined truth
    and its best refined rival (the library PDFs are computed once for
    both, the Q settings being the same)."""
    from ase import Atoms

    from diffpy_cbldm.evaluation import case_data, diameter, extent
    from diffpy_cbldm.refine import refine_cluster

    record = {}
    for mode in MODES:
        data, sample = case_data(ds, int(row), mode == "noiseless")
        x = sample.positions
        truth = Atoms(f"{sample.element}{len(x)}", positions=x)
        refined = [
            (refine_cluster(atoms, data).rw, atoms)
            for atoms in rivals(libraries, data, len(x), sample.element, keep)
        ]
        rival_rw, rival = min(refined, key=lambda item: item[0])
        truth_rw = float(refine_cluster(truth, data).rw)
        size = diameter(x)
        record.update(
            row=int(row),
            type=sample.structure_type,
            natoms=len(x),
            diameter=size,
            extent=extent(size, float(data.r[-1])),
        )
        record[mode] = {
            "truth_rw": truth_rw,
            "rival_rw": float(rival_rw),
            "rival_natoms": len(rival),
            "rival_type": rival.info["structure_type"],
            "rival_row": rival.info["library_row"],
            "rival_screen_rw": rival.info["screen_rw"],
            "ambiguous": bool(rival_rw <= truth_rw),
        }
    return record


def join_evaluation(records, path, mode):
    """Add CbLDM's top-1 count and Rw of each case from an evaluate.py
    JSON of `mode` (its PDFs with or without noise) to the records'
    `mode` entries; the cases must be the same rows."""
    evaluation = json.loads(Path(path).read_text())
    if evaluation["args"]["noiseless"] != (mode == "noiseless"):
        raise SystemExit(
            f"{path}: evaluated {'without' if mode == 'noisy' else 'with'}"
            f" noise, given as the {mode} evaluation"
        )
    top = {
        r["row"]: r
        for r in evaluation["records"]
        if r.get("generator") == "cbldm"
    }
    missing = [r["row"] for r in records if r["row"] not in top]
    if missing:
        raise SystemExit(
            f"{path}: no CbLDM record of rows {missing[:5]} (evaluated "
            "with other cases, data or --per-type?)"
        )
    for r in records:
        e = top[r["row"]]
        if e["natoms"] != r["natoms"]:
            raise SystemExit(
                f"{path}: row {r['row']} has {e['natoms']} atoms there, "
                f"{r['natoms']} in the data set (another data set?)"
            )
        r[mode].update(
            cbldm_natoms=e["top_natoms"],
            cbldm_rw=e["refined_rw"],
            cbldm_count_right=bool(e["count_error"] <= COUNT_TOLERANCE),
        )


def summarise(records, mode):
    """Per structure type, per extent and in all, for `mode`: cases,
    ambiguous cases, and (with an evaluation) CbLDM's count accuracy."""
    from diffpy_cbldm.evaluation import case_groups

    out = {}
    for g, cases in case_groups(records):
        grp = [r[mode] for r in cases]
        clear = [r for r in grp if not r["ambiguous"]]
        st = {
            "cases": len(grp),
            "ambiguous": sum(r["ambiguous"] for r in grp),
            "ceiling": len(clear) / len(grp),
        }
        if "cbldm_count_right" in grp[0]:
            wrong = [r for r in grp if not r["cbldm_count_right"]]
            st.update(
                cbldm_right=sum(r["cbldm_count_right"] for r in grp),
                unambiguous=len(clear),
                cbldm_right_unambiguous=sum(
                    r["cbldm_count_right"] for r in clear
                ),
                cbldm_wrong=len(wrong),
                cbldm_wrong_fits_as_well=sum(
                    r["cbldm_rw"] <= r["truth_rw"] for r in wrong
                ),
            )
        out[g] = st
    return out


def print_table(summary, mode):
    joined = "cbldm_right" in summary["all"]
    head = f"{'group':<14} {'cases':>5} {'ambiguous':>9} {'ceiling':>7}"
    if joined:
        head += f" {'CbLDM right':>11} {'of clear':>9} {'wrong, fit':>10}"
    print(f"\n{mode} PDFs")
    print(head)
    print("-" * len(head))
    for g, st in summary.items():
        line = (
            f"{g:<14} {st['cases']:>5} {st['ambiguous']:>9} "
            f"{st['ceiling']:>7.0%}"
        )
        if joined:
            line += (
                f" {st['cbldm_right']:>11} "
                f"{st['cbldm_right_unambiguous']:>4}/{st['unambiguous']:<4}"
                f" {st['cbldm_wrong_fits_as_well']:>5}/{st['cbldm_wrong']:<4}"
            )
        print(line)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/mmnp-v2.h5")
    parser.add_argument("--per-type", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--refine",
        type=int,
        default=5,
        help="rivals refined per case, the best by screening Rw",
    )
    for mode in MODES:
        parser.add_argument(
            f"--evaluation-{mode}",
            metavar="JSON",
            help=f"an evaluate.py JSON of the same cases, {mode}, to join "
            "CbLDM's top-1 counts",
        )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    import torch
    from tqdm import tqdm

    from diffpy_cbldm.atomic import write_json
    from diffpy_cbldm.dataset.store import SPLITS, open_dataset
    from diffpy_cbldm.evaluation import machine_record, select_cases
    from diffpy_cbldm.library import LibraryGenerator

    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    libraries = [LibraryGenerator(args.data, split) for split in SPLITS]
    with open_dataset(args.data) as ds:
        rows = select_cases(ds, "test", args.per_type, seed=args.seed)
        records = [
            measure(ds, libraries, row, args.refine)
            for row in tqdm(rows, desc="cases", unit="case")
        ]
    summary = {}
    for mode in MODES:
        path = getattr(args, f"evaluation_{mode}")
        if path:
            join_evaluation(records, path, mode)
        summary[mode] = summarise(records, mode)
        print_table(summary[mode], mode)
    path = Path(args.out)
    write_json(
        path,
        {
            "args": vars(args),
            "summary": summary,
            "records": records,
            "library_shapes": sum(len(lib) for lib in libraries),
            "wall_s": time.perf_counter() - started,
            "machine": machine_record(),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
