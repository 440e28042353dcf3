"""Refine a cluster against a measured PDF with diffpy.srfit.

:class:`DebyeClusterGenerator` evaluates our Debye engine for an
``ase.Atoms`` inside an ordinary srfit ``FitContribution`` and exposes the
parameters under the names DiffPy users type: ``scale``, ``zoomscale``,
``Uiso_<El>`` per element, ``delta1``, ``delta2``, ``qdamp``, ``qbroad``
and the coordinates ``x_<i>``, ``y_<i>``, ``z_<i>``. :func:`refine_cluster`
builds the recipe and refines it in stages with
``scipy.optimize.least_squares``, freeing parameters one group at a time
as DiffPy users do by hand, and returns a :class:`RefinementResult` that
writes the usual .res, .fgr, .xyz, a .cif that diffpy.structure loads
with its Uiso, and a PDFgui-like figure.

Units: Å for lengths, Å² for Uiso and delta2, Å⁻¹ for Q, Å⁻² for G(r).
"""

import contextlib
import dataclasses
import logging
import math
import time
import warnings
from pathlib import Path

import numpy as np
from diffpy.srfit.fitbase import (
    FitContribution,
    FitRecipe,
    FitResults,
    Profile,
    ProfileGenerator,
)

from diffpy_cbldm.arguments import check_number
from diffpy_cbldm.atomic import atomic_path
from diffpy_cbldm.pdf.datafile import PDFData
from diffpy_cbldm.pdf.rw import best_scale, rw
from diffpy_cbldm.pdf.settings import PDFSettings

__all__ = [
    "DebyeClusterGenerator",
    "CIF_PAD",
    "Q_SETTINGS",
    "cluster_structure",
    "RefinementResult",
    "RefinementStage",
    "refine_cluster",
    "BOUNDS",
    "DEFAULTS",
]

logger = logging.getLogger(__name__)

ANTI_CORRELATED = (
    "the starting cluster's G(r) anti-correlates with the data (no "
    "positive scale improves on Rw 1); starting from scale 1"
)

BACKENDS = ("torch", "srreal")

Q_SETTINGS = ("qmin", "qmax", "qdamp", "qbroad")
"""The Q settings of a PDF, in Å⁻¹: the range of its Fourier transform
and the instrument's resolution."""

#: Settings used when neither the caller nor the data header give them.
#: qdamp 0.04 Å⁻¹ is typical of rapid-acquisition synchrotron PDF set-ups
#: (and DeepStruc's default); refine it or calibrate it on a standard when
#: the fit reaches far in r. rmin 1.5 Å leaves out the unphysical region
#: below the first interatomic distance.
DEFAULTS = {
    "qmin": 0.0,
    "qmax": 25.0,
    "qdamp": 0.04,
    "qbroad": 0.0,
    "rmin": 1.5,
    "uiso": 0.005,
}

#: Bounds of the refined variables, as srfit ``(lb, ub)`` pairs. Each
#: coordinate is bounded to ``max_shift`` Å around its start by
#: :func:`refine_cluster` itself.
BOUNDS = {
    "scale": (0.0, math.inf),
    "zoomscale": (0.8, 1.2),
    "uiso": (0.0005, 0.1),
    "delta1": (0.0, 5.0),
    "delta2": (0.0, 10.0),
    "qdamp": (0.0, 0.2),
    "qbroad": (0.0, 0.2),
}

#: The stages of a refinement: each frees more variables (by name or
#: tag) and refits all free ones, as DiffPy users do by hand.
DEFAULT_STAGES = (("scale",), ("zoomscale",), ("uiso", "delta2"))
POSITIONS_STAGE = ("positions",)

_PEAK_PARAMETERS = ("scale", "delta1", "delta2", "qdamp", "qbroad")
# load_pdf's radiation names as srfit's metadata spells them.
_STYPES = {"xray": "X", "neutron": "N", "electron": "E"}

# least_squares' ftol for every stage but the last; the last uses 1e-8.
_EARLY_STAGE_FTOL = 1e-4


# --------------------------------------------------------------------------
# The profile generator


