"""Benchmark: the cluster estimator alone on the test cases of
``benchmarks/evaluate.py``.

:meth:`CbLDMGenerator.propose` draws every candidate's atom count about
the cluster estimator's reading of the data, so the pipeline's count is
right about where the estimator's is (docs/benchmarks/evaluate.rst).
This reads the estimator of each weights set given on exactly the cases
``evaluate.py`` solves (``--per-type`` rows of the test split per type,
draw 0, seed ``--seed``), with their stored noise and without it, told
each PDF's Qdamp (as a calibrated measurement is) and not told it. No
candidate is sampled: seconds per weights set.

Per weights set, version and Qdamp mode, per structure type, extent and
all: cases whose count estimate is within 10 % of the truth, and whose
type estimate is right.

Run from the repository root::

    python benchmarks/estimator_alone.py --weights mmnp-v2 runs/X/weights

Writes ``benchmarks/results/estimator_alone.json``.
"""

import argparse
import logging
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "estimator_alone.json"
VERSIONS = ("noisy", "noiseless")
MODES = ("qdamp_known", "qdamp_unknown")


def read_cases(gen, dataset, rows):
    """One record per (row, version, mode): the estimator's reading and
    the truth."""
    from diffpy_cbldm.evaluation import (
        case_data,
        count_right,
        diameter,
        extent,
    )
    from diffpy_cbldm.pdf.datafile import PDFData

    records = []
    for row in rows:
        for version in VERSIONS:
            data, sample = case_data(
                dataset, int(row), noiseless=version == "noiseless"
            )
            truth = len(sample.positions)
            # Qdamp 0 is "no envelope", not "unknown": unknown is a
            # header without it.
            blind = PDFData.from_arrays(
                data.r,
                data.g,
                metadata={
                    k: v for k, v in data.metadata.items() if k != "qdamp"
                },
            )
            for mode in MODES:
                known = mode == "qdamp_known"
                reading = gen.estimate(data if known else blind)
                n = reading["count_estimate"]
                records.append(
                    {
                        "row": int(row),
                        "type": sample.structure_type,
                        "natoms": truth,
                        "extent": extent(
                            diameter(sample.positions), float(data.r[-1])
                        ),
                        "version": version,
                        "mode": mode,
                        "count_estimate": n,
                        "count_estimate_width": reading[
                            "count_estimate_width"
                        ],
                        "count_right": count_right(n, truth),
                        "type_estimate": reading["type_estimate"],
                        "type_right": reading["type_estimate"]
                        == sample.structure_type,
                    }
                )
    return records


def summarise(records):
    """Per version and mode, per group of :func:`case_groups`: cases,
    counts within 10 % and right types."""
    from diffpy_cbldm.evaluation import case_groups

    out = {}
    for version in VERSIONS:
        for mode in MODES:
            chosen = [
                r
                for r in records
                if r["version"] == version and r["mode"] == mode
            ]
            out[f"{version}, {mode}"] = {
                label: {
                    "cases": len(group),
                    "count_right": sum(r["count_right"] for r in group),
                    "type_right": sum(r["type_right"] for r in group),
                }
                for label, group in case_groups(chosen)
            }
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/mmnp-v2.h5")
    parser.add_argument(
        "--weights",
        nargs="+",
        default=[None],
        help="registered names or weights folders (default: the "
        "package's default set)",
    )
    parser.add_argument("--per-type", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    import torch

    from diffpy_cbldm.atomic import write_json
    from diffpy_cbldm.dataset.store import open_dataset
    from diffpy_cbldm.evaluation import machine_record, select_cases
    from diffpy_cbldm.generator import CbLDMGenerator

    torch.set_num_threads(args.threads)
    logging.getLogger("diffpy_cbldm").setLevel(logging.ERROR)
    started = time.perf_counter()
    results = {}
    with open_dataset(args.data) as ds:
        rows = select_cases(ds, "test", args.per_type, seed=args.seed)
        for name in args.weights:
            gen = CbLDMGenerator.from_pretrained(name, device="cpu")
            records = read_cases(gen, ds, rows)
            results[gen.name] = {
                "summary": summarise(records),
                "records": records,
            }
    print(
        f"cluster estimator alone, {len(rows)} test PDFs "
        "(count within 10 % / type right)"
    )
    for name, result in results.items():
        print(f"\nweights {name}")
        summary = result["summary"]
        columns = list(summary)
        print(f"{'group':<15}" + "".join(f"{c:>26}" for c in columns))
        for label in summary[columns[0]]:
            cells = [summary[c][label] for c in columns]
            print(
                f"{label:<15}"
                + "".join(
                    f"{c['count_right']:>13}/{c['cases']:<3} "
                    f"{c['type_right']:>4}/{c['cases']:<3}"
                    for c in cells
                )
            )
    write_json(
        args.out,
        {
            "args": vars(args),
            "rows": [int(r) for r in rows],
            "weights": results,
            "wall_s": time.perf_counter() - started,
            "machine": machine_record(),
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
