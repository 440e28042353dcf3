"""``cbldm solve`` and ``cbldm evaluate`` on the tiny trained model."""

import csv
import json

from diffpy_cbldm.cli import main
from diffpy_cbldm.pdf.datafile import PDFData, write_gr

SUFFIXES = (".xyz", ".cif", ".res", ".fgr", ".png")


def _solve(measured, tmp_path, out, *options):
    """Write the measured PDF as a .gr file and run ``cbldm solve`` on it
    with the tiny weights, seed 0, no progress bar."""
    r, g, _ = measured
    gr = tmp_path / "au.gr"
    write_gr(gr, PDFData.from_arrays(r, g, metadata={"composition": "Au"}))
    return main(
        ["solve", str(gr), *options, "-o", str(out), "--seed", "0"]
        + ["--no-progress"]
    )


def test_solve_writes_ranked_files(tiny_weights, measured, tmp_path, capsys):
    out = tmp_path / "out"
    code = _solve(
        measured, tmp_path, out, "-n", "3", "--weights", str(tiny_weights)
    )
    assert code == 0
    for rank in (1, 2, 3):
        for suffix in (".xyz", ".cif", ".res", ".fgr", ".png"):
            assert (out / f"rank{rank:02d}{suffix}").is_file()
    assert (out / "best_fits.png").read_bytes()[:4] == b"\x89PNG"
    with open(out / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(row["rank"]) for row in rows] == [1, 2, 3]
    rws = [float(row["rw"]) for row in rows]
    assert rws == sorted(rws)
    assert all(int(row["pieces"]) >= 1 for row in rows)
    assert all(int(row["joined_sites"]) >= 0 for row in rows)
    assert all(int(row["generated_atoms"]) >= 1 for row in rows)
    # one displacement per run, the one every raw Rw was computed with
    assert len({(row["raw_uiso"], row["raw_delta2"]) for row in rows}) == 1
    assert 0 < float(rows[0]["raw_uiso"]) <= 0.1
    printed = capsys.readouterr().out
    assert "rank" in printed and rows[0]["rw"] in printed
    assert "wrote 17 files" in printed
    # Again into the same folder with fewer candidates: the earlier run's
    # third candidate goes, a file of the user's stays.
    (out / "notes.txt").write_text("mine")
    code = _solve(
        measured, tmp_path, out, "-n", "2", "--weights", str(tiny_weights)
    )
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [f"rank0{k}{s}" for k in (1, 2) for s in SUFFIXES]
        + ["best_fits.png", "summary.csv", "notes.txt"]
    )
    printed = capsys.readouterr().out
    assert "removed 5 files of an earlier run" in printed
    assert "rank03.*" in printed


def test_solve_checks_its_outputs_before_the_work(
    tiny_weights, measured, tmp_path, capsys
):
    """An output folder that is a file, a --top below 1 and a negative
    --site-moves are one-line
    errors before any sampling, and nothing is written."""
    blocker = tmp_path / "afile"
    blocker.write_text("")
    for out, options in (
        (blocker, ()),
        (blocker / "below", ()),
        (tmp_path / "out", ("--top", "0")),
        (tmp_path / "out", ("--site-moves", "-1")),
        (tmp_path / "out", ("--site-count-window", "-0.1")),
    ):
        code = _solve(
            measured, tmp_path, out, "--weights", str(tiny_weights), *options
        )
        assert code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("cbldm: error:")
        assert (
            "afile is a file" in err
            or "--top must be at least 1" in err
            or "--site-moves must be at least 0" in err
            or "--site-count-window must be >= 0" in err
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "au.gr"]


