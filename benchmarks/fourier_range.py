"""Benchmark: a measured PDF without its Fourier range (Qmin, Qmax), and
the same PDF with it.

A bare two-column .gr file does not say the Q range of the transform
that made it, so G(r) of the candidates is calculated with the defaults
(Qmin 0, Qmax 25 Å⁻¹; :data:`diffpy_cbldm.refine.DEFAULTS`): Qmin 0
keeps the cluster's small-angle scattering, which a measured PDF lacks,
and Rw means little (a ``UserWarning`` says so). The data are
``shared/data/experimental/JQ_S1.gr`` (Pt nanoparticles, xPDFsuite
header with qmin 1.0, qmax 21.998 Å⁻¹); a bare copy, its numeric rows
only, is written to a temporary directory. Through the Python API:

a. ``CbLDMGenerator.from_pretrained().solve(bare, n=3, seed=0,
   element="Pt", rmax=30)``, as ``cbldm solve bare.gr -n 3 --element Pt
   --rmax 30 --seed 0``;
b. the same with ``qmin=1, qmax=22``;
c. the same on the original file, its header giving Qmin and Qmax;
d. :func:`diffpy_cbldm.refine.refine_cluster` of the cluster
   ``octahedral:Pt:length=12,cutoff=4`` (built as ``cbldm refine`` does,
   :func:`diffpy_cbldm.cli.read_structure`) against the bare file with
   rmax 30: no Q settings; qmax 22; qmin 0.8 and qmax 22.

For each: the top refined Rw, the top candidate's raw Rw (before
refinement) and atom count, the Q settings used with their source,
whether a UserWarning was raised, and the seconds taken. Skipped (exit 0)
when ``../shared`` is absent.

Run from the repository root (one torch thread, as evaluate.py)::

    python benchmarks/fourier_range.py

Writes ``benchmarks/results/fourier_range.json``.
"""

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "fourier_range.json"
SHARED = ROOT.parent / "shared" / "data"
DATA = SHARED / "experimental" / "JQ_S1.gr"
SPEC = "octahedral:Pt:length=12,cutoff=4"


def bare_copy(path, folder):
    """Write the numeric rows of a .gr file (those after the header's
    ``#L r(`` line) to `folder`; return the new path."""
    lines = Path(path).read_text().splitlines()
    start = next(
        (k + 1 for k, line in enumerate(lines) if line.startswith("#L r(")),
        None,
    )
    if start is None:
        raise ValueError(f"{path}: no '#L r(' line before the data")
    rows = [line for line in lines[start:] if line.strip()]
    out = Path(folder) / f"{Path(path).stem}_bare.gr"
    out.write_text("\n".join(rows) + "\n")
    return out