class DebyeClusterGenerator(ProfileGenerator):
    """srfit profile generator: the Debye PDF of a cluster, from our
    engine.

    Use it like DiffPy's ``DebyePDFGenerator``::

        gen = DebyeClusterGenerator(atoms, "G")
        contribution = FitContribution("pdf")
        contribution.setProfile(profile)
        contribution.addProfileGenerator(gen)   # equation "G"
        recipe.addVar(gen.scale)

    Managed Parameters
    ------------------
    scale
        Scale factor of G(r).
    zoomscale
        Isotropic expansion of the cluster about its centre (the centroid
        of the starting positions): ``R = c + zoomscale * (xyz - c)``.
    Uiso_<El>
        Isotropic displacement parameter in Å² of every atom of element
        <El>, e.g. ``Uiso_Pt``.
    delta1, delta2
        Correlated-motion peak sharpening in Å and Å² (Jeong model).
    qdamp, qbroad
        Q-resolution damping and broadening in Å⁻¹.
    x_<i>, y_<i>, z_<i>
        Cartesian coordinates in Å of atom i (0-based, as in the
        ``ase.Atoms``), before the zoom.

    Usable Metadata
    ---------------
    qmin, qmax
        Q-range of the sine transform in Å⁻¹ (attributes, not
        refinable; also ``setQmax``/``getQmax``, ``setQmin``/``getQmin``
        as on DiffPy's generators, which ``PDFContribution.setQmax``
        calls).
    scale, delta1, delta2, qdamp, qbroad
        Starting values of the parameters of the same names.
    stype
        Scattering type (also ``setScatteringType``); only "X" (X-ray
        form factors) is computed.

    Parameters
    ----------
    atoms : ase.Atoms
        The cluster; it is copied.
    name : str
        Name of the generator in the contribution's equation.
    qmin, qmax : float
        Q-range in Å⁻¹ until the profile metadata set it.
    uiso : float or dict, optional
        Starting Uiso in Å², one value or ``{element: value}``. By default
        the per-element mean of ``atoms.arrays["uiso"]`` when present,
        else ``DEFAULTS["uiso"]``.
    dtype : str
        ``"float64"`` (default; finite-difference Jacobians need it) or
        ``"float32"``.
    device : str or torch.device
        Where the engine runs.
    """

    def __init__(
        self,
        atoms,
        name="G",
        *,
        qmin=DEFAULTS["qmin"],
        qmax=DEFAULTS["qmax"],
        uiso=None,
        dtype="float64",
        device="cpu",
    ):
        import torch

        from diffpy_cbldm.pdf.debye import check_cluster

        ProfileGenerator.__init__(self, name)
        check_cluster(atoms)
        if dtype not in ("float32", "float64"):
            raise ValueError(
                f"dtype must be 'float32' or 'float64', got {dtype!r}"
            )
        self._dtype = getattr(torch, dtype)
        self._device = torch.device(device)
        self._atoms = atoms.copy()
        self.elements = _elements(atoms)
        self._element_index = np.array(
            [self.elements.index(s) for s in atoms.get_chemical_symbols()]
        )
        self._numbers = torch.as_tensor(
            atoms.numbers, dtype=torch.long, device=self._device
        )
        positions = np.asarray(atoms.positions, dtype=float)
        #: Centre of the zoom in Å: the centroid of the starting cluster.
        self.centre = positions.mean(axis=0)

        self.newParameter("scale", 1.0)
        self.newParameter("zoomscale", 1.0)
        for name_ in ("delta1", "delta2", "qdamp", "qbroad"):
            self.newParameter(name_, 0.0)
        starts = _uiso_starts(atoms, self.elements, uiso)
        self._uiso = [
            self.newParameter(f"Uiso_{el}", starts[el]) for el in self.elements
        ]
        self._xyz = [
            self.newParameter(f"{axis}_{i}", float(value))
            for i, row in enumerate(positions)
            for axis, value in zip("xyz", row)
        ]
        self._check_q_range(qmin, qmax)
        self._qmin, self._qmax = float(qmin), float(qmax)
        # (inputs, G at scale 1) of the last evaluation.
        self._last = None

    # Q-range: plain attributes, as in DiffPy's generators.

    @property
    def qmin(self):
        """Lower end of the Q-range of the sine transform in Å⁻¹."""
        return self._qmin

    @qmin.setter
    def qmin(self, value):
        self._check_q_range(value, self.qmax)
        self._qmin = float(value)
        self.meta["qmin"] = self._qmin
        self._flush(other=(self,))

    @property
    def qmax(self):
        """Upper end of the Q-range of the sine transform in Å⁻¹."""
        return self._qmax

    @qmax.setter
    def qmax(self, value):
        self._check_q_range(self.qmin, value)
        self._qmax = float(value)
        self.meta["qmax"] = self._qmax
        self._flush(other=(self,))

    @staticmethod
    def _check_q_range(qmin, qmax):
        PDFSettings(qmin=float(qmin), qmax=float(qmax))

    # srfit's BasePDFGenerator methods, which PDFContribution.setQmax,
    # setQmin and setScatteringType call on every generator.

    def setQmax(self, qmax):
        """Set `qmax` in Å⁻¹ (as DiffPy's generators)."""
        self.qmax = qmax

    def getQmax(self):
        """`qmax` in Å⁻¹."""
        return self.qmax

    def setQmin(self, qmin):
        """Set `qmin` in Å⁻¹ (as DiffPy's generators)."""
        self.qmin = qmin

    def getQmin(self):
        """`qmin` in Å⁻¹."""
        return self.qmin

    def setScatteringType(self, stype="X"):
        """Record the radiation ("X", "N", "E"); the engine computes with
        X-ray form factors and warns for another radiation when the
        cluster has more than one element."""
        self.meta["stype"] = stype
        self._check_radiation()

    def getScatteringType(self):
        """The radiation recorded ("X" unless set)."""
        return self.meta.get("stype", self.meta.get("mode", "X"))

    def _check_radiation(self):
        # srfit's PDFParser says stype "X"/"N", our load_pdf mode "xray".
        radiation = self.meta.get("stype", self.meta.get("mode"))
        if radiation not in (None, "X", "xray") and len(self.elements) > 1:
            logger.warning(
                "profile metadata give radiation %r but the Debye engine "
                "uses X-ray form factors; only a one-element cluster is "
                "unaffected",
                radiation,
            )

    # Metadata hooks: srfit 3.2 calls processMetaData, later releases
    # _process_metadata; both do the same.

    def _process_metadata(self):
        """Configure the generator from ``self.meta`` (merged from the
        profile's metadata when the profile is set)."""
        self._check_radiation()
        qmin = self.meta.get("qmin", self.qmin)
        qmax = self.meta.get("qmax")
        # DiffPy writes qmax = 0 for "no termination": keep our own qmax.
        qmax = self.qmax if not qmax else qmax
        self._check_q_range(qmin, qmax)
        self._qmin, self._qmax = float(qmin), float(qmax)
        for name in _PEAK_PARAMETERS:
            value = self.meta.get(name)
            if value is not None:
                self.get(name).setValue(float(value))
        self._flush(other=(self,))

    def processMetaData(self):
        """Process the metadata once it gets set (srfit <= 3.2 name)."""
        self._process_metadata()

    # Evaluation

    def positions(self):
        """Current atomic positions in Å, zoom applied, shape (N, 3)."""
        xyz = np.fromiter(
            (p.value for p in self._xyz), dtype=float, count=len(self._xyz)
        ).reshape(-1, 3)
        return self.centre + self.zoomscale.value * (xyz - self.centre)

    def coordinates(self):
        """``[(name, Parameter)]`` of the coordinates x_0, y_0, z_0, x_1,
        ... in Å, before the zoom."""
        return [(p.name, p) for p in self._xyz]

    def uiso(self):
        """Current Uiso of every atom in Å², shape (N,)."""
        per_element = np.array([p.value for p in self._uiso], dtype=float)
        return per_element[self._element_index]

    def cluster(self):
        """The cluster as it stands: an ``ase.Atoms`` copy with the zoomed
        positions and ``arrays["uiso"]`` (Å²)."""
        atoms = self._atoms.copy()
        atoms.positions = self.positions()
        atoms.set_array("uiso", self.uiso())
        return atoms

    def __call__(self, r):
        """G(r) in Å⁻² of the current cluster on `r` (Å), shape (n,)."""
        r = np.asarray(r, dtype=float)
        positions, uiso = self.positions(), self.uiso()
        peak = (self.qdamp, self.qbroad, self.delta1, self.delta2)
        settings = tuple(p.value for p in peak) + (self._qmin, self._qmax)
        key = (r.tobytes(), positions.tobytes(), uiso.tobytes(), settings)
        # The scale alone changes nothing else: reuse the last G, which
        # makes the scale column of a finite-difference Jacobian free.
        if self._last is None or self._last[0] != key:
            self._last = (key, self._unscaled(r, positions, uiso))
        return self.scale.value * self._last[1]

    def _unscaled(self, r, positions, uiso):
        """G(r) at scale 1 from the engine, ndarray (n,)."""
        import torch

        from diffpy_cbldm.pdf.debye import DebyePDFCalculator

        # The calculation range is set from r as DiffPy's generators set
        # it (BasePDFGenerator._prepare); G is then evaluated at r itself.
        lo, hi = float(r.min()), float(r.max())
        rstep = (hi - lo) / max(len(r) - 1, 1) or 0.01
        calc = DebyePDFCalculator(
            rmin=lo,
            rmax=hi + 0.5 * rstep,
            rstep=rstep,
            qmin=self._qmin,
            qmax=self._qmax,
            qdamp=self.qdamp.value,
            qbroad=self.qbroad.value,
            delta1=self.delta1.value,
            delta2=self.delta2.value,
            dtype=self._dtype,
            device=self._device,
        )
        as_tensor = dict(dtype=self._dtype, device=self._device)
        with torch.no_grad():
            g = calc.compute(
                torch.as_tensor(positions, **as_tensor),
                self._numbers,
                uiso=torch.as_tensor(uiso, **as_tensor),
                r=r,
            )
        return g.cpu().numpy().astype(float)


