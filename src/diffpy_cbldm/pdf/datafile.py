"""Measured PDFs: read G(r) files, check them, resample them, write .gr.

One reader understands the G(r) files DiffPy users have: PDFgetX3
(``[DEFAULT]`` config header), PDFgetX2/xPDFsuite (``[PDF]`` section),
PDFgui (observed ``.gr`` and fit ``.fgr``), diffpy.srfit
(``Profile.savetxt``), Mantid (``SavePDFGui``) and plain 2-4 column text
(DeepStruc). The header's ``key = value`` lines become
`PDFData.metadata`; the data block is checked
row by row, and every problem is reported with the file, the line and the
offending text, because a fit on a silently damaged grid is worse than no
fit.

Column conventions when the columns carry no labels: 2 columns are
``r G``, 3 are ``r G dG`` (as ``numpy.savetxt(x, y, dy)`` and srfit's
``Profile.loadtxt``), 4 are ``r G dr dG`` (PDFgui). A ``#L`` label line, or
a last header line made of known column names (``# x ycalc y dy``,
``# r, Gr``), overrides the convention.

Units: r in Å, G in Å⁻², Q values in Å⁻¹, lengths in Å, temperature in K.
"""

import codecs
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diffpy_cbldm.atomic import atomic_path

__all__ = ["MIN_POINTS", "PDFData", "PDFFileError", "load_pdf", "write_gr"]

logger = logging.getLogger(__name__)

MIN_POINTS = 10
"""The fewest points a PDF may have: less is not a measured G(r)."""

# Header and data-block syntax.
_START_DATA = re.compile(r"^#+\s*start data\b", re.IGNORECASE)
_SECTION = re.compile(r"^\[[^\]]+\]$")
_KEY = r"[A-Za-z_][\w.\-]*"
_KEY_VALUE = re.compile(rf"^({_KEY})\s*=\s*(.*)$")
_NUMBER = re.compile(
    r"^[-+]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|inf(?:inity)?|nan)",
    re.IGNORECASE,
)
_LABEL = re.compile(r"^([^(\[]*)(?:[(\[](.*)[)\]])?$")

# Other programs' names for the metadata we read.
_ALIASES = {
    "stype": "mode",
    "qsig": "qdamp",
    "qalp": "qbroad",
    "temp": "temperature",
    "t": "temperature",
    "dscale": "scale",
}
# Radiation names (lower case, "-" removed) -> the canonical `mode`. The
# full words are also recognised alone in a Mantid ``Comment:`` line.
_RADIATION_WORDS = {
    "xray": "xray",
    "xrays": "xray",
    "neutron": "neutron",
    "neutrons": "neutron",
    "electron": "electron",
    "electrons": "electron",
}
_MODES = {"x": "xray", "n": "neutron", "e": "electron", **_RADIATION_WORDS}
# Keys with a physical dimension: the unit spellings accepted after the
# number and the factor to the package unit (Å⁻¹, Å, K).
_INV_LENGTH = {
    "a^-1": 1.0,
    "a-1": 1.0,
    "1/a": 1.0,
    "aa^-1": 1.0,
    "aa-1": 1.0,
    "1/aa": 1.0,
    "å^-1": 1.0,
    "å-1": 1.0,
    "1/å": 1.0,
    "angstrom^-1": 1.0,
    "1/angstrom": 1.0,
    "nm^-1": 0.1,
    "nm-1": 0.1,
    "1/nm": 0.1,
}
_LENGTH = {"a": 1.0, "aa": 1.0, "å": 1.0, "angstrom": 1.0, "nm": 10.0}
_TEMPERATURE = {"k": 1.0}
_DIMENSIONED = {
    **dict.fromkeys(
        ("qmin", "qmax", "qmaxinst", "qdamp", "qbroad"),
        ("Å⁻¹", _INV_LENGTH),
    ),
    **dict.fromkeys(
        ("wavelength", "rmin", "rmax", "rstep", "rpoly", "spdiameter"),
        ("Å", _LENGTH),
    ),
    "temperature": ("K", _TEMPERATURE),
}
# The header numbers the package computes with (the Q settings of the
# calculated PDF): a value that is not a number is an error. Other keys
# with a dimension are converted when they are numbers and kept as text,
# with a warning, when they are not.
_USED_NUMBERS = ("qmin", "qmax", "qdamp", "qbroad")
# Mantid's SavePDFGui header: "#Comment: neutron, Qmin=0.91, Qmax=34.99".
_COMMENT = re.compile(r"^comment\s*:\s*(.*)$", re.IGNORECASE)
# Column labels (lower case, without units, "_" and spaces) -> role.
_COLUMNS = {
    "r": "r",
    "x": "r",
    "robs": "r",
    "g": "g",
    "gr": "g",
    "gobs": "g",
    "y": "g",
    "yobs": "g",
    "dr": "dr",
    "dx": "dr",
    "drobs": "dr",
    "dg": "dg",
    "dgr": "dg",
    "dgobs": "dg",
    "dy": "dg",
    "dyobs": "dg",
    "gcalc": "gcalc",
    "ycalc": "gcalc",
    "gdiff": "gdiff",
}
_POSITIONAL = {2: ("r", "g"), 3: ("r", "g", "dg"), 4: ("r", "g", "dr", "dg")}