def timed(call):
    """Run `call()`, recording every warning; return (value, seconds,
    unique UserWarning messages, unique messages of other warnings)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        value = call()
        seconds = time.perf_counter() - t0
    user, other = {}, {}
    for w in caught:
        mine = issubclass(w.category, UserWarning)
        (user if mine else other)[f"{w.category.__name__}: {w.message}"] = 1
    return value, seconds, list(user), list(other)


def settings_of(result):
    """The fit range and Q settings a RefinementResult used, with their
    source (argument, data or default)."""
    return {
        name: {"value": float(value), "source": source}
        for name, (value, source) in result.settings.items()
    }


def cpu_name():
    """The CPU model from /proc/cpuinfo, else platform's guess."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def source_state():
    """The commit of the repository and the files under src/ that
    differ from it (``git status --porcelain``), or None without git."""
    import subprocess

    def git(*cmd):
        return subprocess.run(
            ["git", "-C", str(ROOT), *cmd],
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    try:
        return {
            "commit": git("rev-parse", "HEAD").strip(),
            "modified_src": git("status", "--porcelain", "--", "src")
            .rstrip()
            .splitlines(),
        }
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    if not DATA.exists():
        print(f"fourier_range: {DATA} not found (no ../shared); skipped")
        return 0

    import torch

    import diffpy_cbldm
    from diffpy_cbldm.atomic import write_json
    from diffpy_cbldm.cli import read_structure
    from diffpy_cbldm.generator import CbLDMGenerator
    from diffpy_cbldm.refine import refine_cluster

    torch.set_num_threads(args.threads)
    load_before = list(os.getloadavg())
    t0 = time.perf_counter()
    gen = CbLDMGenerator.from_pretrained()
    load_s = time.perf_counter() - t0
    octahedron = read_structure(SPEC)
    runs = []
    with tempfile.TemporaryDirectory() as folder:
        bare = bare_copy(DATA, folder)
        plan = [
            ("a", "solve", "bare", {}),
            ("b", "solve", "bare", {"qmin": 1.0, "qmax": 22.0}),
            ("c", "solve", "header", {}),
            ("d1", "refine", "bare", {}),
            ("d2", "refine", "bare", {"qmax": 22.0}),
            ("d3", "refine", "bare", {"qmin": 0.8, "qmax": 22.0}),
        ]
        for label, kind, which, q in plan:
            path = bare if which == "bare" else DATA
            if kind == "solve":
                results, seconds, warned, other = timed(
                    lambda: gen.solve(
                        path,
                        n=3,
                        seed=args.seed,
                        element="Pt",
                        rmax=30.0,
                        progress=False,
                        **q,
                    )
                )
                top = results[0]
                raw = top.atoms.info.get("raw_rw")
                ranked = [
                    {
                        "refined_rw": float(r.rw),
                        "raw_rw": float(r.atoms.info.get("raw_rw")),
                        "natoms": len(r.atoms),
                    }
                    for r in results
                ]
            else:
                top, seconds, warned, other = timed(
                    lambda: refine_cluster(octahedron, path, rmax=30.0, **q)
                )
                raw, ranked = None, None
            runs.append(
                {
                    "label": label,
                    "run": kind,
                    "file": which,
                    "given": q,
                    "settings": settings_of(top),
                    "refined_rw": float(top.rw),
                    "raw_rw": None if raw is None else float(raw),
                    "natoms": len(top.atoms),
                    "ranked": ranked,
                    "warned": bool(warned),
                    "warnings": warned,
                    "other_warnings": other,
                    "seconds": seconds,
                }
            )
            print(f"{label}: Rw {top.rw:.3f} ({seconds:.0f} s)", flush=True)

    print(
        f"\n{'run':<4} {'what':<7} {'file':<7} {'given':<20} "
        f"{'Qmin':>5} {'Qmax':>6} {'Rw':>6} {'raw Rw':>6} {'atoms':>5} "
        f"{'warn':>4} {'s':>4}"
    )
    for run in runs:
        given = ", ".join(f"{k}={v:g}" for k, v in run["given"].items())
        qmin, qmax = run["settings"]["qmin"], run["settings"]["qmax"]
        raw = "-" if run["raw_rw"] is None else f"{run['raw_rw']:.3f}"
        print(
            f"{run['label']:<4} {run['run']:<7} {run['file']:<7} "
            f"{given or '-':<20} {qmin['value']:>5.3g} "
            f"{qmax['value']:>6.5g} {run['refined_rw']:>6.3f} {raw:>6} "
            f"{run['natoms']:>5} {'yes' if run['warned'] else 'no':>4} "
            f"{run['seconds']:>4.0f}"
        )
    for run in runs:
        for message in run["warnings"]:
            print(f"{run['label']}: {message}")

    result = {
        "command": " ".join(
            ["python benchmarks/fourier_range.py"]
            + (sys.argv[1:] if argv is None else list(argv))
        ),
        "date": datetime.datetime.now().astimezone().isoformat(),
        "data": str(DATA.relative_to(ROOT.parent)),
        "structure": SPEC,
        "structure_natoms": len(octahedron),
        "weights": gen.name,
        "package": str(Path(diffpy_cbldm.__file__).parent),
        "git": source_state(),
        "args": vars(args),
        "machine": {
            "cpu": cpu_name(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": str(gen.device),
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": list(os.getloadavg()),
        },
        "weights_load_s": load_s,
        "runs": runs,
    }
    path = Path(args.out)
    write_json(path, result)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