def test_solve_writes_nothing_when_a_file_cannot_go_in(
    tiny_weights, measured, tmp_path, capsys
):
    """A folder in the place of one output file: a one-line error after
    the work, and no file of the run in the output folder."""
    out = tmp_path / "out"
    (out / "rank02.cif").mkdir(parents=True)
    code = _solve(
        measured, tmp_path, out, "-n", "2", "--weights", str(tiny_weights)
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "rank02.cif: it is a folder" in err and err.count("\n") == 1
    assert [p.name for p in out.iterdir()] == ["rank02.cif"]


def test_solve_reports_bad_input_in_one_line(tiny_weights, tmp_path, capsys):
    gr = tmp_path / "short.gr"
    gr.write_text("".join(f"{0.1 * k:.2f} 1.0\n" for k in range(1, 60)))
    code = main(
        [
            "solve",
            str(gr),
            "--weights",
            str(tiny_weights),
            "--element",
            "Au",
            "-o",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("cbldm: error:") and "ends at r = 5.9" in err
    assert not (tmp_path / "o").exists()


def test_unknown_weights_name_is_one_line(tmp_path, measured, capsys):
    r, g, _ = measured
    gr = tmp_path / "au.gr"
    write_gr(gr, PDFData.from_arrays(r, g, metadata={"composition": "Au"}))
    code = main(["solve", str(gr), "--weights", "nope-v9"])
    assert code == 2
    assert "nope-v9" in capsys.readouterr().err


def test_evaluate_runs_both_generators(tiny_weights, tiny_set, tmp_path):
    out = tmp_path / "eval.json"
    code = main(
        [
            "evaluate",
            "--data",
            str(tiny_set),
            "--weights",
            str(tiny_weights),
            "--per-type",
            "2",
            "-n",
            "2",
            "-o",
            str(out),
        ]
    )
    assert code == 0
    result = json.loads(out.read_text())
    assert set(result["summary"]) == {"cbldm", "library"}
    for name, entry in result["summary"].items():
        assert entry["all"]["cases"] == 2
        assert 0 < entry["all"]["median_raw_rw"]
        assert 0 < entry["all"]["median_refined_rw"]
    assert len(result["records"]) == 4


def test_evaluate_with_the_true_count_given(
    tiny_weights, tiny_set, tmp_path, capsys
):
    """--count-given hands CbLDM each case's true count: its candidates
    keep to it; with library screening (whose held-out shapes may have no
    cluster of that count) it is a one-line error."""
    out = tmp_path / "given.json"
    options = ["evaluate", "--data", str(tiny_set), "--weights"]
    options += [str(tiny_weights), "--per-type", "2", "-n", "2"]
    code = main(options + ["--count-given", "--no-library", "-o", str(out)])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["args"]["count_given"] is True
    assert set(result["summary"]) == {"cbldm"}
    for rec in result["records"]:
        assert abs(rec["raw_natoms"] - rec["natoms"]) <= 0.1 * rec["natoms"]
    code = main(options + ["--count-given", "-o", str(tmp_path / "x.json")])
    assert code == 2
    assert "count_given evaluates CbLDM alone" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_solve_pools_library_candidates(
    tiny_weights, tiny_set, measured, tmp_path
):
    """--library adds screened library clusters to CbLDM's candidates;
    all are refined and ranked together."""
    out = tmp_path / "pooled"
    code = _solve(
        measured,
        tmp_path,
        out,
        "-n",
        "2",
        "--library",
        str(tiny_set),
        "--library-n",
        "3",
        "--weights",
        str(tiny_weights),
    )
    assert code == 0
    with open(out / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    generators = [row["generator"] for row in rows]
    assert len(rows) == 5
    assert generators.count("library") == 3
    assert sum(name.startswith("CbLDM") for name in generators) == 2
    rws = [float(row["rw"]) for row in rows]
    assert rws == sorted(rws)


def test_evaluations_of_each_generator_merge(tiny_weights, tiny_set):
    """CbLDM and library screening evaluated apart (two processes on two
    cores) join into the same summary as one joint run."""
    import pytest

    from diffpy_cbldm.evaluation import merge_results, run_evaluation

    common = dict(
        weights=str(tiny_weights), per_type=2, n=2, echo=lambda text: None
    )
    a = run_evaluation(tiny_set, library=False, **common)
    b = run_evaluation(tiny_set, cbldm=False, **common)
    assert set(a["summary"]) == {"cbldm"} and set(b["summary"]) == {"library"}
    merged = merge_results([a, b], echo=lambda text: None)
    assert set(merged["summary"]) == {"cbldm", "library"}
    assert len(merged["records"]) == 4
    assert merged["summary"]["cbldm"] == a["summary"]["cbldm"]
    assert merged["summary"]["library"] == b["summary"]["library"]
    assert merged["weights"] == a["weights"]
    with pytest.raises(ValueError, match="different cases"):
        merge_results([a, dict(b, args=dict(b["args"], per_type=3))])
    # CbLDM told the true counts is not compared with a library run.
    told = dict(a, args=dict(a["args"], count_given=True))
    with pytest.raises(ValueError, match="different cases"):
        merge_results([told, b])
    assert not merged["args"]["count_given"]
    # Every record carries the Rw of its PDF's noise; a noiseless run
    # gives the same cases without it and does not merge with a noisy one.
    assert all(0 < r["noise_rw"] < 1 for r in a["records"])
    clean = run_evaluation(tiny_set, cbldm=False, noiseless=True, **common)
    assert [r["row"] for r in clean["records"]] == [
        r["row"] for r in b["records"]
    ]
    assert all(r["noise_rw"] == 0.0 for r in clean["records"])
    assert clean["summary"]["library"]["all"]["median_noise_rw"] == 0.0
    assert clean["args"]["noiseless"] and clean["reference"] == []
    with pytest.raises(ValueError, match="different cases"):
        merge_results([a, clean])
    with pytest.raises(ValueError, match="nothing to evaluate"):
        run_evaluation(tiny_set, library=False, cbldm=False, **common)


def test_solve_rejects_bad_library_options(
    tiny_weights, measured, tmp_path, capsys
):
    out = tmp_path / "bad"
    code = _solve(
        measured,
        tmp_path,
        out,
        "--library",
        str(tmp_path / "missing.h5"),
        "--weights",
        str(tiny_weights),
    )
    assert code == 2
    assert "missing.h5" in capsys.readouterr().err
    code = _solve(
        measured,
        tmp_path,
        out,
        "--library-n",
        "0",
        "--weights",
        str(tiny_weights),
    )
    assert code == 2
    assert "--library-n must be at least 1, got 0" in capsys.readouterr().err
    assert not out.exists()


def test_solve_draws_option(tiny_weights, measured, tmp_path, capsys):
    """--draws reaches propose: with as many draws as candidates every
    draw is refined; fewer is a one-line error and writes nothing."""
    out = tmp_path / "every"
    weights = ("--weights", str(tiny_weights))
    code = _solve(measured, tmp_path, out, "-n", "3", "--draws", "3", *weights)
    assert code == 0
    with open(out / "summary.csv") as fh:
        drawn = sorted(int(row["candidate"]) for row in csv.DictReader(fh))
    assert drawn == [0, 1, 2]
    out = tmp_path / "few"
    code = _solve(measured, tmp_path, out, "-n", "3", "--draws", "2", *weights)
    assert code == 2
    err = capsys.readouterr().err
    assert "draws must be at least n = 3" in err and "got 2" in err
    assert not out.exists()


def test_solve_q_options_reach_the_fits(
    tiny_weights, measured, tmp_path, caplog, capsys
):
    from diffpy_cbldm.pdf.datafile import load_pdf

    weights = ("--weights", str(tiny_weights), "-n", "2")
    assert _solve(measured, tmp_path, tmp_path / "bare", *weights) == 0
    # The file has no header: one log line says so and what to give.
    said = [m for m in caplog.messages if "gives no Qmin or Qmax" in m]
    assert len(said) == 1 and "--qmin --qmax" in said[0]
    caplog.clear()
    given = ("--qmin", "0.7", "--qmax", "25", "--qdamp", "0.03")
    capsys.readouterr()
    code = _solve(measured, tmp_path, tmp_path / "given", *weights, *given)
    assert code == 0
    assert not any("gives no" in m for m in caplog.messages)
    assert (
        "Qmin 0.7 (argument), Qmax 25 (argument), Qdamp 0.03 (argument), "
        "Qbroad 0 (default)" in capsys.readouterr().out
    )
    fit = load_pdf(tmp_path / "given" / "rank01.fgr")
    assert (fit.qmin, fit.qmax, fit.qdamp) == (0.7, 25.0, 0.03)


def test_solve_count_option(tiny_weights, measured, tmp_path, capsys):
    """--count reaches propose: every candidate is near it and the run
    says so; a bad count is a one-line error and writes nothing."""
    out = tmp_path / "given"
    weights = ("--weights", str(tiny_weights))
    code = _solve(
        measured, tmp_path, out, "-n", "3", "--count", "40", *weights
    )
    assert code == 0
    assert "atom count given: 40 (ln n ± 0.05)" in capsys.readouterr().out
    with open(out / "summary.csv") as fh:
        # decoded: the tiny model's atoms merged into others count too;
        # the site refinement may change the count after that
        counts = [
            int(row["generated_atoms"]) + int(row["merged_atoms"])
            for row in csv.DictReader(fh)
        ]
    assert all(36 <= n <= 44 for n in counts), counts
    out = tmp_path / "bad"
    code = _solve(
        measured,
        tmp_path,
        out,
        "--count",
        "40",
        "--count-width",
        "0",
        *weights,
    )
    assert code == 2
    assert "count_width must be > 0" in capsys.readouterr().err
    assert not out.exists()


def test_solve_count_reaches_the_library(
    tiny_weights, tiny_set, measured, tmp_path
):
    """--count with --library: the pooled library clusters are those
    within two widths of the count, too."""
    import numpy as np

    from diffpy_cbldm.library import LibraryGenerator

    count = int(np.median(LibraryGenerator(tiny_set).natoms))
    out = tmp_path / "pooled"
    code = _solve(
        measured,
        tmp_path,
        out,
        *("-n", "2", "--count", str(count), "--library", str(tiny_set)),
        *("--library-n", "2", "--weights", str(tiny_weights)),
    )
    assert code == 0
    with open(out / "summary.csv") as fh:
        rows = list(csv.DictReader(fh))
    library = [int(r["n_atoms"]) for r in rows if r["generator"] == "library"]
    assert library
    assert all(abs(np.log(n / count)) <= 0.1 for n in library), library


def test_solve_offers_compact_fragments_to_a_few_atom_particle(
    tiny_weights, tmp_path, capsys
):
    """A 13-atom icosahedron with --count 13: the run says how many
    candidates are compact fragments, the summary names them (no aDGP
    residual); --no-fragments samples only."""
    from diffpy_cbldm.clusters.build import build_cluster
    from diffpy_cbldm.pdf.debye import DebyePDFCalculator

    r, g = DebyePDFCalculator(
        rmin=0.5, rmax=20.0, rstep=0.02, qmin=0.7, qmax=25.0
    )(build_cluster("icosahedral:Pt:shells=2"))
    gr = tmp_path / "pt13.gr"
    meta = {"composition": "Pt", "qmin": 0.7, "qmax": 25.0}
    write_gr(gr, PDFData.from_arrays(r, g, metadata=meta))
    rows = {}
    for label, extra in (("plain", []), ("off", ["--no-fragments"])):
        out = tmp_path / label
        code = main(
            ["solve", str(gr), "-n", "3", "--count", "13", "--seed", "0"]
            + ["--weights", str(tiny_weights), "--no-progress"]
            + extra
            + ["-o", str(out)]
        )
        assert code == 0
        with open(out / "summary.csv") as fh:
            rows[label] = list(csv.DictReader(fh))
        printed = capsys.readouterr().out
        pieces = [
            row
            for row in rows[label]
            if row["generator"] == "compact fragment"
        ]
        if pieces:
            assert f"{len(pieces)} of the 3 candidates are compact" in printed
            assert all(row["adgp_residual"] == "" for row in pieces)
    assert rows["plain"][0]["generator"] == "compact fragment"
    assert rows["plain"][0]["n_atoms"] == "13"
    assert not any(r["generator"] == "compact fragment" for r in rows["off"])