def _elements(atoms):
    """Chemical symbols in order of first appearance."""
    return list(dict.fromkeys(atoms.get_chemical_symbols()))


def _uiso_starts(atoms, elements, uiso):
    """Starting Uiso per element in Å²."""
    if isinstance(uiso, dict):
        missing = [el for el in elements if el not in uiso]
        if missing:
            raise ValueError(
                f"uiso gives no start for element(s) {missing}; cluster "
                f"has {elements}"
            )
        starts = {el: float(uiso[el]) for el in elements}
    elif uiso is not None:
        starts = {el: float(uiso) for el in elements}
    elif "uiso" in atoms.arrays:
        symbols = np.array(atoms.get_chemical_symbols())
        values = np.asarray(atoms.arrays["uiso"], dtype=float)
        starts = {el: float(values[symbols == el].mean()) for el in elements}
    else:
        starts = {el: DEFAULTS["uiso"] for el in elements}
    lo, hi = BOUNDS["uiso"]
    for el, value in starts.items():
        if not lo <= value <= hi:
            raise ValueError(
                f"starting Uiso_{el}={value!r} Å² is outside its bounds "
                f"[{lo}, {hi}]"
            )
    return starts


# --------------------------------------------------------------------------
# The srreal backend: DiffPy's own DebyePDFGenerator, same variable names


def _srreal_generator(atoms, name, uiso):
    """DiffPy's DebyePDFGenerator on a diffpy.structure copy of `atoms`.

    The cluster sits in a unit cubic lattice so that fractional
    coordinates are Cartesian Å; ``zoomscale`` is then the lattice
    parameter.
    """
    try:
        import diffpy.srreal.pdfcalculator  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "backend='srreal' needs diffpy.srreal, which wraps the C++ "
            "library libdiffpy and cannot be installed with pip; install "
            "it from conda-forge (conda install -c conda-forge "
            "diffpy.srreal) or use backend='torch'"
        ) from exc
    from diffpy.srfit.pdf import DebyePDFGenerator
    from diffpy.structure import Lattice, Structure

    from diffpy_cbldm.pdf.debye import check_cluster

    check_cluster(atoms)
    elements = _elements(atoms)
    starts = _uiso_starts(atoms, elements, uiso)
    stru = Structure(lattice=Lattice(1, 1, 1, 90, 90, 90))
    for symbol, xyz in zip(atoms.get_chemical_symbols(), atoms.positions):
        stru.addNewAtom(symbol, xyz=xyz, Uisoequiv=starts[symbol])
    gen = DebyePDFGenerator(name)
    gen.setStructure(stru, periodic=False)
    return gen, elements, starts


# --------------------------------------------------------------------------
# Data


def _resolve_settings(pdf, given=None):
    """Q settings: the caller's value, else the data header, else
    DEFAULTS; returns ({name: value}, {name: source}).

    Warns when a given value overrides the header, and when the Fourier
    range (Qmin, Qmax) is unknown (:func:`_warn_unknown_q_range`)."""
    given = {} if given is None else given
    values, sources = {}, {}
    for name in Q_SETTINGS:
        header = getattr(pdf, name, None)
        if given.get(name) is not None:
            values[name] = check_number(name, given[name])
            sources[name] = "argument"
            if header is not None and not np.isclose(header, given[name]):
                logger.warning(
                    "%s=%g given overrides %s=%g in the header of %s",
                    name,
                    given[name],
                    name,
                    header,
                    pdf.name,
                )
        elif header is not None:
            values[name], sources[name] = float(header), "data"
        else:
            values[name], sources[name] = DEFAULTS[name], "default"
    # Validates finiteness, signs and qmax > qmin, naming the setting.
    PDFSettings(**values)
    unknown = [n for n in ("qmin", "qmax") if sources[n] == "default"]
    _warn_unknown_q_range(pdf, unknown)
    return values, sources


def _warn_unknown_q_range(pdf, unknown):
    """Warn that the data do not say their Fourier range.

    A cluster's G(r) from Qmin = 0 keeps its small-angle scattering, a
    broad hump that a measured PDF (Qmin of 0.5-1.5 Å⁻¹) lacks: refining
    a good octahedron against JQ_S1.gr stripped of its header gives Rw
    0.75, and 0.13 with its Qmin and Qmax given. A wrong Qmax misplaces
    the termination ripples. It is a ``UserWarning``, so that refining
    many candidates against one file says it once.
    """
    if not unknown:
        return
    used = {
        "qmin": f"Qmin = {DEFAULTS['qmin']:g} Å⁻¹, which keeps the cluster's "
        "small-angle scattering that a measured PDF lacks",
        "qmax": f"Qmax = {DEFAULTS['qmax']:g} Å⁻¹",
    }
    warnings.warn(
        f"{pdf.name} gives no "
        f"{' or '.join(n.capitalize() for n in unknown)}: G(r) is calculated "
        f"with {', and '.join(used[n] for n in unknown)}. Give the data's "
        f"own ({', '.join(n + '=' for n in unknown)} in Python; "
        f"{' '.join('--' + n for n in unknown)} on the command line): Rw "
        "means little without them",
        UserWarning,
        stacklevel=2,
    )