class PDFFileError(ValueError):
    """A PDF data file that cannot be read as a uniform-grid G(r).

    The message names the file, the line and the offending text.
    """


class _Invalid(Exception):
    """Internal: a check failed at `where` (a row, line or key)."""

    def __init__(self, message, where=None):
        super().__init__(message)
        self.message = message
        self.where = where


@dataclass(frozen=True, eq=False, repr=False)
class PDFData:
    """A measured PDF on a uniform r-grid, with its acquisition metadata.

    Construction checks the arrays exactly as `load_pdf` checks a file,
    so every `PDFData` is a usable G(r). The arrays are stored as
    read-only float64 copies.

    Attributes
    ----------
    r : ndarray, shape (n,)
        Uniformly spaced, strictly increasing, non-negative r in Å.
    g : ndarray, shape (n,)
        G(r) in Å⁻².
    dg : ndarray, shape (n,) or None
        Standard uncertainties of G in Å⁻², all positive; None when the
        source gives none (an all-zero column counts as none), and, with
        a warning, when some of them are zero or negative (as
        diffpy.srfit's ``PDFParser`` does).
    metadata : dict
        Header values by lower-case key (``qmin``, ``qmax``, ``qdamp``,
        ``qbroad``, ``composition``, ``mode``, ``wavelength``,
        ``temperature`` ... and whatever else the header says). Numbers
        are floats in Å⁻¹ (Q), Å (lengths) and K; ``mode`` is ``'xray'``,
        ``'neutron'`` or ``'electron'`` (or, with a warning, the text of a
        radiation not known); the rest are strings.
    path : Path or None
        The file the data came from.
    """

    r: np.ndarray
    g: np.ndarray
    dg: np.ndarray | None = None
    metadata: dict = field(default_factory=dict)
    path: Path | None = None

    def __post_init__(self):
        where = self._where
        r, g, dg = (_float_array(a) for a in (self.r, self.g, self.dg))
        try:
            dg, ignored = _check_arrays(r, g, dg)
        except _Invalid as err:
            if err.where is None:
                raise ValueError(f"{where}: {err.message}") from None
            raise ValueError(
                f"{where}, row {err.where} (r = {float(r[err.where])!r}): "
                f"{err.message}"
            ) from None
        if ignored is not None:
            row, value = ignored
            logger.warning(
                "%s, row %d (r = %r): %s",
                where,
                row,
                float(r[row]),
                _dg_ignored_message(value),
            )
        # Quiet: the public constructors warn about the metadata they are
        # given; copies (crop, resample) would repeat those warnings.
        metadata = _checked_metadata(self.metadata, where)
        for array in (r, g, dg):
            if array is not None:
                array.setflags(write=False)
        object.__setattr__(self, "r", r)
        object.__setattr__(self, "g", g)
        object.__setattr__(self, "dg", dg)
        object.__setattr__(self, "metadata", metadata)
        if self.path is not None:
            object.__setattr__(self, "path", Path(self.path))

    @classmethod
    def from_arrays(cls, r, g, dg=None, metadata=None):
        """Build a `PDFData` from arrays, checked as a file would be.

        Parameters
        ----------
        r : array_like, shape (n,)
            Uniform, strictly increasing r-grid in Å.
        g : array_like, shape (n,)
            G(r) in Å⁻².
        dg : array_like, shape (n,), optional
            Positive standard uncertainties of G in Å⁻²; all zeros mean
            none.
        metadata : dict, optional
            Header values, as `load_pdf` returns them; numeric strings
            become floats and other programs' names are translated
            (``stype`` -> ``mode``, ``qsig`` -> ``qdamp`` ...).

        Raises
        ------
        ValueError
            Naming the row and value, for the same problems `load_pdf`
            reports, and for arrays of different shapes.
        """
        metadata = _checked_metadata(metadata, "PDF data", "the data")
        return cls(r, g, dg, metadata)

    @classmethod
    def from_profile(cls, profile):
        """The observed data of a diffpy.srfit ``Profile``.

        Parameters
        ----------
        profile : diffpy.srfit.fitbase.Profile or FitContribution
            A profile, or a ``FitContribution``/``PDFContribution`` whose
            ``.profile`` is used. Its ``x``, ``y`` and ``dy`` (the
            observed data on the calculation range the fit uses) and its
            ``meta`` dict are taken. srfit fills ``dy`` with ones when the
            data have no uncertainties; such a ``dy`` becomes None.

        Raises
        ------
        ValueError
            When the profile holds no observed data, or the data fail the
            checks of `from_arrays`.
        """
        profile = getattr(profile, "profile", profile)
        x, y = getattr(profile, "x", None), getattr(profile, "y", None)
        if x is None or y is None:
            raise ValueError(
                f"{type(profile).__name__} holds no observed data; load or "
                "set the observed profile first"
            )
        dy = getattr(profile, "dy", None)
        if dy is not None and np.all(np.asarray(dy) == 1.0):
            dy = None
        meta = dict(getattr(profile, "meta", None) or {})
        filename = meta.get("filename")
        path = Path(filename) if isinstance(filename, str) else None
        name = "the profile" if path is None else str(path)
        meta = _checked_metadata(meta, f"PDF data of {name}", name)
        return cls(x, y, dy, meta, path)

    def with_metadata(self, **values):
        """A copy whose header says `values` as well, e.g. the Qmin and
        Qmax of the Fourier transform a bare two-column file leaves out.

        Keys and values are checked and translated as `from_arrays` does
        (``Qmax`` -> ``qmax``, ``qsig`` -> ``qdamp``, ``stype`` ->
        ``mode`` ...); a value replaces what the header said under any
        of its names.

        Raises
        ------
        ValueError
            For a value `from_arrays` refuses (``qmax="high"``).

        Examples
        --------
        >>> data = load_pdf("bare.gr").with_metadata(qmin=1.0, qmax=22.0)
        >>> data.with_metadata(stype="N").mode
        'neutron'
        """
        where = self._where
        new = _checked_metadata(values, where, self.name)
        return type(self)(
            self.r, self.g, self.dg, {**self.metadata, **new}, self.path
        )

    @classmethod
    def from_any(cls, data):
        """A `PDFData` from any of the forms users hold a PDF in.

        Parameters
        ----------
        data : str, Path, PDFData, tuple, Profile or FitContribution
            A PDF file (`load_pdf`), a PDFData (returned as it is),
            ``(r, G)`` or ``(r, G, dG)`` arrays (`from_arrays`), or a
            diffpy.srfit ``Profile``, ``FitContribution`` or
            ``PDFContribution`` (`from_profile`).

        Raises
        ------
        TypeError
            For any other kind of object.
        """
        if isinstance(data, cls):
            return data
        if isinstance(data, (str, Path)):
            return load_pdf(data)
        if isinstance(data, (tuple, list)) and len(data) in (2, 3):
            return cls.from_arrays(*data)
        profile = getattr(data, "profile", None)
        if profile is not None or type(data).__name__ == "Profile":
            return cls.from_profile(data)
        raise TypeError(
            "data must be a PDF file path, a PDFData, (r, G) or (r, G, dG) "
            "arrays, or a diffpy.srfit Profile or PDFContribution, got "
            f"{type(data).__name__}"
        )

    def __repr__(self):
        source = "" if self.path is None else f", path={str(self.path)!r}"
        return (
            f"PDFData({self.r.size} points, r {self.r[0]:g}-{self.r[-1]:g} "
            f"Å step {self.rstep:.6g} Å, "
            f"dG {'given' if self.dg is not None else 'none'}{source})"
        )

    @property
    def _where(self):
        """How errors about the arrays and metadata name the data."""
        return "PDF data" if self.path is None else f"PDF data of {self.path}"

    @property
    def name(self):
        """How messages name the data: its file's path, or "the data"."""
        return str(self.path) if self.path is not None else "the data"

    @property
    def rstep(self):
        """The r-grid step in Å."""
        return float((self.r[-1] - self.r[0]) / (self.r.size - 1))

    @property
    def qmin(self):
        """Lower Q limit of the Fourier transform in Å⁻¹, or None."""
        return self.metadata.get("qmin")

    @property
    def qmax(self):
        """Upper Q limit of the Fourier transform in Å⁻¹, or None.

        DiffPy writes ``qmax=0`` for "no termination correction"; that is
        reported as None (unknown), while ``metadata['qmax']`` keeps 0.
        """
        qmax = self.metadata.get("qmax")
        return qmax if qmax else None

    @property
    def qdamp(self):
        """Instrumental Q-resolution damping in Å⁻¹, or None."""
        return self.metadata.get("qdamp")

    @property
    def qbroad(self):
        """Q-resolution peak broadening in Å⁻¹, or None."""
        return self.metadata.get("qbroad")

    @property
    def composition(self):
        """Sample composition as the header writes it (``'Au'``), or None."""
        return self.metadata.get("composition")

    @property
    def mode(self):
        """Radiation: ``'xray'``, ``'neutron'``, ``'electron'``, or None."""
        return self.metadata.get("mode")

    def resample(self, r_new):
        """G(r) interpolated onto another r-grid inside the data range.

        G is interpolated with a not-a-knot cubic spline. A measured G(r)
        is band-limited by Qmax and normally sampled about ten times finer
        than the Nyquist step π/Qmax; the spline error is then about
        ``5/384 (Qmax dr)^4`` of the signal (1e-5 for Qmax = 28 Å⁻¹,
        dr = 0.01 Å), smaller than any measurement error. A warning is
        logged when that bound exceeds 1e-3. The truncated sinc
        (Whittaker-Shannon) sum is exact only for an infinite grid: on a
        finite one its edge error decays as 1/distance (3e-2 near the
        ends in the measurements of ``docs/user_data_files.rst``), so it
        is not used. dG is interpolated linearly, which keeps it positive;
        it is the uncertainty of each point, not a propagated one, and
        points closer than the original step are correlated.

        Parameters
        ----------
        r_new : array_like, shape (m,)
            A uniform r-grid in Å within ``[r[0], r[-1]]`` (ends within
            1e-6 of a step count as inside).

        Returns
        -------
        PDFData
            Same metadata and path.

        Raises
        ------
        ValueError
            When `r_new` leaves the data range (both ranges are named), or
            is not a valid grid.
        """
        r_new = np.asarray(r_new, dtype=float)
        if r_new.ndim != 1 or r_new.size == 0:
            raise ValueError(
                f"cannot resample {self.name}: the new r-grid must be a "
                f"non-empty 1-D array, got shape {r_new.shape}"
            )
        lo, hi = self.r[0], self.r[-1]
        slack = 1e-6 * self.rstep
        if not np.all(np.isfinite(r_new)) or (
            r_new.min() < lo - slack or r_new.max() > hi + slack
        ):
            raise ValueError(
                f"cannot resample {self.name}: the new r-grid spans "
                f"{np.min(r_new):g}-{np.max(r_new):g} Å but the data cover "
                f"{lo:g}-{hi:g} Å; resampling interpolates, it never "
                "extrapolates"
            )
        if self.qmax is not None:
            bound = 5.0 / 384.0 * (self.qmax * self.rstep) ** 4
            if bound > 1e-3:
                logger.warning(
                    "%s: step %.4g Å is coarse for Qmax %.4g Å⁻¹; cubic "
                    "interpolation may be off by %.1e of the signal",
                    self.name,
                    self.rstep,
                    self.qmax,
                    bound,
                )
        from scipy.interpolate import CubicSpline

        inside = np.clip(r_new, lo, hi)
        g = CubicSpline(self.r, self.g)(inside)
        dg = None if self.dg is None else np.interp(inside, self.r, self.dg)
        return PDFData(r_new, g, dg, dict(self.metadata), self.path)

    def crop(self, rmin, rmax):
        """The points with ``rmin <= r <= rmax`` (ends within 1e-6 of a
        step count as inside).

        Parameters
        ----------
        rmin, rmax : float
            The range to keep, in Å.

        Returns
        -------
        PDFData
            Same metadata and path.

        Raises
        ------
        ValueError
            When ``rmin >= rmax``, when the range does not overlap the data
            (both ranges are named), or keeps fewer than `MIN_POINTS`.
        """
        rmin, rmax = float(rmin), float(rmax)
        lo, hi = self.r[0], self.r[-1]
        if not rmin < rmax:
            raise ValueError(
                f"cannot crop {self.name}: need rmin < rmax, got "
                f"rmin={rmin:g} Å, rmax={rmax:g} Å"
            )
        slack = 1e-6 * self.rstep
        if rmax < lo - slack or rmin > hi + slack:
            raise ValueError(
                f"cannot crop {self.name}: the range {rmin:g}-{rmax:g} Å "
                f"does not overlap the data range {lo:g}-{hi:g} Å"
            )
        keep = (self.r >= rmin - slack) & (self.r <= rmax + slack)
        if keep.sum() < MIN_POINTS:
            raise ValueError(
                f"cannot crop {self.name}: the range {rmin:g}-{rmax:g} Å "
                f"keeps {keep.sum()} of the points in {lo:g}-{hi:g} Å; at "
                f"least {MIN_POINTS} are needed"
            )
        dg = None if self.dg is None else self.dg[keep]
        return PDFData(
            self.r[keep], self.g[keep], dg, dict(self.metadata), self.path
        )


