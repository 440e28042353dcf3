"""Benchmark: which of a generator's wrong atom counts the data could
decide, and which a better model could fix.

Reads existing results only (no model runs): the per-case records of
:mod:`benchmarks/evaluate.py` (held-out test split) and the refined Rw
of each case's true structure from :mod:`benchmarks/truth_floor.py`,
matched by split and row. A case counts as right when the top-ranked
refined candidate's atom count is within 10 % of the truth's (the
criterion of ``count_within_10pct`` in
:func:`diffpy_cbldm.evaluation.summarise`: ``count_error <= 0.10``).
For every other case the top candidate's refined Rw is compared with the
refined truth's:

* **the data cannot decide**: top <= truth + ``--tol``. A wrong count
  fits the PDF as well as the true structure, so no generator ranked by
  Rw can be expected to get it right.
* **a better model could fix**: the true structure fits better by more
  than ``--tol``; the generator did not propose it (or anything as good).

The share of cases a generator could reach is then (count right + model
failures) / cases.

Run from the repository root::

    python benchmarks/count_split.py
    python benchmarks/count_split.py --noiseless

The second reads ``evaluate_noiseless.json`` with
``truth_floor_noiseless.json``. Writes
``benchmarks/results/count_split.json`` (``count_split_noiseless.json``
with ``--noiseless``).
"""

import argparse
import json
import sys
from pathlib import Path

from diffpy_cbldm.evaluation import COUNT_TOLERANCE

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULTS = {
    False: (
        RESULTS / "evaluate.json",
        RESULTS / "truth_floor.json",
        RESULTS / "count_split.json",
    ),
    True: (
        RESULTS / "evaluate_noiseless.json",
        RESULTS / "truth_floor_noiseless.json",
        RESULTS / "count_split_noiseless.json",
    ),
}
SPLIT = "test"
"""The split evaluate.py draws its cases from
(:func:`diffpy_cbldm.evaluation.run_evaluation`)."""
CLASSES = ("count right", "data cannot decide", "model could fix")


def truth_records(truth):
    """{(split, row): record} of a truth_floor.json, whose results are
    keyed ``"split:per_type"``."""
    out = {}
    for key, block in truth["results"].items():
        split = key.split(":")[0]
        for rec in block["records"]:
            out[(split, int(rec["row"]))] = rec
    return out