def _fit_range(pdf, rmin, rmax):
    """The fit range in Å, checked against the data's r-range; returns
    {"rmin": (value, source), "rmax": (value, source)}."""
    r = np.asarray(pdf.r, dtype=float)
    if rmin is not None:
        lo, lo_source = float(rmin), "argument"
    elif r[0] > DEFAULTS["rmin"]:
        lo, lo_source = float(r[0]), "data"
    else:
        lo, lo_source = DEFAULTS["rmin"], "default"
    hi, hi_source = (
        (float(r[-1]), "data") if rmax is None else (float(rmax), "argument")
    )
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        raise ValueError(f"fit range needs rmin < rmax, got {lo!r}, {hi!r}")
    from diffpy_cbldm.pdf.datafile import MIN_POINTS

    inside = int(np.sum((r >= lo - 1e-9) & (r <= hi + 1e-9)))
    if inside == 0:
        raise ValueError(
            f"fit range rmin={lo:g} to rmax={hi:g} Å does not overlap the "
            f"r-range {r[0]:g} to {r[-1]:g} Å of {pdf.name}"
        )
    if inside < MIN_POINTS:
        raise ValueError(
            f"fit range rmin={lo:g} to rmax={hi:g} Å holds only {inside} "
            f"points of {pdf.name}; at least {MIN_POINTS} are needed"
        )
    step = float(r[1] - r[0]) if len(r) > 1 else 0.0
    for name, value, end, past in (
        ("rmin", lo, r[0], lo < r[0] - step),
        ("rmax", hi, r[-1], hi > r[-1] + step),
    ):
        if past:
            # A UserWarning, so that refining many candidates against one
            # file says it once.
            warnings.warn(
                f"{name}={value:g} Å given, but {pdf.name} "
                f"{'starts' if name == 'rmin' else 'ends'} at r = {end:g} "
                "Å: the fit range stops there",
                UserWarning,
                stacklevel=2,
            )
    return {"rmin": (lo, lo_source), "rmax": (hi, hi_source)}


# --------------------------------------------------------------------------
# Results


@dataclasses.dataclass(frozen=True)
class RefinementStage:
    """One stage of a refinement.

    Attributes
    ----------
    freed : tuple of str
        Variable names or tags freed at this stage (earlier ones stay
        free).
    rw : float
        Rw at the end of the stage.
    nfev : int
        Residual evaluations of least_squares, Jacobian ones included.
    seconds : float
        Wall time of the stage.
    message : str
        least_squares' termination message.
    """

    freed: tuple
    rw: float
    nfev: int
    seconds: float
    message: str


CIF_PAD = 5.0
"""Å added to the fit's rmax for the gap between a cluster and its
periodic images in the CIF it is written to: a periodic engine spreads
every pair beyond its peak, pdffit2 for example takes pairs up to 1.5 Å
past rmax for its termination ripples, and with no pad the images of a
13-atom cluster raise pdffit2's Rw against the cluster's own Debye PDF
from 0.016 to 0.019 over r < 30 Å."""


def cluster_structure(atoms, margin):
    """A cluster as a diffpy.structure ``Structure`` in a P1 box.

    The box is orthorhombic, the cluster's bounding box plus `margin` on
    every axis, with the cluster in its middle: any periodic image of an
    atom is at least `margin` away from every atom of the cluster, so a
    periodic PDF calculation up to r = `margin` sees the cluster's own
    pairs only (plus the small -4πρ₀r baseline of its box). The positions
    are shifted by one vector, which changes no distance.

    Parameters
    ----------
    atoms : ase.Atoms
        The cluster (positions in Å); per-atom Uiso (Å²) from
        ``atoms.arrays["uiso"]`` when present, else 0.
    margin : float
        Smallest distance in Å between the cluster and its images.

    Returns
    -------
    diffpy.structure.Structure
        Title from the chemical formula; isotropic ADPs.
    """
    from diffpy.structure import Atom, Lattice, Structure

    if len(atoms) == 0:
        raise ValueError("cannot box a cluster without atoms")
    if not np.isfinite(margin) or margin <= 0:
        raise ValueError(f"margin must be > 0 Å, got {margin!r}")
    x = np.asarray(atoms.positions, dtype=float)
    low, high = x.min(axis=0), x.max(axis=0)
    edges = high - low + margin
    lattice = Lattice(*edges, 90.0, 90.0, 90.0)
    uiso = atoms.arrays.get("uiso", np.zeros(len(atoms)))
    fractional = (x - low + margin / 2) / edges
    structure = Structure(
        lattice=lattice, title=f"{atoms.get_chemical_formula()} cluster"
    )
    for symbol, xyz, u in zip(atoms.get_chemical_symbols(), fractional, uiso):
        structure.append(
            Atom(symbol, xyz=xyz, Uisoequiv=float(u), lattice=lattice)
        )
    return structure