def load_pdf(path):
    """Read a measured G(r) file.

    Parameters
    ----------
    path : str or Path
        A PDFgetX3, PDFgetX2/xPDFsuite, PDFgui (``.gr``, ``.fgr``), srfit
        (``Profile.savetxt``) or plain 2-4 column text file.

    Returns
    -------
    PDFData
        With ``path`` set. From a PDFgui fit file (``#L ... Gdiff``) the
        observed G is ``G + Gdiff`` (PDFgui writes Gcalc and
        Gdiff = Gobs - Gcalc) and dG is None: its ``d_Gr`` column holds
        pdffit2's difference curve, not uncertainties.

    Raises
    ------
    FileNotFoundError
        When `path` does not exist.
    IsADirectoryError
        When `path` is a directory.
    PDFFileError
        For every file that is not a uniform-grid G(r): empty, no data,
        truncated or non-numeric rows, r not strictly increasing or not
        evenly spaced, negative r, NaN or inf, fewer than `MIN_POINTS`
        rows, units other than Å for r, a Q setting (``qmin``, ``qmax``,
        ``qdamp``, ``qbroad``) that is not a number or has a unit of the
        wrong dimension. The message names the file, the line and the
        offending text.

    Notes
    -----
    Problems that do not stop a fit are logged as warnings naming the
    file and the line: a dG column with zero or negative values is
    ignored (as diffpy.srfit's ``PDFParser`` ignores it), a header value
    that is not a number for a key the package does not compute with
    (``wavelength = unknown``) is kept as text, and an unknown radiation
    (``mode``) is kept as text. The file is read as UTF-8 (Latin-1 where
    it is not), or as UTF-16/UTF-32 when it starts with that byte-order
    mark (Windows PowerShell writes UTF-16).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory, not a PDF file")
    if not path.exists():
        raise FileNotFoundError(f"PDF file {path} does not exist")
    text = _decode(path.read_bytes(), path)
    r, g, dg, metadata = _parse_gr_text(text, path)
    return PDFData(r, g, dg, metadata, path)


def _decode(raw, path):
    """The text of a file's bytes; raises PDFFileError for binary data."""
    text = None
    # The UTF-32-LE mark begins with the UTF-16-LE one: test it first.
    for encoding, marks in (
        ("UTF-32", (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)),
        ("UTF-16", (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)),
    ):
        if raw.startswith(marks):
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError as err:
                raise PDFFileError(
                    f"{path}: starts with a {encoding} byte-order mark but "
                    f"is not {encoding} text ({err.reason} at byte "
                    f"{err.start})"
                ) from None
            break
    if text is None and b"\0" not in raw:
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
    if text is None or "\0" in text:
        raise PDFFileError(f"{path}: binary file (NUL bytes), not a G(r) text")
    return text