def classify(records, truth, tol):
    """Sort a generator's evaluate records into :data:`CLASSES`.

    Parameters
    ----------
    records : list of dict
        evaluate.json records of one generator.
    truth : dict
        {(split, row): truth_floor record}, :func:`truth_records`.
    tol : float
        Rw margin within which the top candidate fits as well as the
        truth.

    Returns
    -------
    cases : list of dict
        One per record: row, type, extent, counts, both refined Rw, their
        difference (top minus truth) and the class.

    Raises
    ------
    SystemExit
        When the truth lacks a case, or its atom count differs (results
        of different data sets).
    """
    cases = []
    for rec in records:
        row = int(rec["row"])
        ref = truth.get((SPLIT, row))
        if ref is None:
            sys.exit(
                f"count_split: the truth JSON has no record of {SPLIT} row "
                f"{row} ({rec['type']}, {rec['natoms']} atoms) of the "
                "evaluate JSON; rerun benchmarks/truth_floor.py with cases "
                "that include it"
            )
        if int(ref["natoms"]) != int(rec["natoms"]):
            sys.exit(
                f"count_split: {SPLIT} row {row} has {rec['natoms']} atoms "
                f"in the evaluate JSON but {ref['natoms']} in the truth "
                "JSON: not the same data set"
            )
        diff = float(rec["refined_rw"]) - float(ref["refined_rw"])
        if rec["count_error"] <= COUNT_TOLERANCE:
            label = CLASSES[0]
        elif diff <= tol:
            label = CLASSES[1]
        else:
            label = CLASSES[2]
        cases.append(
            {
                "row": row,
                "type": rec["type"],
                "extent": rec.get("extent"),
                "true_natoms": int(rec["natoms"]),
                "top_natoms": int(rec["top_natoms"]),
                "count_error": float(rec["count_error"]),
                "top_refined_rw": float(rec["refined_rw"]),
                "truth_refined_rw": float(ref["refined_rw"]),
                "difference": diff,
                "class": label,
            }
        )
    return cases


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--noiseless",
        action="store_true",
        help="default to the noiseless pair of JSONs and output",
    )
    parser.add_argument(
        "--evaluate", default=None, help="evaluate.py JSON (see above)"
    )
    parser.add_argument(
        "--truth", default=None, help="truth_floor.py JSON (see above)"
    )
    parser.add_argument(
        "--tol",
        type=float,
        default=0.005,
        help="Rw margin: a wrong count within it of the truth's refined "
        "Rw is one the data cannot decide (0.005)",
    )
    parser.add_argument("--generator", default="cbldm")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    evaluate_path, truth_path, out_path = DEFAULTS[args.noiseless]
    evaluate_path = Path(args.evaluate or evaluate_path)
    truth_path = Path(args.truth or truth_path)
    out_path = Path(args.out or out_path)

    from diffpy_cbldm.atomic import write_json

    evaluation = json.loads(evaluate_path.read_text())
    truth = json.loads(truth_path.read_text())
    noiseless = {
        "evaluate": bool(evaluation["args"].get("noiseless", False)),
        "truth": bool(truth["args"].get("noiseless", False)),
    }
    if noiseless["evaluate"] != noiseless["truth"]:
        sys.exit(
            f"count_split: {evaluate_path} is "
            f"{'noiseless' if noiseless['evaluate'] else 'noisy'} but "
            f"{truth_path} is "
            f"{'noiseless' if noiseless['truth'] else 'noisy'}"
        )
    records = [
        r for r in evaluation["records"] if r["generator"] == args.generator
    ]
    if not records:
        found = sorted({r["generator"] for r in evaluation["records"]})
        sys.exit(
            f"count_split: no records of generator {args.generator!r} in "
            f"{evaluate_path} (it has {', '.join(found)})"
        )
    cases = classify(records, truth_records(truth), args.tol)

    print(
        f"{evaluate_path.name} + {truth_path.name}: {args.generator}, "
        f"{len(cases)} cases, count right within "
        f"{COUNT_TOLERANCE:.0%}, tol {args.tol:g}"
    )
    print(f"{'class':<20} {'cases':>5}  {'Rw difference':<15} rows")
    classes = {}
    for label in CLASSES:
        group = [c for c in cases if c["class"] == label]
        diffs = [c["difference"] for c in group]
        classes[label] = {
            "cases": len(group),
            "rows": [c["row"] for c in group],
            "difference_min": min(diffs) if diffs else None,
            "difference_max": max(diffs) if diffs else None,
        }
        span = f"{min(diffs):+.4f}..{max(diffs):+.4f}" if diffs else "-"
        rows = " ".join(str(c["row"]) for c in group)
        if label == CLASSES[0]:
            rows = f"({len(group)} rows)"
        print(f"{label:<20} {len(group):>5}  {span:<15} {rows}")

    print(
        f"\n{'row':>6} {'type':<12} {'true':>5} {'top':>5} "
        f"{'extent':<15} {'top Rw':>7} {'truth Rw':>8} {'diff':>8}  class"
    )
    failures = [c for c in cases if c["class"] != CLASSES[0]]
    for c in failures:
        print(
            f"{c['row']:>6} {c['type']:<12} {c['true_natoms']:>5} "
            f"{c['top_natoms']:>5} {c['extent'] or '-':<15} "
            f"{c['top_refined_rw']:>7.4f} {c['truth_refined_rw']:>8.4f} "
            f"{c['difference']:>+8.4f}  {c['class']}"
        )
    reachable = classes[CLASSES[0]]["cases"] + classes[CLASSES[2]]["cases"]
    share = reachable / len(cases)
    print(
        f"\nreachable by a generator (count right + model failures): "
        f"{reachable} of {len(cases)} ({share:.0%})"
    )

    result = {
        "command": " ".join(
            ["python benchmarks/count_split.py"]
            + (sys.argv[1:] if argv is None else list(argv))
        ),
        "args": {
            "evaluate": str(evaluate_path),
            "truth": str(truth_path),
            "tol": args.tol,
            "generator": args.generator,
            "noiseless": noiseless["evaluate"],
            "out": str(out_path),
        },
        "count_tolerance": COUNT_TOLERANCE,
        "split": SPLIT,
        "cases": len(cases),
        "classes": classes,
        "reachable": reachable,
        "reachable_share": share,
        "failures": failures,
    }
    write_json(out_path, result)
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