@dataclasses.dataclass
class RefinementResult:
    """Outcome of :func:`refine_cluster`.

    Attributes
    ----------
    rw : float
        Rw over the fit range (:func:`diffpy_cbldm.pdf.rw.rw`, dG weights
        when the data carry dG); equals srfit's ``FitResults.rw``.
    atoms : ase.Atoms
        Refined copy of the cluster: zoom and positions applied, per-atom
        Uiso in ``atoms.arrays["uiso"]`` (Å²), refined scalars and Rw in
        ``atoms.info``.
    recipe : diffpy.srfit.fitbase.FitRecipe
        The recipe, left at the refined values; refine it further at will.
    r, gobs, gcalc, gdiff : ndarray, shape (n,)
        Fit grid in Å, observed, calculated and ``gobs - gcalc`` in Å⁻².
    dg : ndarray, shape (n,), or None
        Uncertainties of `gobs` when the data carry them.
    values : dict
        ``name -> (value, uncertainty)`` for every recipe variable, from
        srfit's FitResults; uncertainty is None for a fixed variable. As
        in srfit they are not scaled by the reduced chi² (meaningful in
        absolute terms only with measured dG).
    settings : dict
        ``name -> (value, source)`` for rmin, rmax, qmin, qmax and, when
        not refined, qdamp and qbroad; source is "argument", "data" or
        "default".
    stages : list of RefinementStage
    fit_results : diffpy.srfit.fitbase.FitResults
    backend : str
    start_positions : ndarray, shape (N, 3)
        Positions of the starting cluster in Å.
    """

    rw: float
    atoms: object
    recipe: object
    r: np.ndarray
    gobs: np.ndarray
    gcalc: np.ndarray
    gdiff: np.ndarray
    dg: object
    values: dict
    settings: dict
    stages: list
    fit_results: object
    backend: str
    start_positions: np.ndarray

    @property
    def rexp(self):
        """The expected Rw from the data's dG
        (:func:`diffpy_cbldm.pdf.rw.rexp`, N points less the refined
        parameters), or None when the data carry no dG. Rw near Rexp:
        the model fits as well as the stated uncertainties allow.

        A refined coordinate is restrained to its start (see
        :func:`refine_cluster`), and a restraint is an observation, as
        in Rietveld programs: each restrained coordinate adds one
        observation and one parameter, so only the unrestrained
        parameters (scale, zoomscale, Uiso, delta2, ...) are subtracted.
        """
        if self.dg is None:
            return None
        from diffpy_cbldm.pdf.rw import rexp

        refined = sum(
            unc is not None and not _is_coordinate(name)
            for name, (_, unc) in self.values.items()
        )
        return rexp(self.gobs, self.dg, refined)

    def summary(self):
        """A few lines for a terminal: Rw (and Rexp when the data carry
        dG) and the refined values."""
        lines = [
            f"Rw = {self.rw:.4f} over r = {self.r[0]:g}-{self.r[-1]:g} Å "
            f"({len(self.r)} points, {len(self.atoms)} atoms, "
            f"backend {self.backend})"
        ]
        if self.dg is not None:
            lines.append(
                f"Rexp = {self.rexp:.4f} from the data's dG "
                f"(Rw / Rexp = {self.rw / self.rexp:.2f})"
            )
        for name, (value, unc) in self.values.items():
            if name.startswith(("x_", "y_", "z_")):
                continue
            if unc is not None:
                lines.append(f"  {name:<10s} {value:.6g} ± {unc:.2g}")
                continue
            note = "fixed"
            if name in self.settings:
                note += f", {self.settings[name][1]}"
            lines.append(f"  {name:<10s} {value:.6g} ({note})")
        n_xyz = sum(
            name.startswith(("x_", "y_", "z_")) and unc is not None
            for name, (_, unc) in self.values.items()
        )
        if n_xyz:
            shift = np.linalg.norm(self._shifts(), axis=1)
            lines.append(
                f"  positions  {n_xyz} coordinates refined; shift from the "
                f"zoomed start: mean {shift.mean():.3f} Å, "
                f"max {shift.max():.3f} Å"
            )
        for name, (value, source) in self.settings.items():
            if name not in self.values:
                lines.append(f"  {name:<10s} {value:g} ({source})")
        return "\n".join(lines)

    def _shifts(self):
        """Displacement of each atom from its zoomed start, shape (N, 3)."""
        start = self.start_positions
        zoom = self.values["zoomscale"][0]
        centre = start.mean(axis=0)
        return self.atoms.positions - (centre + zoom * (start - centre))

    # Writers: each takes a path to write, which the public methods get
    # from atomic_path.

    def _write_res(self, path):
        header = (
            f"Results written: {time.ctime()}\n"
            "produced by diffpy-cbldm refine_cluster "
            f"(backend {self.backend})\n"
        )
        text = self.fit_results.formatResults(header=header)
        Path(path).write_text(text)

    def _write_fgr(self, path):
        lines = [
            "diffpy-cbldm refinement: calculated and observed G(r)",
            f"Rw = {self.rw:.6f}",
        ]
        if self.dg is not None:
            lines.append(f"Rexp = {self.rexp:.6f}")
        lines += [
            f"{k} = {v:.10g}"
            for k, (v, _) in self.settings.items()
            if k not in self.values
        ]
        lines += [
            f"{name} = {value:.10g}"
            for name, (value, _) in self.values.items()
            if not name.startswith(("x_", "y_", "z_"))
        ]
        # Last header line: column labels, which load_pdf recognises.
        lines.append("r(Å) Gcalc(Å^-2) Gobs(Å^-2) dGobs(Å^-2)")
        dg = np.zeros_like(self.r) if self.dg is None else self.dg
        table = np.column_stack([self.r, self.gcalc, self.gobs, dg])
        np.savetxt(path, table, fmt="%.8g", header="\n".join(lines))

    def _write_xyz(self, path):
        import ase.io

        # extxyz writes a None value as a bare key, which reads back as
        # True (e.g. seed=None, relaxed=None): leave such keys out.
        atoms = self.atoms.copy()
        atoms.info = {k: v for k, v in atoms.info.items() if v is not None}
        ase.io.write(path, atoms, format="extxyz")

    def _write_cif(self, path):
        margin = float(self.r[-1]) + CIF_PAD
        cluster_structure(self.atoms, margin).write(str(path), "cif")

    def _write_png(self, path):
        ax = self.plot()
        ax.figure.savefig(path, format="png", dpi=150)

    def save_res(self, path):
        """Write srfit's results text (``FitResults.saveResults`` format).

        Returns the path written."""
        return self._save(path, self._write_res)

    def save_fgr(self, path):
        """Write the fit as columns r, Gcalc, Gobs, dGobs.

        The column order is srfit's ``Profile.savetxt`` (x, ycalc, y, dy),
        which PDFgui and srfit read back with Gcalc as G; dGobs is 0 where
        the data carry no uncertainties (PDFgui's "none"). A ``#`` header
        gives Rw, the Q settings and the refined values. Returns the path
        written."""
        return self._save(path, self._write_fgr)

    def save_xyz(self, path):
        """Write the refined cluster as extended XYZ (ase.io), with
        per-atom Uiso and the refined values in the comment line.

        Returns the path written."""
        return self._save(path, self._write_xyz)

    def save_cif(self, path):
        """Write the refined cluster as a CIF with per-atom Uiso, in a P1
        box that keeps its periodic images at least the fit's rmax plus
        :data:`CIF_PAD` away (:func:`cluster_structure`).

        ``diffpy.structure.loadStructure`` reads it back with the refined
        Uiso, ready for a DiffPy ``DebyePDFGenerator``
        (``periodic=False``); VESTA, Mercury and ASE open it too.
        Returns the path written."""
        return self._save(path, self._write_cif)

    def plot(self, path=None, ax=None):
        """Draw the fit PDFgui-style (see
        :func:`diffpy_cbldm.plotting.plot_pdf_fit`).

        Parameters
        ----------
        path : str or Path, optional
            Also save the figure there; the format follows the suffix.
        ax : matplotlib.axes.Axes, optional
            Axes to draw on.

        Returns
        -------
        matplotlib.axes.Axes
        """
        from diffpy_cbldm.plotting import plot_pdf_fit

        title = f"{self.atoms.get_chemical_formula()} cluster"
        ax = plot_pdf_fit(
            self.r, self.gobs, self.gcalc, rw=self.rw, title=title, ax=ax
        )
        if path is not None:
            path = Path(path)
            fmt = path.suffix.lstrip(".").lower() or "png"
            with atomic_path(path) as tmp:
                ax.figure.savefig(tmp, format=fmt, dpi=150)
        return ax

    def save(self, outdir, stem):
        """Write ``stem.res``, ``stem.fgr``, ``stem.xyz``, ``stem.cif``
        and ``stem.png`` into the existing folder `outdir`, all or none.

        Returns
        -------
        list of Path
            The files written.
        """
        outdir = Path(outdir)
        writers = {
            ".res": self._write_res,
            ".fgr": self._write_fgr,
            ".xyz": self._write_xyz,
            ".cif": self._write_cif,
            ".png": self._write_png,
        }
        paths = [outdir / f"{stem}{suffix}" for suffix in writers]
        # Every file goes to a temporary first; they are moved into place
        # only once all are written, so a failure leaves none.
        with contextlib.ExitStack() as stack:
            tmps = [stack.enter_context(atomic_path(p)) for p in paths]
            for write, tmp in zip(writers.values(), tmps):
                write(tmp)
        return paths

    @staticmethod
    def _save(path, write):
        path = Path(path)
        with atomic_path(path) as tmp:
            write(tmp)
        return path