def write_gr(path, data):
    """Write `data` as a ``.gr`` file that `load_pdf`, PDFgui, pdffit2,
    srfit's ``PDFParser`` and ``numpy.loadtxt`` read.

    The header holds one ``# key = value`` line per metadata entry, then
    ``#### start data`` and ``#L r(Å) G(Å^-2)`` followed by the columns
    ``r G`` or, with uncertainties, ``r G dr dG`` with dr = 0 (PDFgui's
    4-column layout: a third column alone would be read as dr). Numbers
    are written in Python's shortest exact form, so reading the file back
    gives identical arrays and metadata. The file is written through
    `diffpy_cbldm.atomic.atomic_path`: on any failure no file is left.

    Parameters
    ----------
    path : str or Path
        Destination; an existing file is replaced only on success.
    data : PDFData

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    TypeError
        When `data` is not a `PDFData`.
    ValueError
        When a metadata key or value cannot be written as a header line.
    OSError
        When the file cannot be written.
    """
    if not isinstance(data, PDFData):
        raise TypeError(f"write_gr needs a PDFData, got {type(data).__name__}")
    path = Path(path)
    try:
        metadata = _normalise_metadata(
            (key, value, key) for key, value in data.metadata.items()
        )
    except _Invalid as err:
        raise ValueError(
            f"cannot write {path}: metadata {err.where!r}: {err.message}"
        ) from None
    # Every header line starts with "#" and none is blank: pdffit2 and
    # numpy.loadtxt skip such lines, PDFParser and load_pdf read them.
    header = ["# PDF data written by diffpy-cbldm"]
    header += [
        f"# {key} = {_header_value(value)}" for key, value in metadata.items()
    ]
    header += ["#### start data", "#S 1"]
    if data.dg is None:
        header.append("#L r(Å) G(Å^-2)")
        columns = (data.r, data.g)
    else:
        header.append("#L r(Å) G(Å^-2) dr(Å) dG(Å^-2)")
        columns = (data.r, data.g, np.zeros_like(data.r), data.dg)
    with (
        atomic_path(path) as tmp,
        open(tmp, "w", encoding="utf-8", newline="\n") as out,
    ):
        out.write("\n".join(header) + "\n")
        for row in zip(*(column.tolist() for column in columns)):
            out.write(" ".join(map(repr, row)) + "\n")
    return path


