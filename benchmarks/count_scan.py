"""Benchmark: propose at several atom counts and let Rw choose.

CbLDM draws its candidates' atom counts about the cluster estimator's
reading. When that reading is off, no candidate has the right count.
This benchmark asks whether scanning the count helps: for each test
case (the cases of :mod:`benchmarks/evaluate.py`), besides the plain
``propose(n)``, it proposes ``--per-count`` candidates at each given
count ``estimate * factor`` (``propose(count=...)``, default width),
refines every candidate with the default recipe, and ranks them all
by refined Rw. Per case it records the top count of the plain
candidates and of the pool, and the best refined Rw among candidates
with the right count (within 10 %) and with a wrong one.

With ``--truth`` (a :mod:`benchmarks/count_ambiguity.py` JSON of the
same cases) the table also counts the cases where a generated
wrong-count candidate fitted at least as well as the refined true
cluster: ambiguity with the generator's own clusters as rivals, beside
the library's of ``count_ambiguity.py``.

Run from the repository root (one process per core)::

    python benchmarks/count_scan.py --truth \\
        benchmarks/results/count_ambiguity.json \\
        --out benchmarks/results/count_scan.json &
    python benchmarks/count_scan.py --noiseless --truth \\
        benchmarks/results/count_ambiguity.json \\
        --out benchmarks/results/count_scan_noiseless.json
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "count_scan.json"
TOLERANCE = 0.10  # a count within 10 % of the truth is right


def scan_case(gen, data, natoms, n, per_count, factors, seed):
    """The plain candidates and those proposed at each scanned count,
    refined; a record of the counts and Rw the ranking sees."""
    from diffpy_cbldm.generator import refine_candidates

    plain = gen.propose(data, n=n, seed=seed)
    estimate = plain[0].info["count_estimate"]
    scanned = []
    for f in factors:
        count = float(np.clip(estimate * f, 5, gen.conventions.max_atoms))
        scanned += gen.propose(data, n=per_count, seed=seed, count=count)
    plain = refine_candidates(plain, data, progress=False)
    pool = sorted(
        plain + refine_candidates(scanned, data, progress=False),
        key=lambda result: result.rw,
    )

    def right(result):
        return abs(len(result.atoms) - natoms) / natoms <= TOLERANCE

    rights = [r.rw for r in pool if right(r)]
    wrongs = [r.rw for r in pool if not right(r)]
    return {
        "estimate": estimate,
        "plain_natoms": len(plain[0].atoms),
        "plain_rw": plain[0].rw,
        "plain_right": right(plain[0]),
        "pool_natoms": len(pool[0].atoms),
        "pool_rw": pool[0].rw,
        "pool_right": right(pool[0]),
        "right_candidates": len(rights),
        "best_right_rw": min(rights) if rights else None,
        "best_wrong_rw": min(wrongs) if wrongs else None,
    }


def summarise(records, truth):
    from diffpy_cbldm.evaluation import case_groups

    out = {}
    for g, grp in case_groups(records):
        st = {
            "cases": len(grp),
            "plain_right": sum(r["plain_right"] for r in grp),
            "pool_right": sum(r["pool_right"] for r in grp),
            "any_right": sum(r["right_candidates"] > 0 for r in grp),
        }
        if truth:
            st["wrong_fits_as_well"] = sum(
                r["best_wrong_rw"] is not None
                and r["best_wrong_rw"] <= r["truth_rw"]
                for r in grp
            )
        out[g] = st
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/mmnp-v2.h5")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--per-type", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--per-count", type=int, default=5)
    parser.add_argument(
        "--factors",
        default="0.6,0.75,0.87,1.15,1.33,1.6",
        help="scanned counts, as factors on the estimator's reading",
    )
    parser.add_argument("--noiseless", action="store_true")
    parser.add_argument(
        "--truth", help="a count_ambiguity.py JSON of the same cases"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    import torch
    from tqdm import tqdm

    from diffpy_cbldm import CbLDMGenerator
    from diffpy_cbldm.atomic import write_json
    from diffpy_cbldm.dataset.store import open_dataset
    from diffpy_cbldm.evaluation import (
        case_data,
        diameter,
        extent,
        machine_record,
        select_cases,
    )

    torch.set_num_threads(args.threads)
    factors = [float(f) for f in args.factors.split(",")]
    mode = "noiseless" if args.noiseless else "noisy"
    truth = {}
    if args.truth:
        truth = {
            r["row"]: r[mode]["truth_rw"]
            for r in json.loads(Path(args.truth).read_text())["records"]
        }
    gen = CbLDMGenerator.from_pretrained(args.weights)
    started = time.perf_counter()
    records = []
    with open_dataset(args.data) as ds:
        rows = select_cases(ds, "test", args.per_type, seed=args.seed)
        if truth and set(map(int, rows)) - set(truth):
            raise SystemExit(f"{args.truth}: not the cases of this run")
        for row in tqdm(rows, desc="cases", unit="case"):
            data, sample = case_data(ds, int(row), args.noiseless)
            x = sample.positions
            t0 = time.perf_counter()
            rec = scan_case(
                gen, data, len(x), args.n, args.per_count, factors, args.seed
            )
            size = diameter(x)
            rec.update(
                row=int(row),
                type=sample.structure_type,
                natoms=len(x),
                extent=extent(size, float(data.r[-1])),
                seconds=time.perf_counter() - t0,
            )
            if truth:
                rec["truth_rw"] = truth[int(row)]
            records.append(rec)
    summary = summarise(records, truth)
    head = (
        f"{'group':<14} {'cases':>5} {'plain right':>11} "
        f"{'pool right':>10} {'any right':>9}"
    )
    if truth:
        head += f" {'wrong fits as well as truth':>27}"
    print(f"\n{mode} PDFs, factors {factors}")
    print(head)
    print("-" * len(head))
    for g, st in summary.items():
        line = (
            f"{g:<14} {st['cases']:>5} {st['plain_right']:>11} "
            f"{st['pool_right']:>10} {st['any_right']:>9}"
        )
        if truth:
            line += f" {st['wrong_fits_as_well']:>27}"
        print(line)
    path = Path(args.out)
    write_json(
        path,
        {
            "args": vars(args),
            "weights": gen.name,
            "summary": summary,
            "records": records,
            "median_case_s": float(np.median([r["seconds"] for r in records])),
            "wall_s": time.perf_counter() - started,
            "machine": machine_record(),
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
