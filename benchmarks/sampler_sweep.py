"""Benchmark: choose the sampler defaults on the validation split.

The paper tunes the skip of its accelerated sampler (t1, t2) on
validation data (section 3.3). For each sampler setting below, CbLDM
proposes ``-n`` candidates for ``--per-type`` validation structures per
type (their stored PDFs, first draw) and the table gives the median best
raw Rw (free scale, no refinement; candidates relaxed, as
``propose`` does by default), the share of cases whose best
candidate has the atom count within 10 %, and the median propose time.

Run from the repository root::

    python benchmarks/sampler_sweep.py --data data/mmnp-v1.h5 \\
        --weights runs/mmnp-v1/weights

Writes ``benchmarks/results/sampler_sweep.json``.
"""

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "sampler_sweep.json"

SETTINGS = {
    "dpm 20": dict(sampler="dpm", steps=20),
    "ddim 50": dict(sampler="ddim", steps=50),
    "cbldm dpm 20, t1 400 t2 700": dict(
        sampler="cbldm", base="dpm", steps=20, t1=400, t2=700
    ),
    "cbldm dpm 20, t1 200 t2 800": dict(
        sampler="cbldm", base="dpm", steps=20, t1=200, t2=800
    ),
    "cbldm dpm 20, t1 100 t2 900": dict(
        sampler="cbldm", base="dpm", steps=20, t1=100, t2=900
    ),
}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/mmnp-v1.h5")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--per-type", type=int, default=3)
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    import torch

    from diffpy_cbldm.atomic import atomic_path
    from diffpy_cbldm.dataset.store import open_dataset
    from diffpy_cbldm.evaluation import _case_data, select_cases
    from diffpy_cbldm.generator import CbLDMGenerator

    torch.set_num_threads(1)
    gen = CbLDMGenerator.from_pretrained(args.weights, "cpu")
    ds = open_dataset(args.data)
    rows = select_cases(ds, "val", args.per_type, seed=args.seed)
    cases = [_case_data(ds, int(r)) for r in rows]
    print(f"{len(rows)} validation cases, n = {args.n}")
    head = f"{'setting':<30} {'raw Rw':>7} {'N±10%':>6} {'propose s':>9}"
    print(head)
    print("-" * len(head))
    table = {}
    for label, kw in SETTINGS.items():
        rws, ok, times = [], [], []
        for data, sample in cases:
            t0 = time.perf_counter()
            cands = gen.propose(data, args.n, seed=args.seed, **kw)
            times.append(time.perf_counter() - t0)
            best = min(cands, key=lambda a: a.info["rw"])
            rws.append(best.info["rw"])
            truth = len(sample.positions)
            ok.append(abs(len(best) - truth) <= 0.1 * truth)
        table[label] = {
            "settings": kw,
            "median_raw_rw": float(np.median(rws)),
            "count_within_10pct": float(np.mean(ok)),
            "median_propose_s": float(np.median(times)),
            "raw_rw": [float(v) for v in rws],
        }
        t = table[label]
        print(
            f"{label:<30} {t['median_raw_rw']:>7.3f} "
            f"{t['count_within_10pct']:>6.2f} {t['median_propose_s']:>9.2f}"
        )
    out = {
        "args": vars(args),
        "rows": rows.tolist(),
        "table": table,
        "load_average": list(os.getloadavg()),
    }
    path = Path(args.out)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