def _header_value(value):
    return repr(value) if isinstance(value, float) else value


def _float_array(values):
    return None if values is None else np.array(values, dtype=float)


def _check_arrays(r, g, dg):
    """Check a G(r) on a uniform grid; return ``(dg, ignored)``.

    dg is None when the column is all zero (no uncertainties) or holds a
    zero or negative value; in the latter case `ignored` is ``(row,
    value)`` of the first such value, for the caller's warning, else it
    is None. This follows diffpy.srfit's ``PDFParser``, which uses dG
    only when every value is positive (a propagated dG is exactly 0 at
    r = 0).

    Raises `_Invalid` with the offending row index as ``where`` (None
    for problems of the whole array).
    """
    if r.ndim != 1:
        raise _Invalid(f"r must be 1-D, got shape {r.shape}")
    for name, values in (("G", g), ("dG", dg)):
        if values is not None and values.shape != r.shape:
            raise _Invalid(
                f"{name} has shape {values.shape} but r has shape {r.shape}"
            )
    if r.size < MIN_POINTS:
        raise _Invalid(
            f"only {r.size} data points; at least {MIN_POINTS} are needed"
        )
    for name, values in (("r", r), ("G", g), ("dG", dg)):
        if values is not None and not np.all(np.isfinite(values)):
            row = int(np.argmin(np.isfinite(values)))
            raise _Invalid(
                f"{name} = {float(values[row])!r} is not finite", row
            )
    if r[0] < 0:
        raise _Invalid(f"r = {float(r[0])!r} is negative", 0)
    steps = np.diff(r)
    if np.any(steps <= 0):
        row = int(np.argmax(steps <= 0)) + 1
        raise _Invalid(
            f"r = {float(r[row])!r} does not increase from the previous "
            f"r = {float(r[row - 1])!r}",
            row,
        )
    _check_uniform(r, steps)
    if dg is not None:
        if np.all(dg == 0):
            return None, None
        if np.any(dg <= 0):
            row = int(np.argmax(dg <= 0))
            return None, (row, float(dg[row]))
    return dg, None


