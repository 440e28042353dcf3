"""Benchmark bookkeeping: two runs of ``benchmarks/evaluate.py`` on the
same cases, compared case by case.

Summaries hide trades: a new estimator that gets twelve more atom counts
right may lose five others. This matches the two runs' test records by
(generator, row), which needs the same ``--per-type`` and ``--seed``,
and reports per structure type and extent the counts within 10 % and the
median refined Rw of each run, every case gained and lost, and, where
both runs solved them, the DiffPy reference and experimental PDFs'
top-ranked candidates side by side. Nothing is recomputed; it takes a
second.

Run from the repository root::

    python benchmarks/compare_evaluations.py \\
        benchmarks/results/evaluate_v2_70.json \\
        benchmarks/results/evaluate_v2_d24_70.json \\
        --out benchmarks/results/compare_v2_d24.json

Writes the JSON given by ``--out`` (nothing without it).
"""

import argparse
import json
from pathlib import Path

import numpy as np


def load_records(path):
    """The test records of an evaluate.py JSON, keyed by (generator,
    row), and the whole file."""
    result = json.loads(Path(path).read_text())
    if "records" not in result:
        raise ValueError(f"{path}: no 'records'; not an evaluate.py JSON")
    records = {(r["generator"], r["row"]): r for r in result["records"]}
    return records, result


def _right(record):
    from diffpy_cbldm.evaluation import COUNT_TOLERANCE

    return record["count_error"] <= COUNT_TOLERANCE


def _median(values):
    values = [v for v in values if v is not None]
    return float(np.median(values)) if values else None


def group_table(before, after, keys):
    """Per group (structure type, extent, all): cases, counts right and
    median refined Rw of each run, on the matched `keys`."""
    groups = {}
    for key in keys:
        for name in (before[key]["type"], before[key]["extent"], "all"):
            groups.setdefault(name, []).append(key)
    rows = []
    for name, members in groups.items():
        rows.append(
            {
                "group": name,
                "cases": len(members),
                "right_before": sum(_right(before[k]) for k in members),
                "right_after": sum(_right(after[k]) for k in members),
                "refined_rw_before": _median(
                    before[k]["refined_rw"] for k in members
                ),
                "refined_rw_after": _median(
                    after[k]["refined_rw"] for k in members
                ),
            }
        )
    rows.sort(key=lambda row: (row["group"] == "all", row["group"]))
    return rows


def changed_cases(before, after, keys):
    """Cases whose count is right in one run only: (gained, lost), each
    a list of dicts with the truth and both runs' top candidates."""
    gained, lost = [], []
    for key in keys:
        b, a = before[key], after[key]
        if _right(b) == _right(a):
            continue
        case = {
            "generator": key[0],
            "row": key[1],
            "type": b["type"],
            "natoms": b["natoms"],
            "extent": b["extent"],
            "top_natoms_before": b["top_natoms"],
            "top_natoms_after": a["top_natoms"],
            "refined_rw_before": b["refined_rw"],
            "refined_rw_after": a["refined_rw"],
        }
        (gained if _right(a) else lost).append(case)
    return gained, lost


def solved_side_by_side(before, after, field):
    """The reference or experimental PDFs both runs solved: truth (where
    known) and each run's top-ranked count, type and refined Rw."""
    first = {c["case"]: c for c in before.get(field) or []}
    out = []
    for case in after.get(field) or []:
        if case["case"] not in first:
            continue
        b, a = first[case["case"]]["ranked"][0], case["ranked"][0]
        out.append(
            {
                "case": case["case"],
                "true_natoms": case.get("true_natoms"),
                "true_type": case.get("true_type"),
                "before": {k: b[k] for k in ("natoms", "type", "rw")},
                "after": {k: a[k] for k in ("natoms", "type", "rw")},
            }
        )
    return out


def compare(before_path, after_path):
    """The whole comparison as a dict (see the module docstring).

    Raises
    ------
    ValueError
        A file that is not an evaluate.py JSON, or two runs that share
        no test case.
    """
    before, before_run = load_records(before_path)
    after, after_run = load_records(after_path)
    keys = sorted(set(before) & set(after))
    if not keys:
        raise ValueError(
            f"{before_path} and {after_path} share no test case (the "
            "same --per-type and --seed select the same rows)"
        )
    gained, lost = changed_cases(before, after, keys)
    return {
        "before": str(before_path),
        "after": str(after_path),
        "before_weights": before_run.get("weights"),
        "after_weights": after_run.get("weights"),
        "matched_cases": len(keys),
        "unmatched_cases": len(set(before) ^ set(after)),
        "table": group_table(before, after, keys),
        "gained": gained,
        "lost": lost,
        "reference": solved_side_by_side(before_run, after_run, "reference"),
        "experimental": solved_side_by_side(
            before_run, after_run, "experimental"
        ),
    }


def _rw(value):
    return "  -  " if value is None else f"{value:.3f}"


def print_report(result):
    print(f"before: {result['before']}")
    print(f"after:  {result['after']}")
    print(
        f"{result['matched_cases']} cases matched, "
        f"{result['unmatched_cases']} in one run only"
    )
    print()
    print(
        f"{'group':<16} {'cases':>5} {'N±10% before':>13} "
        f"{'after':>6} {'ref. Rw before':>15} {'after':>6}"
    )
    for row in result["table"]:
        print(
            f"{row['group']:<16} {row['cases']:>5} "
            f"{row['right_before']:>13} {row['right_after']:>6} "
            f"{_rw(row['refined_rw_before']):>15} "
            f"{_rw(row['refined_rw_after']):>6}"
        )
    for label in ("gained", "lost"):
        cases = result[label]
        print()
        print(f"{label} ({len(cases)}):")
        for c in cases:
            print(
                f"  row {c['row']:>5} {c['type']:<12} {c['natoms']:>4} "
                f"atoms ({c['extent']}): {c['top_natoms_before']} -> "
                f"{c['top_natoms_after']}"
            )
    for label in ("reference", "experimental"):
        if not result[label]:
            continue
        print()
        print(f"{label} PDFs, top-ranked (atoms, type, Rw):")
        for c in result[label]:
            truth = ""
            if c["true_natoms"] is not None:
                truth = f" truth {c['true_natoms']} {c['true_type']};"
            b, a = c["before"], c["after"]
            print(
                f"  {c['case']}:{truth} {b['natoms']} {b['type']} "
                f"{b['rw']:.3f} -> {a['natoms']} {a['type']} "
                f"{a['rw']:.3f}"
            )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", help="evaluate.py JSON, the old run")
    parser.add_argument("after", help="evaluate.py JSON, the new run")
    parser.add_argument("--out", help="write the comparison as JSON")
    args = parser.parse_args(argv)
    result = compare(args.before, args.after)
    print_report(result)
    if args.out:
        from diffpy_cbldm.atomic import write_json

        print(f"wrote {write_json(args.out, result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
