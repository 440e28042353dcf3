"""Reading, checking, resampling and writing measured PDFs."""

import codecs
import logging
import os
import signal
import sys

import numpy as np
import pytest

from diffpy_cbldm.pdf.datafile import (
    MIN_POINTS,
    PDFData,
    PDFFileError,
    load_pdf,
    write_gr,
)

EXPERIMENTAL_FILES = ("Au144pMBA.gr", "JQ_S1.gr")
REFERENCE_FILES = (
    "BCC_h_2_k_9_l_9.gr",
    "Decahedron_p_1_q_1_r_1.gr",
    "HCP_Size1_2_Size2_2_Size3_7.gr",
    "Icosahedron_shell_2.gr",
    "Octahedron_length_6.gr",
    "SC_h_2_k_2_l_7.gr",
)


def write_text(tmp_path, text, name="data.gr"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def data_rows(n=20, step=0.1, with_dg=False):
    """Rows ``r G [dG]`` of a smooth G(r) on a uniform grid."""
    rows = []
    for i in range(n):
        r = i * step
        row = f"{r!r} {float(np.sin(3.0 * r))!r}"
        rows.append(row + (f" {0.01 + 0.001 * i!r}" if with_dg else ""))
    return rows


def assert_names(excinfo, path, lineno, text):
    """The error names the file, the line and the offending text."""
    message = str(excinfo.value)
    assert str(path) in message
    assert f"line {lineno}" in message
    assert text in message


def header_length(path):
    """Lines before the first data row, found independently of load_pdf:
    the data follow the '#L' line."""
    lines = path.read_text().splitlines()
    return next(i for i, line in enumerate(lines) if line.startswith("#L")) + 1


# ---------------------------------------------------------------- real files


def test_pdfgetx3_file(experimental_dir):
    path = experimental_dir / "Au144pMBA.gr"
    data = load_pdf(path)
    assert data.path == path
    assert data.qmin == 1.33
    assert data.qmax == 28.0
    assert data.composition == "Au"
    assert data.mode == "xray"
    assert data.metadata["qmaxinst"] == 29.0
    assert data.metadata["version"] == "pdfgetx3-1.0-r2239-20130415"
    assert data.dg is None
    expected = np.loadtxt(path, skiprows=header_length(path))
    np.testing.assert_array_equal(data.r, expected[:, 0])
    np.testing.assert_array_equal(data.g, expected[:, 1])
    # The grid the header announces: rmin 0, rmax 20, rstep 0.01.
    np.testing.assert_allclose(data.r, 0.01 * np.arange(2001), atol=1e-12)


def test_xpdfsuite_file(experimental_dir):
    data = load_pdf(experimental_dir / "JQ_S1.gr")
    assert data.qmin == 1.0
    assert data.qmax == 21.998245281
    assert data.composition == "Pt"
    assert data.metadata["wavelength"] == 0.1
    assert data.mode == "xray"
    assert data.metadata["inputdir"].endswith("DESY_Sep17")
    np.testing.assert_allclose(data.r, 0.01 * np.arange(5001), atol=1e-12)


@pytest.mark.parametrize("name", EXPERIMENTAL_FILES)
def test_agrees_with_srfit_pdfparser(experimental_dir, name):
    from diffpy.srfit.pdf import PDFParser

    parser = PDFParser()
    parser.parseFile(str(experimental_dir / name))
    x, y, _, dy = parser.getData()
    meta = parser.getMetaData()
    data = load_pdf(experimental_dir / name)
    np.testing.assert_array_equal(data.r, x)
    np.testing.assert_array_equal(data.g, y)
    assert dy is None and data.dg is None
    assert (data.qmin, data.qmax) == (meta["qmin"], meta["qmax"])
    assert {"X": "xray", "N": "neutron"}[meta["stype"]] == data.mode


@pytest.mark.parametrize("name", REFERENCE_FILES)
def test_deepstruc_reference_file(reference_dir, name):
    path = reference_dir / name
    data = load_pdf(path)
    expected = np.loadtxt(path)
    np.testing.assert_array_equal(data.r, expected[:, 0])
    np.testing.assert_array_equal(data.g, expected[:, 1])
    assert data.metadata == {}
    assert data.rstep == pytest.approx(30 / 2999)


# ------------------------------------------------------------- other formats

PDFGUI_OBSERVED = """\
History written: Tue Jan  6 12:00:00 2026
produced by tester
##### PDFgui
stype=N  neutron scattering
qmax=0   correction not applied
qdamp=0.04
qbroad=0.01
dscale=1.2
# metadata
temperature=300
##### start data
#L r(A) G(r) d_r d_Gr
"""


def test_pdfgui_observed_file(tmp_path):
    r = 0.05 * np.arange(1, 41)
    g, dg = np.cos(2 * r), 0.02 + 0.001 * r
    rows = [f"{a:g} {b:g} 0 {c:g}" for a, b, c in zip(r, g, dg)]
    path = write_text(tmp_path, PDFGUI_OBSERVED + "\n".join(rows) + "\n")
    data = load_pdf(path)
    expected = np.array([[float(w) for w in row.split()] for row in rows])
    np.testing.assert_array_equal(data.r, expected[:, 0])
    np.testing.assert_array_equal(data.g, expected[:, 1])
    np.testing.assert_array_equal(data.dg, expected[:, 3])
    assert data.mode == "neutron"
    assert data.metadata["qmax"] == 0.0
    assert data.qmax is None  # DiffPy's "no termination correction"
    assert (data.qdamp, data.qbroad) == (0.04, 0.01)
    assert data.metadata["scale"] == 1.2
    assert data.metadata["temperature"] == 300.0


def test_pdfgui_fit_file_gives_the_observed_curve(tmp_path):
    # PDFgui's FitDataSet.writeCalcStr: r, Gcalc, 0, difference, Gdiff
    # with Gdiff = Gobs - Gcalc.
    r = 0.01 * np.arange(50, 100)
    gobs, gcalc = np.sin(5 * r), 0.9 * np.sin(5 * r)
    header = (
        "History written: Tue Jan  6 12:00:00 2026\nproduced by tester\n"
        "##### PDFgui fit\nstype=X  x-ray scattering\nqmax=25.00\n"
        "qdamp=0.03\nfitrmin=0.5\nfitrmax=0.99\n##### start data\n"
        "#L r(A) G(r) d_r d_Gr Gdiff\n"
    )
    rows = [
        f"{a:g} {c:g} 0.0 {o - c:g} {o - c:g}"
        for a, o, c in zip(r, gobs, gcalc)
    ]
    data = load_pdf(write_text(tmp_path, header + "\n".join(rows), "x.fgr"))
    table = np.array([[float(w) for w in row.split()] for row in rows])
    np.testing.assert_array_equal(data.g, table[:, 1] + table[:, 4])
    assert data.dg is None
    assert data.qmax == 25.0 and data.mode == "xray"


def test_srfit_profile_savetxt_file(tmp_path):
    from diffpy.srfit.fitbase import Profile

    r = 0.02 * np.arange(100)
    g, dg = np.sin(4 * r), 0.01 + 0.002 * r
    profile = Profile()
    profile.setObservedProfile(r, g, dg)
    profile.ycalc = 0.5 * g
    path = tmp_path / "fit.gr"
    profile.savetxt(path)  # columns: x ycalc y dy
    data = load_pdf(path)
    np.testing.assert_array_equal(data.g, g)
    np.testing.assert_array_equal(data.dg, dg)


def test_three_plain_columns_are_r_g_dg(tmp_path):
    data = load_pdf(write_text(tmp_path, "\n".join(data_rows(with_dg=True))))
    np.testing.assert_allclose(data.dg, 0.01 + 0.001 * np.arange(20))


def test_four_plain_columns_are_r_g_dr_dg(tmp_path):
    rows = [f"{0.1 * i!r} {i % 3!r} 0.5 {0.1 + i!r}" for i in range(20)]
    data = load_pdf(write_text(tmp_path, "\n".join(rows)))
    np.testing.assert_allclose(data.dg, 0.1 + np.arange(20))


def test_labelled_third_column_dr_is_not_dg(tmp_path):
    rows = [f"{0.1 * i!r} {i % 3!r} 0.5" for i in range(20)]
    path = write_text(tmp_path, "#L r G dr\n" + "\n".join(rows))
    assert load_pdf(path).dg is None


def test_plain_header_line_without_hash(tmp_path):
    path = write_text(tmp_path, "r G\n" + "\n".join(data_rows()))
    data = load_pdf(path)
    assert data.r.size == 20 and data.metadata == {}


def test_all_zero_dg_column_means_no_uncertainties(tmp_path):
    rows = [row + " 0.0" for row in data_rows()]
    assert load_pdf(write_text(tmp_path, "\n".join(rows))).dg is None


def test_byte_order_mark_is_not_data(tmp_path):
    path = tmp_path / "bom.gr"
    path.write_bytes("\n".join(data_rows()).encode("utf-8-sig"))
    data = load_pdf(path)
    assert data.r.size == 20 and data.r[0] == 0.0


@pytest.mark.parametrize(
    "encoding, mark",
    [
        ("utf-16", b""),  # the codec writes the machine's mark
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
        ("utf-32", b""),
    ],
)
def test_utf16_file_with_byte_order_mark(tmp_path, encoding, mark):
    # Windows PowerShell's "Out-File" and ">" write UTF-16 with a BOM.
    text = "qmin = 1.0\r\nqmax = 20 Å^-1\r\n#### start data\r\n"
    text += "\r\n".join(data_rows()) + "\r\n"
    path = tmp_path / "ps.gr"
    path.write_bytes(mark + text.encode(encoding))
    data = load_pdf(path)
    assert (data.qmin, data.qmax, data.r.size) == (1.0, 20.0, 20)
    expected = load_pdf(write_text(tmp_path, text.replace("\r", "")))
    np.testing.assert_array_equal(data.g, expected.g)


def test_utf16_mark_on_text_that_is_not_utf16(tmp_path):
    path = tmp_path / "bad.gr"
    path.write_bytes(codecs.BOM_UTF16_LE + b"\x00\xd8a\x00")
    with pytest.raises(PDFFileError, match="UTF-16") as excinfo:
        load_pdf(path)
    assert str(path) in str(excinfo.value)


@pytest.mark.parametrize(
    "spelling, mode",
    [
        ("xray", "xray"),
        ("xrays", "xray"),
        ("x-ray", "xray"),
        ("X-rays", "xray"),
        ("X", "xray"),
        ("neutron", "neutron"),
        ("Neutrons", "neutron"),
        ("N", "neutron"),
        ("electron", "electron"),
        ("electrons", "electron"),
        ("E", "electron"),
    ],
)
@pytest.mark.parametrize("key", ["mode", "stype"])
def test_radiation_spellings(tmp_path, spelling, mode, key):
    text = f"{key} = {spelling}\n" + "\n".join(data_rows())
    assert load_pdf(write_text(tmp_path, text)).mode == mode


def test_unknown_radiation_is_kept_with_a_warning(tmp_path, caplog):
    text = "qmax = 25\nmode = synchrotron\n" + "\n".join(data_rows())
    path = write_text(tmp_path, text)
    with caplog.at_level(logging.WARNING, "diffpy_cbldm.pdf.datafile"):
        data = load_pdf(path)
    assert data.mode == "synchrotron"
    (record,) = caplog.records
    message = record.getMessage()
    assert f"{path}, line 2: mode = 'synchrotron'" in message
    assert "unknown radiation" in message


MANTID = """#Comment: neutron, Qmin=0.910607, Qmax=34.9906, run by someone
##### start data
#S 1 - PDF from Mantid 6.10.0.1
#L r G(r) dr dG(r)
"""


def test_mantid_savepdfgui_comment_line(tmp_path):
    # Mantid's SavePDFGui writes the radiation and the Q-range in one
    # "#Comment:" line; srfit's PDFParser reads them too.
    rows = [f"{0.015 + 0.03 * i:g} {np.sin(i):g} 0 0.01" for i in range(20)]
    path = write_text(tmp_path, MANTID + "\n".join(rows))
    data = load_pdf(path)
    assert data.mode == "neutron"
    assert (data.qmin, data.qmax) == (0.910607, 34.9906)
    np.testing.assert_array_equal(data.dg, np.full(20, 0.01))
    from diffpy.srfit.pdf import PDFParser

    parser = PDFParser()
    parser.parseFile(str(path))
    meta = parser.getMetaData()
    assert (meta["stype"], meta["qmin"], meta["qmax"]) == (
        "N",
        0.910607,
        34.9906,
    )


def test_header_units_are_converted(tmp_path):
    header = (
        "qmax = 280 nm^-1\nqmin = 0.8 Å^-1\nwavelength = 0.01 nm\n"
        "qdamp = 0.04 1/A\ntemperature = 300 K\n"
    )
    data = load_pdf(write_text(tmp_path, header + "\n".join(data_rows())))
    assert data.qmax == pytest.approx(28.0)
    assert data.qmin == 0.8
    assert data.metadata["wavelength"] == pytest.approx(0.1)
    assert data.qdamp == 0.04
    assert data.metadata["temperature"] == 300.0


# ----------------------------------------------------------------- bad files


def test_unit_of_the_wrong_dimension(tmp_path):
    path = write_text(tmp_path, "qmax = 28 Å\n" + "\n".join(data_rows()))
    with pytest.raises(PDFFileError) as excinfo:
        load_pdf(path)
    assert_names(excinfo, path, 1, "qmax = 28 Å")


@pytest.mark.parametrize("key", ["qmin", "qmax", "qdamp", "qsig", "qbroad"])
@pytest.mark.parametrize("value", ["auto", ""])
def test_non_numeric_q_value(tmp_path, key, value):
    # The Q settings are computed with: not a number is an error.
    text = f"x\n{key} = {value}\n" + "\n".join(data_rows())
    path = write_text(tmp_path, text)
    with pytest.raises(PDFFileError, match="not a number") as excinfo:
        load_pdf(path)
    assert_names(excinfo, path, 2, f"{key} = {value}".strip())


def test_non_numeric_value_of_an_unused_key_is_kept(tmp_path, caplog):
    # PDFgetX3 writes "wavelength =" and "backgroundfile =" when they are
    # not known; a value that is not a number, for a key the package does
    # not compute with, is kept as text with a warning.
    header = (
        "[DEFAULT]\nbackgroundfile =\nwavelength = unknown\n"
        "temperature = room\nspdiameter = 30 furlongs\nrpoly =\n"
        "qmin = 1.0\nqmax = 20\n#### start data\n#S 1\n"
        "#L r($\\AA$)  G($\\AA^{-2}$)\n"
    )
    path = write_text(tmp_path, header + "\n".join(data_rows()))
    with caplog.at_level(logging.WARNING, "diffpy_cbldm.pdf.datafile"):
        data = load_pdf(path)
    assert (data.qmin, data.qmax) == (1.0, 20.0)
    assert data.metadata["wavelength"] == "unknown"
    assert data.metadata["temperature"] == "room"
    assert data.metadata["spdiameter"] == "30 furlongs"
    assert data.metadata["backgroundfile"] == ""
    assert data.metadata["rpoly"] == ""
    warnings = [rec.getMessage() for rec in caplog.records]
    assert len(warnings) == 3  # blank values say nothing: no warning
    for lineno, text in (
        (3, "wavelength = 'unknown'"),
        (4, "temperature = 'room'"),
        (5, "spdiameter = '30 furlongs'"),
    ):
        assert any(
            f"{path}, line {lineno}: {text}" in message for message in warnings
        ), warnings
    # Kept quietly by copies, and written and read back as text.
    caplog.clear()
    with caplog.at_level(logging.WARNING, "diffpy_cbldm.pdf.datafile"):
        cropped = data.crop(0.5, 1.5)
    assert cropped.metadata == data.metadata and not caplog.records
    back = load_pdf(write_gr(tmp_path / "back.gr", data))
    assert back.metadata == data.metadata


def test_r_in_nanometres_is_refused(tmp_path):
    path = write_text(tmp_path, "#L r(nm) G(nm^-2)\n" + "\n".join(data_rows()))
    with pytest.raises(PDFFileError) as excinfo:
        load_pdf(path)
    assert_names(excinfo, path, 1, "r(nm)")


def test_empty_file(tmp_path):
    path = write_text(tmp_path, "")
    with pytest.raises(PDFFileError, match="empty") as excinfo:
        load_pdf(path)
    assert str(path) in str(excinfo.value)


def test_header_without_data(tmp_path):
    path = write_text(tmp_path, "[DEFAULT]\nqmax = 25\n\n")
    with pytest.raises(PDFFileError, match="no data") as excinfo:
        load_pdf(path)
    assert_names(excinfo, path, 2, "qmax = 25")


def test_start_data_marker_without_data(tmp_path):
    path = write_text(tmp_path, "qmax = 25\n#### start data\n#L r G\n")
    with pytest.raises(PDFFileError, match="no data") as excinfo:
        load_pdf(path)
    assert_names(excinfo, path, 3, "#L r G")


def test_truncated_last_row(tmp_path):
    rows = data_rows()
    rows[-1] = rows[-1].split()[0]
    path = write_text(tmp_path, "\n".join(rows))
    with pytest.raises(PDFFileError, match="truncated") as excinfo:
        load_pdf(path)
    assert_names(excinfo, path, 20, rows[-1])


def test_row_cut_mid_number(tmp_path):
    rows = data_rows()
    rows[-1] = "1.9 1.5e-"
    path = write_text(tmp_path, "\n".join(rows))
    with pytest.raises(PDFFileError, match="truncated") as excinfo:
        load_pdf(path)
    assert_names(excinfo, path, 20, "1.5e-")


def test_non_numeric_row_inside_the_data(tmp_path):
    rows = data_rows()
    rows[7] = "0.7 abc"
    path = write_text(tmp_path, "# r G\n" + "\n".join(rows))
    with pytest.raises(PDFFileError, match="not a number") as excinfo:
        load_pdf(path)
    assert_names(excinfo, path, 9, "abc")


def test_comment_inside_the_data(tmp_path):
    rows = data_rows()
    rows[10] = "#S 2"
    path = write_text(tmp_path, "\n".join(rows))
    with pytest.raises(PDFFileError) as excinfo:
        load_pdf(path)
    assert_names(excinfo, path, 11, "#S 2")


def test_r_not_increasing(tmp_path):
    rows = data_rows()
    rows[5] = "0.4 0.0"  # repeats r of the row before
    path = write_text(tmp_path, "\n".join(rows))
    with pytest.raises(PDFFileError, match="does not increase") as excinfo:
        load_pdf(path)
    assert_names(excinfo, path, 6, "0.4 0.0")


def test_missing_row_makes_uneven_spacing(tmp_path):
    rows = data_rows()
    del rows[12]
    path = write_text(tmp_path, "\n".join(rows))
    with pytest.raises(PDFFileError, match="not evenly spaced") as excinfo:
        load_pdf(path)
    assert_names(excinfo, path, 13, rows[12])  # the row after the gap


def test_slowly_drifting_grid(tmp_path):
    # Each step is within the step tolerance of the median step, but the
    # grid drifts off a uniform one by many tolerances.
    n, step = 201, 0.01
    tolerance = 1e-4 * step + 1e-5 * (n - 1) * step
    steps = np.where(np.arange(n - 1) < n // 2, 1, -1) * 0.5 * tolerance
    r = np.concatenate([[0.0], np.cumsum(step + steps)])
    rows = [f"{x!r} {float(np.sin(x))!r}" for x in r.tolist()]
    path = write_text(tmp_path, "\n".join(rows))
    with pytest.raises(PDFFileError, match="off the uniform grid"):
        load_pdf(path)


def test_linspace_grid_is_uniform(tmp_path):
    r = np.linspace(0, 30, 3000)
    rows = [f"{x:.6g} {np.sin(x):.6g}" for x in r]  # printed like "%g"
    assert load_pdf(write_text(tmp_path, "\n".join(rows))).r.size == 3000


@pytest.mark.parametrize(
    "row, bad",
    [
        ("nan 0.1 0.01", "nan"),
        ("0.5 nan 0.01", "nan"),
        ("0.5 0.1 nan", "nan"),
        ("0.5 inf 0.01", "inf"),
    ],
    ids=["nan-r", "nan-G", "nan-dG", "inf-G"],
)
def test_non_finite_value(tmp_path, row, bad):
    rows = data_rows(with_dg=True)
    rows[5] = row
    path = write_text(tmp_path, "\n".join(rows))
    with pytest.raises(PDFFileError, match="not finite") as excinfo:
        load_pdf(path)
    assert_names(excinfo, path, 6, bad)


def assert_dg_ignored(caplog, path, lineno, text):
    """One warning names the file, the line, the value and says dG is
    ignored."""
    (record,) = caplog.records
    message = record.getMessage()
    assert record.levelno == logging.WARNING
    assert f"{path}, line {lineno}" in message
    assert text in message and "dG is ignored" in message


def test_negative_dg_is_ignored_with_a_warning(tmp_path, caplog):
    # As srfit's PDFParser: dG is used only when every value is positive.
    rows = data_rows(with_dg=True)
    rows[3] = "0.30000000000000004 0.78 -0.01"
    path = write_text(tmp_path, "\n".join(rows))
    with caplog.at_level(logging.WARNING, "diffpy_cbldm.pdf.datafile"):
        data = load_pdf(path)
    assert data.dg is None and data.g[3] == 0.78
    assert_dg_ignored(caplog, path, 4, "dG = -0.01")


def test_zero_dg_at_r_0_is_ignored_with_a_warning(tmp_path, caplog):
    # A propagated dG is exactly 0 at r = 0, where G(0) = 0.
    rows = data_rows(with_dg=True)
    rows[0] = "0.0 0.0 0.0"
    path = write_text(tmp_path, "# r G dG\n" + "\n".join(rows))
    with caplog.at_level(logging.WARNING, "diffpy_cbldm.pdf.datafile"):
        data = load_pdf(path)
    assert data.dg is None and data.r.size == 20
    assert_dg_ignored(caplog, path, 2, "dG = 0.0")
    from diffpy.srfit.pdf import PDFParser

    parser = PDFParser()
    parser.parseFile(str(path))
    assert parser.getData()[3] is None  # srfit ignores it as well


def test_from_arrays_ignores_a_partly_zero_dg(caplog):
    dg = np.full(20, 0.01)
    dg[4] = 0.0
    with caplog.at_level(logging.WARNING, "diffpy_cbldm.pdf.datafile"):
        data = PDFData.from_arrays(np.arange(20.0), np.ones(20), dg)
    assert data.dg is None
    (record,) = caplog.records
    assert "row 4 (r = 4.0): dG = 0.0" in record.getMessage()


def test_negative_r(tmp_path):
    rows = [f"{0.1 * (i - 1)!r} 0.5" for i in range(20)]
    path = write_text(tmp_path, "\n".join(rows))
    with pytest.raises(PDFFileError, match="negative") as excinfo:
        load_pdf(path)
    assert_names(excinfo, path, 1, "-0.1")


def test_too_few_points(tmp_path):
    path = write_text(tmp_path, "# r G\n" + "\n".join(data_rows(n=5)))
    with pytest.raises(PDFFileError, match=f"at least {MIN_POINTS}") as err:
        load_pdf(path)
    assert str(path) in str(err.value) and "lines 2-6" in str(err.value)


def test_too_many_unlabelled_columns(tmp_path):
    rows = [row + " 1 2 3" for row in data_rows()]
    path = write_text(tmp_path, "\n".join(rows))
    with pytest.raises(PDFFileError, match="5 column") as excinfo:
        load_pdf(path)
    assert_names(excinfo, path, 1, rows[0])


def test_binary_file(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"\x89HDF\r\n\x1a\n\0\0\0")
    with pytest.raises(PDFFileError, match="binary") as excinfo:
        load_pdf(path)
    assert str(path) in str(excinfo.value)


def test_missing_file(tmp_path):
    path = tmp_path / "nothere.gr"
    with pytest.raises(FileNotFoundError, match="nothere.gr"):
        load_pdf(path)


def test_directory(tmp_path):
    with pytest.raises(IsADirectoryError, match=str(tmp_path)):
        load_pdf(tmp_path)


# --------------------------------------------------------------- from arrays


def test_from_arrays_shape_mismatch():
    with pytest.raises(ValueError, match=r"G has shape \(19,\)"):
        PDFData.from_arrays(np.arange(20.0), np.zeros(19))


def test_from_arrays_names_the_row():
    g = np.zeros(20)
    g[3] = np.nan
    with pytest.raises(ValueError, match=r"row 3 \(r = 3.0\): G = nan"):
        PDFData.from_arrays(np.arange(20.0), g)


def test_from_arrays_uneven_grid():
    r = np.arange(20.0)
    r[10:] += 0.5
    with pytest.raises(ValueError, match="row 10.*not evenly spaced"):
        PDFData.from_arrays(r, np.zeros(20))


def test_from_arrays_metadata_like_a_file():
    data = PDFData.from_arrays(
        np.arange(20.0), np.zeros(20), metadata={"stype": "N", "QMAX": "25"}
    )
    assert data.metadata == {"mode": "neutron", "qmax": 25.0}


def test_from_arrays_metadata_must_be_numbers_or_text():
    with pytest.raises(ValueError, match="'hkl'"):
        PDFData.from_arrays(
            np.arange(20.0), np.zeros(20), metadata={"hkl": [1, 1, 1]}
        )


def test_with_metadata_replaces_under_any_name(caplog):
    header = {"qmax": 25.0, "qdamp": 0.04, "mode": "xray"}
    data = PDFData.from_arrays(np.arange(20.0), np.ones(20), metadata=header)
    with caplog.at_level(logging.WARNING, "diffpy_cbldm.pdf.datafile"):
        assert data.with_metadata(qmax=22.0).qmax == 22.0
        assert data.with_metadata(Qmax=22.0).qmax == 22.0
        assert data.with_metadata(QMAX="22 1/nm").qmax == pytest.approx(2.2)
        assert data.with_metadata(qsig=0.05).qdamp == 0.05
        assert data.with_metadata(stype="N").mode == "neutron"
        assert data.with_metadata(MODE="electrons").mode == "electron"
    assert not caplog.records  # no "given twice, keeping the first"
    assert data.metadata == header


def test_with_metadata_adds_to_a_copy_as_a_header_would(tmp_path):
    path = tmp_path / "bare.gr"
    path.write_text("".join(f"{x} {np.sin(x)}\n" for x in np.arange(20.0)))
    bare = load_pdf(path)
    assert bare.qmin is None and bare.qmax is None
    data = bare.with_metadata(qmin=1.0, QMAX="22", qsig=0.03)
    assert (data.qmin, data.qmax, data.qdamp) == (1.0, 22.0, 0.03)
    assert data.path == path and data.g is not bare.g
    np.testing.assert_array_equal(data.g, bare.g)
    assert bare.metadata == {}
    assert data.with_metadata(qmax=25.0).qmax == 25.0
    with pytest.raises(ValueError, match="'qmax'.*not a number"):
        bare.with_metadata(qmax="high")


def test_from_arrays_copies_and_freezes():
    r, g = np.arange(20.0), np.ones(20)
    data = PDFData.from_arrays(r, g)
    g[0] = 5.0
    assert data.g[0] == 1.0
    with pytest.raises(ValueError):
        data.g[0] = 2.0


# -------------------------------------------------------------- from srfit


def test_from_profile_equals_the_file(experimental_dir):
    from diffpy.srfit.fitbase import Profile
    from diffpy.srfit.pdf import PDFParser

    path = experimental_dir / "Au144pMBA.gr"
    parser = PDFParser()
    parser.parseFile(str(path))
    profile = Profile()
    profile.loadParsedData(parser)
    data = PDFData.from_profile(profile)
    loaded = load_pdf(path)
    np.testing.assert_array_equal(data.r, loaded.r)
    np.testing.assert_array_equal(data.g, loaded.g)
    assert data.dg is None  # srfit's placeholder of ones
    assert (data.qmax, data.mode, data.path) == (28.0, "xray", path)


def test_from_pdfcontribution_uses_the_fit_range(experimental_dir):
    from diffpy.srfit.pdf import PDFContribution

    path = experimental_dir / "JQ_S1.gr"
    contribution = PDFContribution("pdf")
    contribution.loadData(str(path))
    contribution.setCalculationRange(2.0, 20.0)
    data = PDFData.from_profile(contribution)
    cropped = load_pdf(path).crop(2.0, 20.0)
    np.testing.assert_array_equal(data.r, cropped.r)
    np.testing.assert_array_equal(data.g, cropped.g)
    assert data.qmin == 1.0


def test_from_empty_profile():
    from diffpy.srfit.fitbase import Profile

    with pytest.raises(ValueError, match="no observed data"):
        PDFData.from_profile(Profile())


# ---------------------------------------------------------------- resample


def test_resample_band_limited_function():
    # f = sum a sin(Q r + phase) with Q < Qmax = 25 1/Å, sampled at
    # 0.02 Å. Hall & Meyer bound the cubic-spline error by
    # 5/384 h^4 max|f''''| with max|f''''| <= sum |a| Q^4; it is proved
    # for clamped ends, the not-a-knot ends used here reach 1.7 times it
    # (measured) within 1 Å of the ends.
    rng = np.random.default_rng(7)
    q = rng.uniform(1.0, 25.0, 12)
    amplitude = rng.normal(size=12)
    phase = rng.uniform(0, 2 * np.pi, 12)

    def f(r):
        return np.sin(np.outer(r, q) + phase) @ amplitude

    step = 0.02
    coarse = step * np.arange(1001)
    data = PDFData.from_arrays(coarse, f(coarse), metadata={"qmax": 25.0})
    fine = np.linspace(0.0, 20.0, 20001)
    error = np.abs(data.resample(fine).g - f(fine))
    bound = 5 / 384 * step**4 * np.sum(np.abs(amplitude) * q**4)
    interior = (fine > 1.0) & (fine < 19.0)
    assert error[interior].max() < bound
    assert error.max() < 2 * bound
    linear = np.abs(np.interp(fine, coarse, f(coarse)) - f(fine))
    assert linear.max() > 10 * bound  # the test can tell methods apart


@pytest.mark.parametrize("name", EXPERIMENTAL_FILES)
def test_resample_measured_pdf(experimental_dir, name):
    # A measured G(r) is band-limited by Qmax; Bernstein's inequality
    # bounds |G''''| by Qmax^4 max|G|. Resample every other point onto
    # the points left out, and compare with the file (printed to 6
    # digits).
    data = load_pdf(experimental_dir / name)
    coarse = PDFData.from_arrays(data.r[::2], data.g[::2], None, data.metadata)
    left_out = data.r[1:-1:2]
    error = np.abs(coarse.resample(left_out).g - data.g[1:-1:2])
    g_max = np.abs(data.g).max()
    bound = 5 / 384 * (data.qmax * coarse.rstep) ** 4 * g_max
    assert error.max() < bound + 1e-5 * g_max


def test_resample_onto_own_points_is_exact(experimental_dir):
    data = load_pdf(experimental_dir / "Au144pMBA.gr")
    part = data.r[100:900:4]
    np.testing.assert_allclose(
        data.resample(part).g, data.g[100:900:4], rtol=0, atol=1e-12
    )


def test_resample_dg_linear_and_positive():
    r = 0.1 * np.arange(30)
    dg = 0.01 + 0.05 * (np.arange(30) % 2)
    data = PDFData.from_arrays(r, np.sin(r), dg)
    fine = np.linspace(0.0, 2.9, 300)
    resampled = data.resample(fine)
    np.testing.assert_array_equal(resampled.dg, np.interp(fine, r, dg))
    assert np.all(resampled.dg > 0)


def test_resample_outside_the_data(experimental_dir):
    data = load_pdf(experimental_dir / "Au144pMBA.gr")
    with pytest.raises(ValueError, match="0-30 Å.*0-20 Å") as excinfo:
        data.resample(0.01 * np.arange(3001))
    assert "Au144pMBA.gr" in str(excinfo.value)


def test_messages_name_the_file_or_the_data(experimental_dir):
    data = load_pdf(experimental_dir / "Au144pMBA.gr")
    assert data.name == str(experimental_dir / "Au144pMBA.gr")
    bare = PDFData.from_arrays(data.r, data.g)
    assert bare.name == "the data"
    with pytest.raises(ValueError, match="^cannot crop the data: "):
        bare.crop(5.0, 2.0)


def test_resample_tolerates_rounding_at_the_ends(experimental_dir):
    data = load_pdf(experimental_dir / "Au144pMBA.gr")
    grid = np.linspace(0.0, 20.0 * (1 + 1e-12), 1001)
    assert data.resample(grid).g[-1] == data.g[-1]


# -------------------------------------------------------------------- crop


def test_crop_keeps_the_closed_range(experimental_dir):
    data = load_pdf(experimental_dir / "JQ_S1.gr")
    cropped = data.crop(1.5, 10.0)
    keep = slice(150, 1001)
    np.testing.assert_array_equal(cropped.r, data.r[keep])
    np.testing.assert_array_equal(cropped.g, data.g[keep])
    assert cropped.metadata == data.metadata


def test_crop_without_overlap(experimental_dir):
    data = load_pdf(experimental_dir / "Au144pMBA.gr")
    with pytest.raises(ValueError, match="25-30 Å.*0-20 Å"):
        data.crop(25, 30)


def test_crop_reversed_range(experimental_dir):
    data = load_pdf(experimental_dir / "Au144pMBA.gr")
    with pytest.raises(ValueError, match="rmin < rmax"):
        data.crop(10, 5)


def test_crop_too_narrow(experimental_dir):
    data = load_pdf(experimental_dir / "Au144pMBA.gr")
    with pytest.raises(ValueError, match="keeps 5 of the points"):
        data.crop(19.955, 30)


# ------------------------------------------------------------------- write


def noisy_copy(data):
    rng = np.random.default_rng(3)
    dg = 0.001 + 0.01 * rng.random(data.r.size)
    return PDFData.from_arrays(data.r, data.g, dg, data.metadata)


def test_write_round_trip(tmp_path):
    r = np.linspace(0.5, 12.0, 777)
    g = np.exp(-r) * np.sin(7 * r) / 3
    meta = {
        "qmax": 24.3,
        "qdamp": 1 / 3,
        "mode": "neutron",
        "composition": "Pt3 Ni",
        "note": "kept as text",
        "backgroundfile": "",
    }
    data = PDFData.from_arrays(r, g, 0.01 + r / 1e4, meta)
    path = write_gr(tmp_path / "out.gr", data)
    back = load_pdf(path)
    np.testing.assert_array_equal(back.r, data.r)
    np.testing.assert_array_equal(back.g, data.g)
    np.testing.assert_array_equal(back.dg, data.dg)
    assert back.metadata == data.metadata


@pytest.mark.parametrize("name", EXPERIMENTAL_FILES)
def test_write_round_trip_real_file(experimental_dir, tmp_path, name):
    data = load_pdf(experimental_dir / name)
    back = load_pdf(write_gr(tmp_path / name, data))
    np.testing.assert_array_equal(back.r, data.r)
    np.testing.assert_array_equal(back.g, data.g)
    assert back.dg is None
    assert back.metadata == data.metadata


def test_written_file_read_by_srfit_pdfparser(experimental_dir, tmp_path):
    from diffpy.srfit.pdf import PDFParser

    data = noisy_copy(load_pdf(experimental_dir / "Au144pMBA.gr"))
    path = write_gr(tmp_path / "out.gr", data)
    parser = PDFParser()
    parser.parseFile(str(path))
    x, y, dx, dy = parser.getData()
    np.testing.assert_array_equal(x, data.r)
    np.testing.assert_array_equal(y, data.g)
    np.testing.assert_array_equal(dy, data.dg)
    assert dx is None
    meta = parser.getMetaData()
    assert (meta["qmin"], meta["qmax"], meta["stype"]) == (1.33, 28.0, "X")


def test_written_file_read_by_pdffit2(experimental_dir, tmp_path):
    pdffit2 = pytest.importorskip("diffpy.pdffit2")
    data = noisy_copy(load_pdf(experimental_dir / "JQ_S1.gr"))
    path = write_gr(tmp_path / "out.gr", data)
    pdffit2.redirect_stdout(open(os.devnull, "w"))
    fit = pdffit2.PdfFit()
    fit.read_data(str(path), "X", data.qmax, 0.0)
    np.testing.assert_allclose(fit.getR(), data.r, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(fit.getpdf_obs(), data.g)


@pytest.mark.skipif(
    sys.platform == "win32", reason="needs POSIX file-size limits"
)
def test_failed_write_leaves_no_file(experimental_dir, tmp_path):
    # A file-size limit makes the write fail part-way, as a full disk would.
    import resource

    data = load_pdf(experimental_dir / "JQ_S1.gr")
    target = tmp_path / "out.gr"
    target.write_text("previous content")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(OSError):
            write_gr(target, data)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert target.read_text() == "previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.gr"]


def test_unwritable_metadata_leaves_no_file(tmp_path):
    data = PDFData.from_arrays(np.arange(20.0), np.zeros(20))
    data.metadata["note"] = "two\nlines"
    with pytest.raises(ValueError, match="'note'.*several lines"):
        write_gr(tmp_path / "out.gr", data)
    assert list(tmp_path.iterdir()) == []


def test_write_needs_pdfdata(tmp_path):
    with pytest.raises(TypeError, match="PDFData"):
        write_gr(tmp_path / "out.gr", {"r": [0.0]})