def _dg_ignored_message(value):
    return (
        f"dG = {value!r} is not positive; dG is ignored and every point "
        "weighs the same (a dG column is used only when all its values "
        "are positive, as diffpy.srfit's PDFParser does)"
    )


def _check_uniform(r, steps):
    """DiffPy fits need a uniform r-grid: check every step and the drift.

    The tolerance is 1e-4 of the step plus 1e-5 of the largest r, the
    rounding of values printed with 6 significant digits (``%g``).
    """
    step = float(np.median(steps))
    tolerance = 1e-4 * step + 1e-5 * float(np.max(np.abs(r)))
    uneven = np.abs(steps - step) > tolerance
    if np.any(uneven):
        row = int(np.argmax(uneven)) + 1
        raise _Invalid(
            f"r is not evenly spaced: step {steps[row - 1]:.6g} Å from "
            f"r = {float(r[row - 1])!r} where the grid step is {step:.6g} Å "
            "(a uniform r-grid is required)",
            row,
        )
    mean_step = (r[-1] - r[0]) / (r.size - 1)
    drift = np.abs(r - (r[0] + mean_step * np.arange(r.size)))
    if drift.max() > tolerance:
        row = int(np.argmax(drift))
        raise _Invalid(
            f"r is not evenly spaced: r = {float(r[row])!r} is "
            f"{drift[row]:.3g} Å off the uniform grid "
            f"{r[0]:g} + i * {mean_step:.6g} Å "
            "(a uniform r-grid is required)",
            row,
        )


def _checked_metadata(metadata, where, name=None):
    """`_normalise_metadata` of a dict, raising ValueError like the arrays'
    checks (`where` names the data). Warnings name `name`; None is quiet.
    """
    try:
        return _normalise_metadata(
            ((key, value, key) for key, value in dict(metadata or {}).items()),
            name,
        )
    except _Invalid as err:
        raise ValueError(
            f"{where}: metadata {err.where!r}: {err.message}"
        ) from None


def _location(name, where):
    """How a warning names an entry: a file's line, or a metadata key."""
    if isinstance(where, int):
        return f"{name}, line {where}"
    return f"{name}, metadata {where!r}"


def _normalise_metadata(entries, name=None):
    """Canonical metadata from ``(key, value, where)`` entries.

    Keys are lower-cased and translated (`_ALIASES`); numbers become
    floats in package units (`_DIMENSIONED`); ``mode`` becomes
    ``'xray'``/``'neutron'``/``'electron'``. The first value of a key
    wins. Raises `_Invalid` with the entry's ``where`` for a bad key and
    for a value of `_USED_NUMBERS` that is not a number in a known unit.
    A value of another key with a dimension that is not such a number,
    and a radiation not known, are kept as text with a warning naming
    `name` (a file, or "the data") and ``where`` (a line number or the
    key given); with `name` None they are kept quietly (the metadata of
    a `PDFData` already warned about).

    Returns
    -------
    dict
    """
    metadata = {}
    for key, value, where in entries:
        if not isinstance(key, str) or not re.fullmatch(_KEY, key):
            raise _Invalid(
                "a key must start with a letter and hold only letters, "
                "digits, '_', '.', '-'",
                where,
            )
        key = key.lower()
        key = _ALIASES.get(key, key)
        value, problem = _metadata_value(key, value, where)
        if problem is not None and name is not None:
            logger.warning(
                "%s: %s = %r: %s",
                _location(name, where),
                key,
                value,
                problem,
            )
        if key in metadata:
            if metadata[key] != value:
                logger.warning(
                    "metadata %r given twice (%r, then %r at %s); keeping "
                    "the first",
                    key,
                    metadata[key],
                    value,
                    where if name is None else _location(name, where),
                )
            continue
        metadata[key] = value
    return metadata


