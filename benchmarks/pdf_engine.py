"""Benchmark: G(r) throughput and agreement of the PDF engines.

Engines: ``DebyePDFCalculator`` of this package (float32 and float64),
DebyeCalculator, diffpy.pdffit2 (cluster alone in a 100 Å box, baseline
added back) and diffpy.srreal's DebyePDFCalculator when importable.
Settings: r 0-30 Å step 0.01, qmin 0, qmax 25 Å⁻¹, Biso 0.3 Å², no
damping (qmin 0 because pdffit2 has no qmin and DebyeCalculator puts its
Q-grid elsewhere; the speed does not depend on it).

Clusters (ase.cluster, Au): icosahedra of 13, 55, 147 atoms, a 257-atom
decahedron and a 976-atom octahedron. "single" computes 64 (fewer for
slow engines) clusters one call each; "batch" computes 64 in one call,
each rattled by 0.02 Å so that no two are identical. The agreement is
Rw after a free scale against this package's float64 result.

A second table times what a refinement does: one ``compute`` of a
147-atom cluster with the settings unchanged, with a new Biso every call
(which moves DiffPy's Q-grid) and with a new delta2 every call.

Run from the repository root::

    python benchmarks/pdf_engine.py [--threads 1 2]

One torch thread by default: on this 2-core machine, shared with other
jobs, two threads made every parallel operation wait for a time slice
(about 5 ms each), which measured the other jobs, not the engines.

Writes ``benchmarks/results/pdf_engine.json`` and
``docs/benchmarks/pdf_engine.rst``.
"""

import argparse
import os
import platform
import statistics
import subprocess
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "pdf_engine.json"
DOCS = ROOT / "docs" / "benchmarks" / "pdf_engine.rst"
SETTINGS = dict(rmin=0.0, rmax=30.0, rstep=0.01, qmin=0.0, qmax=25.0)
BISO = 0.3
BATCH = 64


