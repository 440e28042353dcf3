"""The ``cbldm`` command line, run in-process through ``main``."""

import ase.io
import numpy as np
import pytest
from ase.cluster import Icosahedron

from diffpy_cbldm.cli import main, read_structure
from diffpy_cbldm.pdf.datafile import PDFData, load_pdf, write_gr
from diffpy_cbldm.pdf.debye import DebyePDFCalculator


@pytest.fixture
def synthetic_gr(tmp_path):
    """A PDF file of a 55-atom Pt icosahedron expanded by 2 %."""
    cluster = Icosahedron("Pt", 3)
    cluster.positions *= 1.02
    calc = DebyePDFCalculator(rmax=20.0, qmax=25.0, qdamp=0.03, biso=0.6)
    r, g = calc(cluster)
    path = tmp_path / "pt55.gr"
    meta = {"qmax": 25.0, "qdamp": 0.03, "composition": "Pt"}
    write_gr(path, PDFData.from_arrays(r, g, metadata=meta))
    return path


def test_refine_writes_outputs_and_recovers_zoom(synthetic_gr, tmp_path):
    outdir = tmp_path / "out"
    rc = main(
        [
            "refine",
            str(synthetic_gr),
            "icosahedral:Pt:shells=3",
            "-o",
            str(outdir),
        ]
    )
    assert rc == 0
    names = sorted(p.name for p in outdir.iterdir())
    assert names == [
        "pt55.cif",
        "pt55.fgr",
        "pt55.png",
        "pt55.res",
        "pt55.xyz",
    ]
    refined = ase.io.read(outdir / "pt55.xyz")
    start = read_structure("icosahedral:Pt:shells=3")
    ratio = (
        np.linalg.norm(
            refined.positions - refined.positions.mean(0), axis=1
        ).max()
        / np.linalg.norm(
            start.positions - start.positions.mean(0), axis=1
        ).max()
    )
    assert ratio == pytest.approx(1.02, rel=1e-3)
    fit = load_pdf(outdir / "pt55.fgr")
    assert len(fit.r) > 100


def test_refine_reads_structure_file(synthetic_gr, tmp_path):
    xyz = tmp_path / "start.xyz"
    ase.io.write(xyz, Icosahedron("Pt", 3))
    rc = main(["refine", str(synthetic_gr), str(xyz), "-o", str(tmp_path)])
    assert rc == 0


def test_missing_data_file_is_one_line_error(tmp_path, capsys):
    rc = main(["refine", str(tmp_path / "nope.gr"), "icosahedral:Pt:shells=2"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "nope.gr" in err and err.startswith("cbldm: error:")
    assert "Traceback" not in err


def test_unknown_structure_is_one_line_error(synthetic_gr, capsys):
    rc = main(["refine", str(synthetic_gr), "no-such-file.xyz"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "no-such-file.xyz" in err


def test_bad_cluster_spec_names_the_field(synthetic_gr, capsys):
    rc = main(["refine", str(synthetic_gr), "octahedral:Pt:lenght=5"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "lenght" in err