def _metadata_value(key, value, where):
    """``(value, problem)``: the canonical value of one entry, and why it
    was kept as text (None when it is fine)."""
    if isinstance(value, bool) or not isinstance(
        value, (str, int, float, np.integer, np.floating)
    ):
        raise _Invalid(f"value {value!r} is neither a number nor text", where)
    if isinstance(value, str) and ("\n" in value or "\r" in value):
        raise _Invalid(f"value {value!r} spans several lines", where)
    if key == "mode":
        return _mode_value(value)
    if not isinstance(value, str):
        return float(value), None
    text = value.strip()
    if key not in _DIMENSIONED:
        return _parse_value(key, text, where), None
    try:
        value = _parse_value(key, text, where)
    except _Invalid as err:
        if key in _USED_NUMBERS:
            raise
        return text, f"{err.message}; kept as text"
    if isinstance(value, float):
        return value, None
    if key in _USED_NUMBERS:
        raise _Invalid(f"{value!r} is not a number", where)
    # A blank value (PDFgetX3 writes "wavelength =" when it is not known)
    # says nothing: kept as it is, without a warning.
    if not text:
        return text, None
    unit_name = _DIMENSIONED[key][0]
    return text, f"not a number (in {unit_name}); kept as text"


def _mode_value(value):
    """``(mode, problem)``: the canonical radiation of a header value
    (``xrays``, ``X-ray``, ``N``, ``stype=X  x-ray scattering`` ...)."""
    text = str(value).strip()
    words = text.split()
    word = words[0].lower().replace("-", "").strip(",;:.") if words else ""
    mode = _MODES.get(word)
    if mode is not None:
        return mode, None
    known = ", ".join(sorted(set(_MODES.values())))
    return text.lower(), (
        f"unknown radiation, kept as text; the package knows {known} "
        "(also X/N/E and plurals)"
    )


def _parse_value(key, text, where):
    """A header value: float where it is a number, else the text.

    For keys with a dimension, a single word after the number is a unit
    and must be one we know (converted to Å⁻¹, Å or K; `_Invalid`
    otherwise); several words are a comment, as in PDFgui's
    ``qmax=0   correction not applied``.
    """
    match = _NUMBER.match(text)
    if match is None:
        return text
    rest = text[match.end() :].strip()
    number = float(match.group())
    if key not in _DIMENSIONED:
        return number if not rest else text
    if not rest or len(rest.split()) > 1:
        return number
    unit_name, units = _DIMENSIONED[key]
    factor = units.get(_unit_key(rest))
    if factor is None:
        raise _Invalid(
            f"unknown unit {rest!r} for {key} (in {unit_name})", where
        )
    return number * factor


def _unit_key(unit):
    unit = unit.lower().replace("⁻¹", "^-1").replace("**", "^")
    return re.sub(r"[\s$\\{}()]", "", unit)


def _parse_gr_text(text, path):
    """Arrays and metadata of a G(r) text; raises PDFFileError."""
    lines = text.splitlines()

    def fail(lineno, message):
        quoted = lines[lineno - 1].strip()
        if len(quoted) > 80:
            quoted = quoted[:77] + "..."
        raise PDFFileError(f"{path}, line {lineno}: {message}: {quoted!r}")

    if not text.strip():
        raise PDFFileError(f"{path}: the file is empty")
    header_end, data_start = _find_data(lines)
    if data_start is None:
        last = max(i for i, line in enumerate(lines, 1) if line.strip())
        fail(last, "no data rows follow the header")
    metadata = _header_metadata(lines[:header_end], fail, path)
    labels = _column_labels(lines[:data_start], fail)

    data_lines = [
        i
        for i in range(data_start + 1, len(lines) + 1)
        if lines[i - 1].strip()
    ]
    rows = []
    for lineno in data_lines:
        rows.append(_data_row(lines[lineno - 1], lineno, data_lines, fail))
        if len(rows[-1]) != len(rows[0]):
            hint = " (truncated file?)" if lineno == data_lines[-1] else ""
            fail(
                lineno,
                f"{len(rows[-1])} column(s) where the data block has "
                f"{len(rows[0])}{hint}",
            )
    table = np.array(rows, dtype=float)
    columns = _column_roles(table.shape[1], labels, data_lines[0], fail)
    r = table[:, columns.index("r")]
    g = table[:, columns.index("g")]
    dg = table[:, columns.index("dg")] if "dg" in columns else None
    if "gdiff" in columns and "gcalc" not in columns:
        logger.info("%s is a PDFgui fit file: G = Gcalc + Gdiff", path)
        g = g + table[:, columns.index("gdiff")]
        dg = None
    try:
        dg, ignored = _check_arrays(r, g, dg)
    except _Invalid as err:
        if err.where is None:
            raise PDFFileError(
                f"{path}, lines {data_lines[0]}-{data_lines[-1]}: "
                f"{err.message}"
            ) from None
        fail(data_lines[err.where], err.message)
    if ignored is not None:
        row, value = ignored
        logger.warning(
            "%s, line %d: %s: %r",
            path,
            data_lines[row],
            _dg_ignored_message(value),
            lines[data_lines[row] - 1].strip(),
        )
    if "mode" not in metadata:
        banner = "\n".join(lines[:header_end])
        if re.search(r"PDFgetX", banner):
            metadata["mode"] = "xray"
        elif re.search(r"PDFgetN", banner):
            metadata["mode"] = "neutron"
    return r, g, dg, metadata