class _FitResults(FitResults):
    """srfit's FitResults with finite-difference steps that stay finite at
    zero and inside the bounds.

    srfit steps each variable by ``derivstep * value`` to either side: no
    step at all for a coordinate at the origin (the centre atom of most
    clusters), and a step out of bounds for a variable on its bound (e.g.
    qdamp = 0, where the engine rejects a negative value). Here the step
    is ``derivstep * max(|value|, 1)``, one-sided at a bound; the rest is
    srfit's.
    """

    def _calculateJacobian(self):
        recipe = self.recipe
        pvals = np.array(self.varvals, dtype=float)
        lb, ub = recipe.getBounds2()
        columns, dcon = [], []
        for k, value in enumerate(pvals):
            h = self.derivstep * max(abs(value), 1.0)
            hi = value + h if value + h <= ub[k] else value
            lo = value - h if value - h >= lb[k] else value
            pvals[k] = hi
            rk = np.array(recipe.residual(pvals))
            cond = []
            for con in recipe._oconstraints:
                con.update()
                cond.append(con.par.getValue())
            pvals[k] = lo
            rk -= recipe.residual(pvals)
            for i, con in enumerate(recipe._oconstraints):
                con.update()
                val = con.par.getValue()
                cond[i] = (
                    (cond[i] - val) / (hi - lo) if np.isscalar(val) else 0
                )
            pvals[k] = value
            dcon.append(cond)
            columns.append(rk / (hi - lo))
        recipe.residual(pvals)
        self._dcon = np.vstack(dcon).T
        return np.vstack(columns).T


# --------------------------------------------------------------------------
# The refinement