def cpu_model():
    try:
        text = subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    for line in text.splitlines():
        if line.startswith("Model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def package_versions():
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("debyecalculator", "diffpy.pdffit2", "diffpy.srreal"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def clusters():
    """{atoms: ase.Atoms}, the five benchmark clusters."""
    from ase.cluster import Decahedron, Icosahedron, Octahedron

    built = [
        Icosahedron("Au", 2),
        Icosahedron("Au", 3),
        Icosahedron("Au", 4),
        Decahedron("Au", 6, 2, 0),
        Octahedron("Au", 12, 4),
    ]
    return {len(a): a for a in built}


def rattled(atoms, count, seed=0):
    out = []
    for k in range(count):
        a = atoms.copy()
        a.rattle(0.02, seed=seed + k)
        out.append(a)
    return out


# engines: name -> (single(atoms) -> g, batch(list) -> G or None) ---------


def ours(dtype_name, threads):
    import torch

    from diffpy_cbldm.pdf.debye import DebyePDFCalculator

    calc = DebyePDFCalculator(
        **SETTINGS, biso=BISO, dtype=getattr(torch, dtype_name)
    )
    return (lambda a: calc(a)[1]), (lambda batch: calc.batch(batch)[1])


def debyecalculator(threads):
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from debyecalculator import DebyeCalculator

        calc = DebyeCalculator(
            **SETTINGS,
            qdamp=0.0,
            biso=BISO,
            device="cpu",
            dtype=torch.float32,
            num_threads=threads,
        )

    def single(atoms):
        # DebyeCalculator sums i < j only: its G is half of DiffPy's.
        return 2 * np.asarray(calc.gr(atoms)[1])

    def batch(many):
        return [2 * np.asarray(g) for _, g in calc.gr(many)]

    return single, batch


def pdffit2(threads):
    import diffpy.pdffit2 as pdffit2
    from diffpy.structure import Atom, Lattice, Structure

    pdffit2.redirect_stdout(open(os.devnull, "w"))
    box = 100.0
    rstep, rmax = SETTINGS["rstep"], SETTINGS["rmax"]
    uiso = BISO / (8 * np.pi**2)

    def single(atoms):
        xyz = atoms.positions - atoms.positions.mean(axis=0) + box / 2
        structure = Structure(lattice=Lattice(box, box, box, 90, 90, 90))
        for symbol, position in zip(atoms.get_chemical_symbols(), xyz):
            atom = Atom(symbol, xyz=position / box)
            atom.Uisoequiv = uiso
            structure.append(atom)
        fit = pdffit2.PdfFit()
        fit.add_structure(structure)
        # pdffit2 returns NaN everywhere when r = 0 is on its grid.
        npoints = int(round(rmax / rstep)) - 1
        fit.alloc("X", SETTINGS["qmax"], 0.0, rstep, rmax - rstep, npoints)
        fit.calc()
        r = np.array(fit.getR())
        g = np.array(fit.getpdf_fit())
        g = g + 4 * np.pi * len(atoms) / box**3 * r
        return np.concatenate([[0.0], g])

    return single, None


def srreal(threads):
    from diffpy.srreal.pdfcalculator import DebyePDFCalculator
    from diffpy.structure import Atom, Lattice, Structure

    calc = DebyePDFCalculator(**SETTINGS)
    uiso = BISO / (8 * np.pi**2)

    def single(atoms):
        structure = Structure(lattice=Lattice(1, 1, 1, 90, 90, 90))
        for symbol, xyz in zip(atoms.get_chemical_symbols(), atoms.positions):
            atom = Atom(symbol, xyz=xyz)
            atom.Uisoequiv = uiso
            structure.append(atom)
        return calc(structure)[1]

    return single, None


# name: (factory(threads) -> (single, batch), runs on torch threads)
ENGINES = {
    "this package, float32": (lambda t: ours("float32", t), True),
    "this package, float64": (lambda t: ours("float64", t), True),
    "DebyeCalculator (float32)": (debyecalculator, True),
    "diffpy.pdffit2": (pdffit2, False),
    "diffpy.srreal": (srreal, False),
}


def timed(function, argument, repeat):
    """Median wall and CPU seconds of `repeat` calls, after one warm-up
    call. CPU time counts every thread of the process; on a shared
    machine it is the steadier of the two."""
    function(argument)
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        function(argument)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu)


def single_count(engine, natoms):
    """How many one-at-a-time calls to time (slow engines fewer)."""
    if engine == "diffpy.pdffit2":
        return {13: 32, 55: 16, 147: 8, 257: 4}.get(natoms, 2)
    return 64 if natoms < 500 else 8


def measure_engines(selected, thread_counts):
    """Rows of the table. For each thread count and cluster size the
    engines run one after the other, so that they share the machine's
    load; engines that do not use torch run once, on one thread."""
    import torch
    from tqdm import tqdm

    from diffpy_cbldm.pdf.rw import rw_free_scale

    structures = clusters()
    rows, skipped = [], {}
    reference = {}
    for threads in thread_counts:
        torch.set_num_threads(threads)
        engines = {}
        for name in selected:
            factory, torch_threads = ENGINES[name]
            if not torch_threads and threads != thread_counts[0]:
                continue
            try:
                engines[name] = (factory(threads), torch_threads)
            except ImportError as err:
                skipped[name] = f"not importable: {err}"
        for natoms, atoms in tqdm(
            structures.items(), desc=f"{threads} thread(s)"
        ):
            many = rattled(atoms, BATCH)
            for name, ((single, batch), torch_threads) in engines.items():
                g = np.asarray(single(atoms))
                reference.setdefault(natoms, g)
                rw, scale = rw_free_scale(reference[natoms], g)
                count = single_count(name, natoms)
                wall, cpu = timed(
                    lambda group: [single(a) for a in group], many[:count], 1
                )
                row = dict(
                    engine=name,
                    threads=threads if torch_threads else 1,
                    atoms=natoms,
                    single_ms=1e3 * wall / count,
                    single_cpu_ms=1e3 * cpu / count,
                    batch_ms=None,
                    batch_cpu_ms=None,
                    rw_vs_float64=float(rw),
                    scale_vs_float64=float(scale),
                    single_calls_timed=count,
                )
                if batch is not None:
                    repeat = 3 if natoms < 500 else 1
                    wall, cpu = timed(batch, many, repeat)
                    row["batch_ms"] = 1e3 * wall / BATCH
                    row["batch_cpu_ms"] = 1e3 * cpu / BATCH
                rows.append(row)
    rows.sort(key=lambda row: (row["threads"], row["engine"], row["atoms"]))
    return rows, skipped


def measure_refinement_calls(calls=30):
    """Milliseconds per compute() of a 147-atom cluster, as a refinement
    calls it (float64, histogram pair sum)."""
    import torch
    from ase.cluster import Icosahedron

    from diffpy_cbldm.pdf.debye import DebyePDFCalculator
    from diffpy_cbldm.pdf.settings import PDFSettings

    atoms = Icosahedron("Au", 4)
    xyz = torch.as_tensor(atoms.positions)
    numbers = torch.as_tensor(atoms.numbers)
    base = PDFSettings(**SETTINGS, biso=BISO)
    cases = {
        "same settings": lambda k: base,
        "new Biso every call": lambda k: base.replace(biso=0.3 + 0.02 * k),
        "new delta2 every call": lambda k: base.replace(delta2=0.1 * k + 1),
    }
    out = {}
    for label, settings_at in cases.items():
        DebyePDFCalculator.from_settings(settings_at(0)).compute(xyz, numbers)
        start, start_cpu = time.perf_counter(), time.process_time()
        with torch.no_grad():
            for k in range(1, calls + 1):
                calc = DebyePDFCalculator.from_settings(settings_at(k))
                calc.compute(xyz, numbers)
        out[label] = dict(
            wall_ms=1e3 * (time.perf_counter() - start) / calls,
            cpu_ms=1e3 * (time.process_time() - start_cpu) / calls,
        )
    return out


def speedups(rows, other="DebyeCalculator (float32)"):
    """Batch throughput of this package over `other`, wall and CPU,
    per (threads, dtype, atoms)."""
    base = {
        (row["threads"], row["atoms"]): row
        for row in rows
        if row["engine"] == other and row["batch_ms"]
    }
    out = []
    for row in rows:
        ref = base.get((row["threads"], row["atoms"]))
        if not row["engine"].startswith("this package") or ref is None:
            continue
        out.append(
            dict(
                engine=row["engine"],
                threads=row["threads"],
                atoms=row["atoms"],
                wall=ref["batch_ms"] / row["batch_ms"],
                cpu=ref["batch_cpu_ms"] / row["batch_cpu_ms"],
            )
        )
    return out


def table(rows):
    head = (
        "engine",
        "threads",
        "atoms",
        "single ms/str",
        "single str/s",
        "single CPU ms/str",
        "batch64 ms/str",
        "batch64 str/s",
        "batch64 CPU ms/str",
        "Rw vs f64",
        "scale",
    )
    lines = []
    for row in rows:
        batch = row["batch_ms"]
        lines.append(
            (
                row["engine"],
                str(row["threads"]),
                str(row["atoms"]),
                f"{row['single_ms']:.2f}",
                f"{1e3 / row['single_ms']:.0f}",
                f"{row['single_cpu_ms']:.2f}",
                "n/a" if batch is None else f"{batch:.2f}",
                "n/a" if batch is None else f"{1e3 / batch:.0f}",
                "n/a" if batch is None else f"{row['batch_cpu_ms']:.2f}",
                f"{row['rw_vs_float64']:.1e}",
                f"{row['scale_vs_float64']:.4f}",
            )
        )
    widths = [
        max(len(head[i]), *(len(line[i]) for line in lines))
        for i in range(len(head))
    ]
    rule = "  ".join("=" * w for w in widths)
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(
        [rule, fmt.format(*head), rule]
        + [fmt.format(*line) for line in lines]
        + [rule]
    )


def write_docs(result, text, refinement):
    from diffpy_cbldm.atomic import atomic_path

    meta = result["machine"]
    threads = " and ".join(str(t) for t in meta["torch_threads"])
    versions = ", ".join(
        f"{name} {v}" for name, v in meta["versions"].items() if v
    )
    refine_lines = "\n".join(
        f"   {threads} thread(s), {label:<24} {ms['wall_ms']:6.2f} ms wall, "
        f"{ms['cpu_ms']:6.2f} ms CPU"
        for threads, cases in refinement.items()
        for label, ms in cases.items()
    )
    speedup_lines = "\n".join(
        f"   {item['engine']:<22} {item['threads']} thread(s) "
        f"{item['atoms']:>4} atoms: {item['wall']:4.1f}x wall, "
        f"{item['cpu']:4.1f}x CPU"
        for item in result["batch_speedup_over_debyecalculator"]
    )
    skipped = "".join(
        f"* {name}: {why}\n" for name, why in result["skipped"].items()
    )
    body = f"""PDF engine benchmark
====================

Throughput of G(r) and agreement between engines, measured by
``benchmarks/pdf_engine.py`` (results also in
``benchmarks/results/pdf_engine.json``).

* Command: ``{result["command"]}``
* Machine: {meta["cpu"]}, {meta["cores"]} cores shared with other jobs
  (load average {meta["load_before"]} before, {meta["load_after"]}
  after); torch {meta["torch"]}, timed with {threads} torch thread(s);
  Python {meta["python"]}; {versions}.
* Settings: r 0-30 Å step 0.01, qmin 0, qmax 25 Å⁻¹, Biso 0.3 Å², no
  damping. Au clusters from ``ase.cluster``: icosahedra of 13, 55 and
  147 atoms, a 257-atom decahedron, a 976-atom octahedron.
* "single": one call per cluster; "batch64": 64 rattled copies in one
  call (``DebyePDFCalculator.batch``, ``DebyeCalculator.gr(list)``);
  pdffit2 has no batch call. Wall-clock medians, and the process CPU
  time per structure (all threads), the steadier number on this shared
  machine: trust ratios more than absolute values.
* Threads: with two torch threads on this shared 2-core machine every
  parallel operation waited for a time slice (976-atom batch: 10.8 ms
  of CPU per structure with one thread, 204 ms with two, measured
  back to back), so the timings below use one thread unless the command
  says otherwise.
* "Rw vs f64": Rw after a free scale against this package in float64.
  pdffit2 works in real space with Q-independent scattering factors and
  continuous termination (percent-level differences expected);
  DebyeCalculator uses its own Q-grid (q from 0 in steps of
  pi / (rmax + rstep)), hence its small differences; on DiffPy's grid it
  agrees to 4-7e-4 (``tests/pdf/test_crosscheck.py``).

{skipped}
.. code-block:: text

{indent(text)}

Batch throughput over DebyeCalculator (its float32 ``gr`` of a list of
64 structures), from the table:

.. code-block:: text

{speedup_lines}

What a refinement pays per ``compute`` of a 147-atom cluster (float64,
new calculator from ``PDFSettings.replace`` every call):

.. code-block:: text

{refine_lines}
"""
    with atomic_path(DOCS) as tmp:
        tmp.write_text(body)


def indent(text):
    return "\n".join("   " + line for line in text.splitlines())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[1],
        help="torch thread counts to measure (default: 1)",
    )
    parser.add_argument(
        "--engines",
        nargs="*",
        default=list(ENGINES),
        choices=list(ENGINES),
        help="engines to run (this package's float64 is always run first)",
    )
    args = parser.parse_args(argv)
    import torch

    from diffpy_cbldm.atomic import write_json

    selected = ["this package, float64"] + [
        e for e in args.engines if e != "this package, float64"
    ]
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    rows, skipped = measure_engines(selected, args.threads)
    refinement = {}
    for threads in args.threads:
        torch.set_num_threads(threads)
        refinement[threads] = measure_refinement_calls()
    load_after = " ".join(f"{x:.1f}" for x in os.getloadavg())
    result = dict(
        command="python benchmarks/pdf_engine.py --threads "
        + " ".join(str(t) for t in args.threads),
        machine=dict(
            cpu=cpu_model(),
            cores=os.cpu_count(),
            torch=torch.__version__,
            torch_threads=args.threads,
            python=platform.python_version(),
            versions=package_versions(),
            load_before=load_before,
            load_after=load_after,
        ),
        settings=dict(SETTINGS, biso=BISO),
        rows=rows,
        skipped=skipped,
        refinement_compute_ms=refinement,
        batch_speedup_over_debyecalculator=speedups(rows),
    )
    text = table(rows)
    print(text)
    for threads, cases in refinement.items():
        for label, ms in cases.items():
            print(
                f"147 atoms, {threads} thread(s), {label}: "
                f"{ms['wall_ms']:.2f} ms wall, {ms['cpu_ms']:.2f} ms CPU"
            )
    for item in result["batch_speedup_over_debyecalculator"]:
        print(
            f"{item['engine']}, {item['threads']} thread(s), "
            f"{item['atoms']} atoms: batch64 {item['wall']:.1f}x "
            f"DebyeCalculator (wall), {item['cpu']:.1f}x (CPU)"
        )
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS, result)
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    write_docs(result, text, refinement)


if __name__ == "__main__":
    main()
