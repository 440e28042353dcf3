"""Benchmark: choose the sampler defaults on the validation split.

The paper tunes the skip of its accelerated sampler (t1, t2) on
validation data (section 3.3). For each sampler setting below, CbLDM
solves ``--per-type`` validation structures per type (their stored PDFs,
first draw) exactly as ``benchmarks/evaluate.py`` solves the test split
(:func:`diffpy_cbldm.evaluation.evaluate`: ``propose`` with the setting,
every candidate refined, ranked by Rw), and the table gives, overall and
per extent (whether the particle fits in the PDF's r-range), the median
best raw Rw, the median refined Rw of the top candidate, the share of
cases whose top candidate has the atom count within 10 % and the right
structure type, and the median propose time. Settings are chosen here,
on validation data; the test split only reports the chosen one.

Run from the repository root (two processes can share the settings
and be joined with ``--merge``)::

    python benchmarks/sampler_sweep.py --data data/mmnp-v2.h5 \\
        [--weights W] [--settings "dpm 20" "ddim 50"] [--out part.json]
    python benchmarks/sampler_sweep.py --merge part1.json part2.json

Writes ``benchmarks/results/sampler_sweep.json``.
"""

import argparse
import json
import os
from pathlib import Path

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
    "cbldm dpm 20, t1 600 t2 700": dict(
        sampler="cbldm", base="dpm", steps=20, t1=600, t2=700
    ),
    "cbldm dpm 20, t1 600 t2 700, as decoded": dict(
        sampler="cbldm", base="dpm", steps=20, t1=600, t2=700, connected=False
    ),
    "cbldm dpm 20, t1 600 t2 700, one draw each": dict(
        sampler="cbldm", base="dpm", steps=20, t1=600, t2=700, draws=10
    ),
    "cbldm dpm 20, t1 600 t2 700, three draws each": dict(
        sampler="cbldm", base="dpm", steps=20, t1=600, t2=700, draws=30
    ),
}
"""Every other ``propose`` option keeps its default. Since 2026-12-03 a
decoded cluster in pieces is joined into one when that fits as well
(``connected=True``); "as decoded" keeps the decoder's clusters, as every
setting did before. Since 2026-12-03 too, ``propose`` samples two
latents per candidate and returns the best half by raw Rw (``draws`` 2
n); "one draw each" (``draws=10``, for the default ``--n 10``) samples
only the candidates, as every setting did before, "three draws each"
(``draws=30``) three per candidate."""


class _Setting:
    """A generator whose ``propose`` uses one sampler setting."""

    def __init__(self, generator, settings):
        self.generator = generator
        self.settings = settings

    def propose(self, data, n, **kwargs):
        return self.generator.propose(data, n, **kwargs, **self.settings)


def _print_table(table):
    from diffpy_cbldm.evaluation import format_summary

    summaries = {label: entry["summary"] for label, entry in table.items()}
    print(format_summary(summaries, "extent", name="setting"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="data/mmnp-v2.h5")
    parser.add_argument("--weights", default=None)
    parser.add_argument("--per-type", type=int, default=4)
    parser.add_argument("-n", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--settings",
        nargs="+",
        choices=list(SETTINGS),
        default=list(SETTINGS),
        metavar="LABEL",
        help=f"settings to run (default all: {list(SETTINGS)})",
    )
    parser.add_argument(
        "--merge",
        nargs="+",
        metavar="JSON",
        help="join earlier results (same cases) into --out",
    )
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)

    from diffpy_cbldm.atomic import write_json

    path = Path(args.out)
    if args.merge:
        parts = [json.loads(Path(p).read_text()) for p in args.merge]
        if any(p["rows"] != parts[0]["rows"] for p in parts):
            raise SystemExit("the results to merge have different cases")
        out = dict(parts[0], table={}, load_average=[])
        for part in parts:
            out["table"].update(part["table"])
            out["load_average"].append(part["load_average"])
        out["command"] = "python benchmarks/sampler_sweep.py --merge " + (
            " ".join(args.merge)
        )
        _print_table(out["table"])
        write_json(path, out)
        print(f"wrote {path}")
        return

    import torch

    from diffpy_cbldm.dataset.store import open_dataset
    from diffpy_cbldm.evaluation import (
        StructureTyper,
        evaluate,
        select_cases,
        summarise,
    )
    from diffpy_cbldm.generator import CbLDMGenerator

    torch.set_num_threads(1)
    gen = CbLDMGenerator.from_pretrained(args.weights, "cpu")
    ds = open_dataset(args.data)
    typer = StructureTyper(ds, ds.split_indices("train"))
    rows = select_cases(ds, "val", args.per_type, seed=args.seed)
    print(f"{len(rows)} validation cases, n = {args.n}, weights {gen.name}")
    table = {}
    for label in args.settings:
        kw = SETTINGS[label]
        records = evaluate(
            {label: _Setting(gen, kw)},
            ds,
            rows,
            typer=typer,
            n=args.n,
            seed=args.seed,
            progress=False,
        )
        table[label] = {
            "settings": kw,
            "summary": summarise(records)[label],
            "records": records,
        }
        _print_table({label: table[label]})
    out = {
        "args": {k: v for k, v in vars(args).items() if k != "merge"},
        "weights": gen.name,
        "rows": rows.tolist(),
        "table": table,
        "load_average": list(os.getloadavg()),
    }
    write_json(path, out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