def refine_cluster(
    atoms,
    data,
    *,
    rmin=None,
    rmax=None,
    qmin=None,
    qmax=None,
    qdamp=None,
    qbroad=None,
    refine_positions=False,
    backend="torch",
    stages=None,
    zoomscale=1.0,
    uiso=None,
    delta1=0.0,
    delta2=0.0,
    scale=None,
    max_shift=0.3,
    position_sigma=0.05,
    max_nfev=None,
    dtype="float64",
    device="cpu",
):
    """Refine a cluster against a PDF with diffpy.srfit, in stages.

    The recipe has one contribution ``pdf`` with equation ``G`` (the
    generator carries the scale) and the variables ``scale``,
    ``zoomscale``, ``Uiso_<El>`` per element, ``delta1``, ``delta2``,
    ``qdamp``, ``qbroad`` and, with `refine_positions`, ``x_<i>``,
    ``y_<i>``, ``z_<i>``; all start fixed. Each stage frees more of them
    (by name or tag: ``"uiso"`` for all Uiso, ``"positions"`` for all
    coordinates) and refits every free variable with
    ``scipy.optimize.least_squares`` (trust-region reflective, bounds
    from ``recipe.getBounds2()``, 2-point finite-difference Jacobian in
    float64). The scale starts from its closed-form best value.

    Parameters
    ----------
    atoms : ase.Atoms
        Starting cluster, Å.
    data : str, Path, PDFData, tuple, Profile or PDFContribution
        A PDF file (read by :func:`diffpy_cbldm.pdf.datafile.load_pdf`), a
        PDFData, an ``(r, G)`` or ``(r, G, dG)`` tuple, or a srfit
        ``Profile`` or ``FitContribution`` (its observed profile on its
        calculation range; :meth:`~diffpy_cbldm.pdf.datafile.PDFData
        .from_any`).
    rmin, rmax : float, optional
        Fit range in Å; default from ``max(1.5, r[0])`` to the data's end.
    qmin, qmax, qdamp, qbroad : float, optional
        Q settings in Å⁻¹. Each is taken from the argument when given,
        else from the data header, else from :data:`DEFAULTS` (qmin 0,
        qmax 25, qdamp 0.04, qbroad 0).
    refine_positions : bool
        Append a stage that frees all coordinates (after `stages`, unless
        one of them frees ``"positions"`` or ``"all"``). Each coordinate is
        restrained to its start (srfit ``recipe.restrain``, Gaussian of
        width `position_sigma` Å, scaled by the mean chi²) and bounded to
        ±`max_shift` Å.
    backend : {"torch", "srreal"}
        Our Debye engine, or DiffPy's DebyePDFGenerator (needs
        conda-forge's diffpy.srreal) with the same variable names.
    stages : sequence of sequences of str, optional
        Names or tags freed stage by stage; default
        ``[["scale"], ["zoomscale"], ["uiso", "delta2"]]`` (+
        ``["positions"]``). Add e.g. ``["qdamp"]`` to refine qdamp. An
        empty sequence refines nothing: the result is the starting
        cluster at its best scale.
    zoomscale, delta1, delta2 : float
        Starting values.
    uiso : float or dict, optional
        Starting Uiso in Å² (one value or per element); by default from
        ``atoms.arrays["uiso"]`` when present, else 0.005.
    scale : float, optional
        Starting scale; default: the best scale for the starting model.
    max_shift, position_sigma : float
        Position bounds and restraint width in Å (see above).
    max_nfev : int, optional
        Cap on least_squares iterations per stage (its ``max_nfev``).
    dtype, device :
        Precision (``"float64"`` only: the finite-difference derivatives
        need it) and device of the torch engine.

    Returns
    -------
    RefinementResult

    Raises
    ------
    ValueError
        Bad cluster (empty, atoms closer than 0.5 Å, unknown element),
        fit range outside the data, bad Q settings, unknown backend or
        stage name, start values outside their bounds.
    ImportError
        ``backend="srreal"`` without diffpy.srreal.
    """
    if backend not in BACKENDS:
        raise ValueError(
            f"unknown backend {backend!r}; choose one of {BACKENDS}"
        )
    if dtype != "float64":
        # least_squares and the uncertainties step by ~1e-8 relative,
        # below float32's resolution: the Jacobian would be noise.
        raise ValueError(
            f"refinement needs dtype='float64', got {dtype!r}: its "
            "finite-difference derivatives step below float32's resolution"
        )
    zoomscale, delta1, delta2 = (
        check_number(name, value)
        for name, value in (
            ("zoomscale", zoomscale),
            ("delta1", delta1),
            ("delta2", delta2),
        )
    )
    if scale is not None:
        scale = check_number("scale", scale)
    max_shift = check_number("max_shift", max_shift)
    position_sigma = check_number("position_sigma", position_sigma)
    rmin, rmax = (
        None if value is None else check_number(name, value)
        for name, value in (("rmin", rmin), ("rmax", rmax))
    )
    stages = _check_stages(stages, refine_positions)
    pdf = PDFData.from_any(data)
    span = _fit_range(pdf, rmin, rmax)
    lo, hi = span["rmin"][0], span["rmax"][0]
    q, sources = _resolve_settings(
        pdf, dict(qmin=qmin, qmax=qmax, qdamp=qdamp, qbroad=qbroad)
    )

    profile = Profile()
    dg_obs = None if pdf.dg is None else np.asarray(pdf.dg, dtype=float)
    profile.setObservedProfile(
        np.asarray(pdf.r, dtype=float), np.asarray(pdf.g, dtype=float), dg_obs
    )
    profile.setCalculationRange(lo, hi)
    # The resolved Q settings and the radiation travel as profile
    # metadata, so the generator is configured by its metadata hook, as
    # DiffPy's are (srfit's reads the radiation as "stype").
    profile.meta.update(q)
    if pdf.mode is not None:
        profile.meta["stype"] = _STYPES.get(pdf.mode, pdf.mode)

    if backend == "torch":
        gen = DebyeClusterGenerator(
            atoms, "G", uiso=uiso, dtype=dtype, device=device
        )
        elements, uiso_starts = gen.elements, None
    else:
        gen, elements, uiso_starts = _srreal_generator(atoms, "G", uiso)
    contribution = FitContribution("pdf")
    contribution.setProfile(profile, xname="r")
    contribution.addProfileGenerator(gen)
    recipe = FitRecipe("cluster")
    recipe.clearFitHooks()
    recipe.addContribution(contribution)
    _add_variables(
        recipe,
        gen,
        backend,
        elements,
        uiso_starts,
        starts=dict(zoomscale=zoomscale, delta1=delta1, delta2=delta2),
        refine_positions=refine_positions,
        max_shift=max_shift,
        position_sigma=position_sigma,
    )
    _start_scale(recipe, contribution, scale, dg_obs is not None)

    _check_stage_names(recipe, stages)
    dg = profile.dy if dg_obs is not None else None
    reports = []
    for k, freed in enumerate(stages):
        recipe.free(*freed)
        # Earlier stages only bring the next one close to its minimum.
        ftol = 1e-8 if k == len(stages) - 1 else _EARLY_STAGE_FTOL
        reports.append(
            _run_stage(recipe, contribution, freed, dg, max_nfev, ftol)
        )
        logger.info(
            "stage %s: Rw %.5f, %d evaluations, %.2f s",
            "+".join(freed),
            reports[-1].rw,
            reports[-1].nfev,
            reports[-1].seconds,
        )

    fit_results = _FitResults(recipe)
    values = {
        name: (float(v), float(u))
        for name, v, u in zip(
            fit_results.varnames, fit_results.varvals, fit_results.varunc
        )
    }
    values.update(
        {
            name: (float(v), None)
            for name, v in zip(fit_results.fixednames, fit_results.fixedvals)
        }
    )
    r = np.array(profile.x)
    gobs = np.array(profile.y)
    gcalc = np.array(profile.ycalc)
    rw_final = float(rw(gobs, gcalc, dg))

    # The range actually fitted: the data points inside [rmin, rmax].
    settings = {
        "rmin": (float(r[0]), span["rmin"][1]),
        "rmax": (float(r[-1]), span["rmax"][1]),
    }
    for name in Q_SETTINGS:
        if name not in values or values[name][1] is None:
            settings[name] = (q[name], sources[name])

    refined = _refined_atoms(atoms, recipe, gen, backend, elements, values)
    refined.info["rw"] = rw_final
    return RefinementResult(
        rw=rw_final,
        atoms=refined,
        recipe=recipe,
        r=r,
        gobs=gobs,
        gcalc=gcalc,
        gdiff=gobs - gcalc,
        dg=None if dg is None else np.array(dg),
        values=values,
        settings=settings,
        stages=reports,
        fit_results=fit_results,
        backend=backend,
        start_positions=np.array(atoms.positions, dtype=float),
    )