def _find_data(lines):
    """(end of the key = value header, first data line), 0-based.

    The data follow a ``#### start data`` line and the ``#`` lines after
    it; without that marker, they start at the first line that is not a
    comment and begins with a number. The data start is None when no data
    row exists.
    """
    for i, line in enumerate(lines):
        if _START_DATA.match(line.strip()):
            j = i + 1
            while j < len(lines) and (
                not lines[j].strip() or lines[j].lstrip().startswith("#")
            ):
                j += 1
            return i, (j if j < len(lines) else None)
    for i, line in enumerate(lines):
        words = line.split()
        if words and not words[0].startswith("#") and _is_number(words[0]):
            return i, i
    return len(lines), None


def _is_number(word):
    try:
        float(word)
    except ValueError:
        return False
    return True


def _header_metadata(header_lines, fail, path):
    """Metadata of the ``key = value`` lines (with or without ``#``) and
    of Mantid's ``Comment:`` line: its comma-separated pieces are read as
    ``key=value`` and a bare radiation word as the ``mode``."""
    entries = []
    for lineno, line in enumerate(header_lines, 1):
        text = line.strip().lstrip("#").strip()
        comment = _COMMENT.match(text)
        if comment:
            entries += _comment_entries(comment.group(1), lineno)
            continue
        match = _KEY_VALUE.match(text)
        if match and not _SECTION.match(text):
            entries.append((match.group(1), match.group(2), lineno))
    try:
        return _normalise_metadata(entries, str(path))
    except _Invalid as err:
        fail(err.where, err.message)


def _comment_entries(text, lineno):
    """Entries of a ``Comment:`` line such as Mantid's SavePDFGui writes,
    ``neutron, Qmin=0.910607, Qmax=34.9906``; other pieces are free
    text and are left out."""
    entries = []
    for piece in text.split(","):
        piece = piece.strip()
        match = _KEY_VALUE.match(piece)
        if match:
            entries.append((match.group(1), match.group(2), lineno))
        elif piece.lower().replace("-", "") in _RADIATION_WORDS:
            entries.append(("mode", piece, lineno))
    return entries


def _column_labels(header_lines, fail):
    """Column roles named by the last header line, or None.

    That line counts as labels when every word (after ``#``/``#L``) is a
    known column name, e.g. ``#L r($\\AA$) G($\\AA^{-2}$)`` or
    ``# x  ycalc  y  dy``.
    """
    nonblank = [i for i, line in enumerate(header_lines, 1) if line.strip()]
    if not nonblank:
        return None
    lineno = nonblank[-1]
    text = header_lines[lineno - 1].strip()
    text = re.sub(r"^#+\s*(L\s)?", "", text)
    roles = []
    for word in re.split(r"[\s,]+", text.strip()):
        match = _LABEL.match(word)
        name = match.group(1).lower().replace("_", "") if match else ""
        if name not in _COLUMNS:
            return None
        roles.append(_COLUMNS[name])
        unit = match.group(2)
        if roles[-1] == "r" and unit is not None:
            if _LENGTH.get(_unit_key(unit)) != 1.0:
                fail(lineno, f"r is given in {unit!r}; r must be in Å")
    return roles


def _column_roles(ncols, labels, lineno, fail):
    if (
        labels is not None
        and len(labels) == ncols
        and labels.count("r") == 1
        and labels.count("g") == 1
        and len(set(labels)) == len(labels)
    ):
        return labels
    if ncols not in _POSITIONAL:
        fail(
            lineno,
            f"{ncols} column(s); without column labels a PDF file has "
            "2 (r G), 3 (r G dG) or 4 (r G dr dG)",
        )
    return _POSITIONAL[ncols]


def _data_row(line, lineno, data_lines, fail):
    text = line.strip()
    last = lineno == data_lines[-1]
    if text.startswith("#"):
        fail(lineno, "comment inside the data block (one block is supported)")
    values = []
    for word in text.split():
        try:
            values.append(float(word))
        except ValueError:
            hint = " (truncated file?)" if last else ""
            fail(lineno, f"{word!r} is not a number{hint}")
    return values