def _check_stages(stages, refine_positions):
    """Stages as a tuple of tuples of names, checked; with
    `refine_positions`, the positions stage is appended when no stage
    frees the coordinates."""
    if stages is None:
        stages = DEFAULT_STAGES
    if isinstance(stages, str):
        raise ValueError(
            f"stages must be a sequence of sequences of names, got {stages!r}"
        )
    checked = []
    for stage in stages:
        stage = (stage,) if isinstance(stage, str) else tuple(stage)
        if not stage:
            raise ValueError("a refinement stage frees nothing: empty stage")
        if "positions" in stage and not refine_positions:
            raise ValueError(
                "a stage frees 'positions' but refine_positions=False"
            )
        checked.append(stage)
    if refine_positions and not any(
        {"positions", "all"} & set(stage) for stage in checked
    ):
        checked.append(POSITIONS_STAGE)
    return tuple(checked)


def _add_variables(
    recipe,
    gen,
    backend,
    elements,
    uiso_starts,
    *,
    starts,
    refine_positions,
    max_shift,
    position_sigma,
):
    """Add every variable, fixed, with bounds and tags."""
    for name in _PEAK_PARAMETERS:
        var = recipe.addVar(getattr(gen, name), fixed=True)
        if name in starts:
            var.setValue(float(starts[name]))
        _bound(var, BOUNDS[name])
    if backend == "torch":
        zoom = recipe.addVar(gen.zoomscale, fixed=True)
        for el in elements:
            var = recipe.addVar(gen.get(f"Uiso_{el}"), tags=["uiso"])
            var.boundRange(*BOUNDS["uiso"])
        coordinates = gen.coordinates()
    else:
        phase = gen.phase
        zoom = recipe.newVar("zoomscale", 1.0, fixed=True)
        lattice = phase.getLattice()
        for par in (lattice.a, lattice.b, lattice.c):
            recipe.constrain(par, "zoomscale")
        for el in elements:
            recipe.newVar(f"Uiso_{el}", uiso_starts[el], tags=["uiso"])
            recipe.get(f"Uiso_{el}").boundRange(*BOUNDS["uiso"])
            for atom in phase.getScatterers():
                if atom.element == el:
                    recipe.constrain(atom.Uiso, f"Uiso_{el}")
        coordinates = [
            (f"{axis}_{i}", atom.get(axis))
            for i, atom in enumerate(phase.getScatterers())
            for axis in "xyz"
        ]
    zoom.setValue(float(starts["zoomscale"]))
    _bound(zoom, BOUNDS["zoomscale"])
    if not refine_positions:
        recipe.fix("all")
        return
    if max_shift <= 0 or position_sigma <= 0:
        raise ValueError(
            f"max_shift={max_shift!r} and position_sigma={position_sigma!r} "
            "must both be > 0 Å"
        )
    for name, par in coordinates:
        var = recipe.addVar(par, name=name, tags=["positions"])
        x0 = float(var.value)
        var.boundRange(x0 - max_shift, x0 + max_shift)
        # A Gaussian pull to the start, weighted like one average data
        # point: keeps the cluster physical and tells the coordinates from
        # zoomscale, which would otherwise be degenerate with them.
        recipe.restrain(var, lb=x0, ub=x0, sig=position_sigma, scaled=True)
    recipe.fix("all")


def _is_coordinate(name):
    """Whether a refined variable's name is a coordinate's (``x_0``,
    ``y_12``...; both backends name them so)."""
    axis, _, index = name.partition("_")
    return axis in ("x", "y", "z") and index.isdigit()


def _bound(var, bounds):
    """Bound a variable; its start value must lie within the bounds."""
    lo, hi = bounds
    if not lo <= var.value <= hi:
        raise ValueError(
            f"starting {var.name}={var.value!r} is outside its bounds "
            f"[{lo}, {hi}]"
        )
    var.boundRange(lo, hi)


def _start_scale(recipe, contribution, scale, weighted):
    """Set the starting scale: given, or best for the starting model."""
    var = recipe.get("scale")
    if scale is not None:
        if not scale > 0:
            raise ValueError(f"starting scale must be > 0, got {scale!r}")
        var.setValue(float(scale))
        return
    var.setValue(1.0)
    recipe.residual()
    profile = contribution.profile
    s = float(
        best_scale(profile.y, profile.ycalc, profile.dy if weighted else None)
    )
    if s > 0:
        var.setValue(s)
    else:
        logger.warning(
            ANTI_CORRELATED,
            extra={"anti_correlated": True},
        )


def _check_stage_names(recipe, stages):
    """Every name in `stages` must be a variable name or tag."""
    known = {
        tag
        for var in recipe._parameters.values()
        for tag in recipe._tagmanager.tags(var)
    }
    for freed in stages:
        unknown = [name for name in freed if name not in known]
        if unknown:
            names = sorted(
                n for n in known if not n.startswith(("__", "x_", "y_", "z_"))
            )
            raise ValueError(
                f"stage {list(freed)} names unknown variable(s) {unknown}; "
                f"known names and tags: {names}"
            )


def _run_stage(recipe, contribution, freed, dg, max_nfev, ftol):
    """Refine every free variable with least_squares."""
    from scipy.optimize import least_squares

    start = time.perf_counter()
    lb, ub = recipe.getBounds2()
    x0 = np.clip(recipe.getValues(), lb, ub)
    solution = least_squares(
        recipe.residual,
        x0,
        jac="2-point",
        bounds=(lb, ub),
        method="trf",
        x_scale="jac",
        ftol=ftol,
        max_nfev=max_nfev,
    )
    # Leave the recipe at the solution, not at the last trial point.
    recipe.residual(solution.x)
    profile = contribution.profile
    nfev = solution.nfev + len(x0) * (solution.njev or 0)
    return RefinementStage(
        freed=tuple(freed),
        rw=float(rw(profile.y, profile.ycalc, dg)),
        nfev=int(nfev),
        seconds=time.perf_counter() - start,
        message=str(solution.message),
    )


def _refined_atoms(atoms, recipe, gen, backend, elements, values):
    """A copy of `atoms` at the refined values."""
    refined = atoms.copy()
    if backend == "torch":
        refined.positions = gen.positions()
        refined.set_array("uiso", gen.uiso())
    else:
        scatterers = gen.phase.getScatterers()
        xyz = np.array([[a.x.value, a.y.value, a.z.value] for a in scatterers])
        centre = np.asarray(atoms.positions, dtype=float).mean(axis=0)
        zoom = recipe.get("zoomscale").value
        refined.positions = centre + zoom * (xyz - centre)
        refined.set_array("uiso", np.array([a.Uiso.value for a in scatterers]))
    for name, (value, _) in values.items():
        if not name.startswith(("x_", "y_", "z_")):
            refined.info[name] = value
    return refined
