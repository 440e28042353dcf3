"""CbLDMGenerator: candidate nanoparticles for a measured PDF.

The generator chains the pieces of the package in the paper's order:

1. the measured PDF is mapped onto the model's r-grid and normalised
   (:func:`diffpy_cbldm.conventions.model_input`, the one place where
   this happens);
2. the condition VAE compresses it to a latent condition, the diffusion
   sampler draws `n` structure latents for it in one batch, and the
   structure VAE decodes them to padded Laplacians
   (:class:`diffpy_cbldm.model.CbLDMPipeline`);
3. each Laplacian is turned into coordinates by the aDGP step
   (:func:`diffpy_cbldm.clusters.laplacian.positions_from_laplacian`)
   and, by default, scaled to the data's nearest-neighbour distance
   (the template decoder's exact lattice pieces) or relaxed in a Morse
   potential there (free decoded coordinates;
   :func:`diffpy_cbldm.clusters.relax.relax_clusters`);
4. each candidate's PDF is computed with the data's Q settings and
   compared with the data after a free scale (Rw);
5. :meth:`CbLDMGenerator.solve` refines every candidate with
   :func:`diffpy_cbldm.refine.refine_cluster` and ranks them by Rw.
"""

import logging
import re
import time

import numpy as np

from diffpy_cbldm.arguments import check_count, check_number

__all__ = [
    "CbLDMGenerator",
    "DEFAULT_WEIGHTS",
    "DRAWS_PER_CANDIDATE",
    "MERGE_DISTANCE",
    "MIN_ATOMS",
    "TYPE_GUIDANCE",
    "as_pdf_data",
    "candidate_rw",
    "data_displacement",
    "match_first_peak",
    "merge_close_atoms",
    "rank_results",
    "refine_candidates",
    "set_raw_rw",
]

logger = logging.getLogger(__name__)

DEFAULT_WEIGHTS = "mmnp-v2"
"""Weights used when ``from_pretrained`` is given no name."""

MERGE_DISTANCE = 1.0
"""Atoms of a generated cluster closer than this (Å) are one atom drawn
twice: no metal has bonds shorter than about 2.2 Å. They are merged at
their mean position and the number merged is recorded in
``atoms.info["merged_atoms"]``."""


TYPE_GUIDANCE = 1.0
"""Default strength of the guidance towards the structure type the
cluster estimator reads in the data (``propose(type_guidance=...)``).
On 21 validation PDFs of the mmnp-v1 weights it raised the share
of sampled latents of the right type from 65 % to 91 % and of top-ranked
refined candidates from 18/21 to 21/21 (docs/theory_model.rst, "Guidance
towards a structure type")."""


DRAWS_PER_CANDIDATE = 2
"""Latents sampled per candidate asked for: ``propose(data, n)`` samples
``2 n`` clusters in one batch and returns the `n` that fit the data best
before refinement (raw Rw). Chosen on 56 validation PDFs (8 per type) of
the mmnp-v1 weights: against one draw per candidate, the median
refined Rw of the top-ranked candidate fell from 0.152 to 0.142 (lower
in 18 cases by more than 0.005, higher in 2), the decahedra's from 0.217
to 0.179, and the median propose time rose from 1.9 to 3.1 s; three
draws per candidate gained no more (0.147) and took 3.8 s
(``benchmarks/sampler_sweep.py``, docs/benchmarks/model_quality.rst,
"Draws per candidate")."""


MIN_ATOMS = 5
"""Fewest atoms the decoder is asked for: the smallest cluster of the
training set (:data:`diffpy_cbldm.clusters.build.MIN_ATOMS`). Merging
atoms closer than :data:`MERGE_DISTANCE` can still leave fewer (with
seed 0, one of the mmnp-v1 weights' ten candidates for
JQ_S1.gr had 6 atoms, 4 of them merged); ``atoms.info["merged_atoms"]``
says how many."""


UNCERTAIN_COUNT_WIDTH = 0.15
"""Standard deviation of ln n above which the cluster estimator's count
is reported as uncertain (a warning from ``propose``). On the 1362
validation PDFs, mapped as ``propose`` maps them and told their Qdamp,
the mmnp-v1 estimator read 74 % with a width up to 0.15, and
had 83 % of those counts within 10 %; of the rest, 27 %. Most of the
latter are rods and plates longer than the model's 30 Å r-range, whose
median width is 0.18, against 0.05 for particles that fit in it
(``benchmarks/estimator_quality.py``, docs/benchmarks/model_quality.rst).
"""


COUNT_WIDTH = 0.05
"""Default uncertainty of an atom count given to ``propose(count=...)``,
as a standard deviation of ln n (about ±5 %): sharp enough that the
sampled clusters keep to it (with the true count given, the draws of
the test cases of docs/benchmarks/evaluate.rst stay within a few atoms
of it), loose enough to let the decoder's own count distribution choose
among neighbouring counts."""


_ESTIMATE_KEYS = (
    "count_estimate",
    "count_estimate_width",
    "type_estimate",
    "type_estimate_probability",
    "count_estimate_qdamp",
)
"""``atoms.info`` keys of the cluster estimator's readings (None for
weights without one)."""


def as_pdf_data(data, **q_settings):
    """A :class:`~diffpy_cbldm.pdf.datafile.PDFData` from what users hold.

    Parameters
    ----------
    data : str, Path, PDFData, tuple, Profile or PDFContribution
        A PDF file, a PDFData, ``(r, G)`` or ``(r, G, dG)`` arrays, or a
        diffpy.srfit ``Profile`` or ``FitContribution`` (its profile).
    **q_settings
        ``qmin``, ``qmax``, ``qdamp``, ``qbroad`` in Å⁻¹ (None: the
        header's): written into the data's header, so that screening,
        the cluster estimator and refinement all use them. A value that
        differs from the header's is logged, as refinement logs it.

    Raises
    ------
    TypeError
        For any other kind of object, or another keyword.
    ValueError
        For a Q setting that is not a number, negative, or qmax <= qmin.
    """
    from diffpy_cbldm.pdf.datafile import PDFData
    from diffpy_cbldm.refine import Q_SETTINGS, _resolve_settings

    unknown = sorted(set(q_settings) - set(Q_SETTINGS))
    if unknown:
        raise TypeError(
            f"unknown Q setting(s) {unknown}; give any of {Q_SETTINGS}"
        )
    given = {k: v for k, v in q_settings.items() if v is not None}
    pdf = PDFData.from_any(data)
    if not given:
        return pdf
    values, _ = _resolve_settings(pdf, given)
    return pdf.with_metadata(**{name: values[name] for name in given})


def merge_close_atoms(positions, distance=MERGE_DISTANCE):
    """Merge groups of atoms closer than `distance` into their mean.

    Parameters
    ----------
    positions : ndarray, shape (n, 3)
    distance : float
        Å.

    Returns
    -------
    positions : ndarray, shape (m, 3), m <= n
    merged : int
        ``n - m``.
    """
    from scipy.cluster.hierarchy import fcluster, linkage

    positions = np.asarray(positions, dtype=float)
    if len(positions) < 2:
        return positions, 0
    labels = fcluster(
        linkage(positions, method="single"), distance, criterion="distance"
    )
    if labels.max() == len(positions):
        return positions, 0
    merged = np.array(
        [positions[labels == k].mean(axis=0) for k in np.unique(labels)]
    )
    return merged, len(positions) - len(merged)


def _element(pdf, element):
    """The metal of the candidates: the argument, else the data header's
    composition when it names one element."""
    from ase.data import atomic_numbers

    if element is None:
        comp = pdf.composition
        if comp is None:
            raise ValueError(
                f"{pdf.name} does not give the sample composition; pass "
                "your sample's metal as element= (--element on the "
                "command line), e.g. element='Au'"
            )
        # One symbol with an optional amount: "Pt", "Au144", "Pt1.0".
        match = re.fullmatch(r"\s*([A-Z][a-z]?)\s*(\d+\.?\d*)?\s*", str(comp))
        element = match.group(1) if match else None
        if element not in atomic_numbers:
            raise ValueError(
                f"{pdf.name}: composition {comp!r} is not a single "
                "element; CbLDM proposes mono-metallic clusters, pass "
                "element='...' (--element on the command line)"
            )
    if element not in atomic_numbers or element == "X":
        raise ValueError(f"unknown element {element!r}")
    return element


def _settings(pdf, fit_rmax=None, fit_rmin=None):
    """Debye settings for comparing candidates with the data: the data
    header's Q values, else refine.DEFAULTS, as refinement resolves them
    (with its warning when the Fourier range is unknown); the data's
    r-grid from 1.5 Å (or its start, or `fit_rmin`) to its end (or
    `fit_rmax`)."""
    from diffpy_cbldm.refine import DEFAULTS, _resolve_settings

    settings = _resolve_settings(pdf)[0]
    rmin = DEFAULTS["rmin"] if fit_rmin is None else float(fit_rmin)
    rmin = max(rmin, float(pdf.r[0]))
    rmax = float(pdf.r[-1]) if fit_rmax is None else float(fit_rmax)
    return settings, rmin, rmax


def _fit_points(pdf, fit_rmax=None, fit_rmin=None):
    """The Debye settings of :func:`_settings` and the data's points over
    its fit range: ``settings, r, gobs, dg`` (dg None when the data have
    none)."""
    settings, rmin, rmax = _settings(pdf, fit_rmax, fit_rmin)
    keep = (pdf.r >= rmin) & (pdf.r <= rmax)
    dg = None if pdf.dg is None else pdf.dg[keep]
    return settings, pdf.r[keep], pdf.g[keep], dg


def candidate_rw(clusters, pdf, *, rmax=None, uiso=None, delta2=0.0):
    """Rw of each cluster against the data after a free scale.

    G is computed with the data's Q settings (header, else the defaults
    of :func:`~diffpy_cbldm.refine.refine_cluster`), the given atomic
    displacement (by default Uiso 0.005 Å², no delta2) and no
    refinement, on the data's own r-points from 1.5 Å.

    Parameters
    ----------
    clusters : sequence of ase.Atoms
    pdf : anything :func:`as_pdf_data` accepts
    rmax : float, optional
        End of the r-range compared, in Å (default: the data's end).
    uiso : float, optional
        Isotropic displacement of every atom in Å² (default
        ``refine.DEFAULTS["uiso"]``, 0.005 Å²).
    delta2 : float
        Correlated-motion sharpening in Å², as in PDFgui.

    Returns
    -------
    ndarray, shape (len(clusters),)
    """
    from diffpy_cbldm.pdf.debye import DebyePDFCalculator
    from diffpy_cbldm.pdf.rw import rw_free_scale
    from diffpy_cbldm.refine import DEFAULTS

    if uiso is None:
        uiso = DEFAULTS["uiso"]
    elif not (np.isfinite(uiso) and uiso >= 0):
        # The engine would name its Biso; the user gave Uiso.
        raise ValueError(f"uiso must be finite and >= 0 Å², got {uiso!r}")
    settings, r, gobs, dg = _fit_points(as_pdf_data(pdf), rmax)
    step = float(np.median(np.diff(r)))
    calc = DebyePDFCalculator(
        rmin=float(r[0]),
        rmax=float(r[-1]) + step / 2,
        rstep=step,
        biso=8 * np.pi**2 * uiso,
        delta2=delta2,
        **settings,
    )
    rc, gc = calc.batch(clusters)
    out = []
    for g in gc:
        gcalc = np.interp(r, rc, g)
        out.append(rw_free_scale(gobs, gcalc, dg)[0])
    return np.asarray(out, dtype=float)


def data_displacement(cluster, pdf):
    """The data's atomic displacement, refined with one cluster.

    `cluster` is refined against the data with the default recipe of
    :func:`~diffpy_cbldm.refine.refine_cluster` (scale, zoomscale, Uiso,
    delta2; positions fixed) over the range :func:`candidate_rw`
    compares, from 1.5 Å to the data's end. Uiso and delta2 describe the
    sample and the measurement (thermal and static disorder, correlated
    motion) more than the arrangement of the atoms, so one fit with the
    best of the draws gives the values every draw is compared with: a
    fixed Uiso of 0.005 Å² puts the raw Rw of the true structure itself
    at 0.29 (median over the test cases of docs/benchmarks/evaluate.rst,
    where the PDFs' own Uiso is 0.001-0.02 Å²), with the data's values
    at 0.14, the Rw of their noise.

    Parameters
    ----------
    cluster : ase.Atoms
    pdf : anything :func:`as_pdf_data` accepts

    Returns
    -------
    uiso, delta2 : float
        The refined Uiso (mean over the atoms) and delta2, in Å².
    """
    from diffpy_cbldm.refine import refine_cluster

    # refine_cluster's default fit range is candidate_rw's range.
    result = refine_cluster(cluster, pdf)
    uiso = float(np.mean(result.atoms.arrays["uiso"]))
    return uiso, float(result.values["delta2"][0])


def match_first_peak(clusters, pdf, nn, element="Au"):
    """Scale clusters so that their G(r) peaks first where the data's does.

    Each cluster is first scaled so that its median nearest-neighbour
    distance is `nn` (the data's first G(r) peak,
    :func:`~diffpy_cbldm.pdf.peaks.first_peak`), then by the ratio of
    `nn` to the first peak of its own G(r), computed with the data's Q
    settings and Uiso 0.005 Å² and found by the same function. The one
    estimator on both sides cancels its bias: a Mackay icosahedron's
    first peak is a blend of radial and 5 % longer tangential bonds and
    lies about 3 % above its median nearest-neighbour distance, which
    the median alone would put at the peak.

    Parameters
    ----------
    clusters : sequence of (n_k, 3) arrays
        Positions in Å.
    pdf : anything :func:`as_pdf_data` accepts
    nn : float
        The data's first-peak position in Å.
    element : str
        Chemical symbol of the atoms (their form factor).

    Returns
    -------
    list of ndarray
        Scaled about each centroid; clusters of fewer than two atoms, or
        whose G(r) has no first peak in the window, only by the median.
    """
    from ase import Atoms

    from diffpy_cbldm.clusters.relax import scale_to_nn
    from diffpy_cbldm.pdf.debye import DebyePDFCalculator
    from diffpy_cbldm.pdf.peaks import NN_RANGE, first_peak
    from diffpy_cbldm.refine import DEFAULTS

    xs = [scale_to_nn(x, nn) for x in clusters]
    settings = _settings(as_pdf_data(pdf))[0]
    calc = DebyePDFCalculator(
        rmin=0.5,
        rmax=NN_RANGE[1] + 1.0,
        rstep=0.005,
        biso=8 * np.pi**2 * DEFAULTS["uiso"],
        **settings,
    )
    rc, gc = calc.batch([Atoms(f"{element}{len(x)}", positions=x) for x in xs])
    out = []
    for x, g in zip(xs, gc):
        if len(x) > 1:
            try:
                factor = nn / first_peak(rc, g)
            except ValueError:
                factor = 1.0
            centre = x.mean(axis=0)
            x = centre + (x - centre) * factor
        out.append(x)
    return out


def _qdamp(pdf, qdamp):
    """The measurement's Qdamp in Å⁻¹: `qdamp`, else the data header's,
    else None (unknown); a value that is not a finite number >= 0 is an
    error naming its source."""
    source = "qdamp"
    if qdamp is None:
        qdamp, source = pdf.qdamp, f"{pdf.name}: header qdamp"
    if qdamp is None:
        return None
    if isinstance(qdamp, bool):
        raise ValueError(f"{source} must be a number in Å⁻¹, got {qdamp!r}")
    try:
        value = float(qdamp)
    except (TypeError, ValueError):
        raise ValueError(
            f"{source} must be a number in Å⁻¹, got {qdamp!r}"
        ) from None
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"{source} must be finite and >= 0, got {qdamp!r}")
    return value


def _given_count(count, width, max_atoms):
    """The ``atoms.info`` entries of an atom count given to ``propose``,
    checked: {"count_given": ..., "count_given_width": ...}, both None
    when no count is given."""
    if count is None:
        if width is not None:
            raise ValueError(
                f"count_width={width!r} given without a count; pass "
                "count= as well (--count with --count-width)"
            )
        return {"count_given": None, "count_given_width": None}
    count = check_number("count", count)
    if not MIN_ATOMS <= count <= max_atoms:
        raise ValueError(
            f"count must be from {MIN_ATOMS} to {max_atoms} atoms (the "
            f"clusters these weights generate), got {count:g}"
        )
    width = (
        COUNT_WIDTH if width is None else check_number("count_width", width)
    )
    if width <= 0:
        raise ValueError(
            f"count_width must be > 0 (a standard deviation of ln n), got "
            f"{width:g}"
        )
    return {"count_given": count, "count_given_width": width}


def _warn_beyond_range(estimate, max_atoms, pdf):
    """Log when the cluster estimator reads more atoms than the model
    generates: it extrapolates then, and its width means little."""
    n = estimate["info"]["count_estimate"]
    if n > max_atoms:
        logger.warning(
            "%s: the cluster estimator reads about %.0f atoms, more than "
            "the %d of the largest training cluster; candidates stop at "
            "%d atoms (a particle larger than the model knows)",
            pdf.name,
            n,
            max_atoms,
            max_atoms,
        )


def _warn_uncertain_count(estimate, rmax, pdf):
    """Log when the cluster estimator's count is wide
    (:data:`UNCERTAIN_COUNT_WIDTH`): the PDF fits clusters of quite
    different sizes, as that of a particle longer than the model's
    r-range, `rmax` in the data's units (Å), does."""
    info = estimate["info"]
    width = info["count_estimate_width"]
    if width > UNCERTAIN_COUNT_WIDTH:
        logger.warning(
            "%s: the cluster estimator's atom count is uncertain (about "
            "%.0f atoms, ln n ± %.2f): the PDF fits clusters of quite "
            "different sizes, as that of a rod or plate longer than the "
            "model's r-range of %.0f Å does; the candidates' counts are "
            "guesses, and their Rw over the data's full range judges them",
            pdf.name,
            info["count_estimate"],
            width,
            rmax,
        )


def set_raw_rw(candidates, pdf):
    """Give each candidate its raw Rw against the data, at the data's
    displacement.

    The displacement (:func:`data_displacement`) is refined once, with
    the candidate of lowest :func:`candidate_rw` at the default Uiso;
    every candidate's Rw is then computed with it. Sets
    ``atoms.info["rw"]``, ``["rw_uiso"]`` and ``["rw_delta2"]`` (Å²).
    """
    at_default = _finite_rw(candidates, candidate_rw(candidates, pdf))
    best = candidates[int(np.argmin(at_default))]
    uiso, delta2 = data_displacement(best, pdf)
    values = _finite_rw(
        candidates, candidate_rw(candidates, pdf, uiso=uiso, delta2=delta2)
    )
    for atoms, value in zip(candidates, values):
        atoms.info.update(rw=float(value), rw_uiso=uiso, rw_delta2=delta2)


def _finite_rw(candidates, values):
    for atoms, value in zip(candidates, values):
        if not np.isfinite(value):
            raise RuntimeError(
                f"candidate {atoms.info.get('candidate')} has Rw {value}; "
                "please report this"
            )
    return values


def _one_piece_if_as_good(candidates, n):
    """The `n` candidates, each cluster that fell apart replaced by its
    one-piece variant (listed after the first `n`, with the same
    ``candidate`` number) when that fits the data at least as well (raw
    Rw)."""
    chosen = candidates[:n]
    for atoms in candidates[n:]:
        k = atoms.info["candidate"]
        if atoms.info["rw"] <= chosen[k].info["rw"]:
            chosen[k] = atoms
    return chosen


def rank_results(results):
    """Refinement results sorted by Rw, best first."""
    return sorted(results, key=lambda res: res.rw)


class CbLDMGenerator:
    """Propose and refine nanoparticle structures for a measured PDF.

    Build it with :meth:`from_pretrained`.

    Parameters
    ----------
    config : CbLDMConfig
    modules : dict of str -> torch.nn.Module
        ``condition_vae``, ``structure_vae`` and ``denoiser``.
    manifest : dict
        The weights manifest (sampler defaults, metrics, data hash).
    device : torch.device
    name : str
        Registered name or directory of the weights.

    Examples
    --------
    >>> from diffpy_cbldm import CbLDMGenerator
    >>> gen = CbLDMGenerator.from_pretrained()
    >>> results = gen.solve("JQ_S1.gr", n=10)  # doctest: +SKIP
    >>> print(results[0].summary())  # doctest: +SKIP
    """

    def __init__(self, config, modules, manifest, device, name):
        from diffpy_cbldm.model.pipeline import CbLDMPipeline

        missing = {"condition_vae", "structure_vae", "denoiser"} - set(modules)
        if missing:
            raise ValueError(
                f"weights {name!r} lack the network(s) {sorted(missing)}"
            )
        self.config = config
        self.conventions = config.conventions
        self.modules = modules
        self.manifest = manifest
        self.device = device
        self.name = name
        self.pipeline = CbLDMPipeline(
            modules["condition_vae"],
            modules["structure_vae"],
            modules["denoiser"],
            config,
            defaults=manifest.get("sampler_defaults"),
        )

    @classmethod
    def from_pretrained(cls, name=None, device=None):
        """Load a registered set of weights (or a weights directory).

        Parameters
        ----------
        name : str or Path, optional
            A name from :func:`diffpy_cbldm.weights.available` or a
            directory written by ``save_weights``; default
            :data:`DEFAULT_WEIGHTS`.
        device : str or torch.device, optional
            Default: CUDA when available, else CPU.

        Raises
        ------
        diffpy_cbldm.weights.WeightsError
            Unknown name (the available ones listed) or a file that fails
            its checksum.
        """
        import torch

        from diffpy_cbldm.weights import load_weights, read_manifest

        name = DEFAULT_WEIGHTS if name is None else name
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        device = torch.device(device)
        config, modules = load_weights(name)
        manifest = read_manifest(name)
        for net in modules.values():
            net.to(device).eval()
        return cls(config, modules, manifest, device, str(name))

    def __repr__(self):
        return f"CbLDMGenerator({self.name!r}, device={str(self.device)!r})"

    # -- proposing -------------------------------------------------------

    def model_input(self, data):
        """The normalised PDF the network reads for `data`, shape
        (n_points,), and the PDFData it came from."""
        from diffpy_cbldm.conventions import model_input

        pdf = as_pdf_data(data)
        return model_input(pdf.r, pdf.g, self.conventions, source=pdf.name)

    def estimate(self, data, qdamp=None):
        """What the cluster estimator reads in a measured PDF: the atom
        count and structure type that :meth:`propose` draws its
        candidates about, without sampling any.

        Parameters
        ----------
        data : str, Path, PDFData, tuple, Profile or PDFContribution
            The measured PDF (see :func:`as_pdf_data`).
        qdamp : float, optional
            The instrument's Qdamp in Å⁻¹, as for :meth:`propose`;
            default: the data's header, else unknown.

        Returns
        -------
        dict
            ``count_estimate`` (``exp`` of the mean of ln n),
            ``count_estimate_width`` (standard deviation of ln n),
            ``type_estimate``, ``type_estimate_probability`` and
            ``count_estimate_qdamp`` (the Qdamp read with, None when
            unknown): the entries ``propose`` writes to ``atoms.info``.

        Raises
        ------
        ValueError
            Weights without a cluster estimator; bad data or `qdamp`
            (as :meth:`propose`).
        """
        import torch

        if "cluster_estimator" not in self.modules:
            raise ValueError(
                f"weights {self.name!r} have no cluster estimator"
            )
        _, qdamp, x, stretch = self._read(data, qdamp)
        dtype = next(self.modules["cluster_estimator"].parameters()).dtype
        g = torch.as_tensor(x, dtype=dtype, device=self.device)[None]
        with torch.no_grad():
            return self._estimate(g, qdamp, stretch)["info"]

    def _read(self, data, qdamp=None):
        """What every reading of `data` starts from: the PDFData with
        the Qdamp used (given, else the header's), that Qdamp (None when
        unknown), the network input and its
        :func:`~diffpy_cbldm.conventions.stretch_factor`."""
        from diffpy_cbldm.conventions import stretch_factor

        pdf = as_pdf_data(data)
        qdamp = _qdamp(pdf, qdamp)
        pdf = as_pdf_data(pdf, qdamp=qdamp)
        x = self.model_input(pdf)
        return pdf, qdamp, x, stretch_factor(pdf.r, pdf.g, self.conventions)

    def propose(
        self,
        data,
        n=10,
        seed=None,
        sampler=None,
        steps=None,
        *,
        element=None,
        relax=None,
        type_guidance=None,
        qdamp=None,
        connected=True,
        draws=None,
        count=None,
        count_width=None,
        fragments=True,
        **sampling,
    ):
        """Candidate clusters for a measured PDF, generated as one batch.

        Parameters
        ----------
        data : str, Path, PDFData, tuple, Profile or PDFContribution
            The measured PDF (see :func:`as_pdf_data`).
        n : int
            Number of candidates, >= 1.
        seed : int, optional
            Makes the candidates reproducible.
        sampler : {"cbldm", "ddpm", "ddim", "dpm"}, optional
            Default from the weights (the paper's accelerated sampler).
        steps : int, optional
            Network evaluations of the sampler (its default when None).
        element : str, optional
            Metal of the candidates; default: the data header's
            composition.
        relax : bool, optional
            Relax every candidate in a Morse potential whose minimum is
            the data's nearest-neighbour distance (its first G(r) peak),
            :func:`diffpy_cbldm.clusters.relax.relax_clusters`. Free
            decoded coordinates are a few tenths of an ångström off, which
            blurs every PDF peak; relaxing restores sharp neighbour
            distances (measured effect: docs/benchmarks/evaluate.rst).
            The default (None) relaxes candidates of such decoders; the
            template decoder's candidates have exact bonds already (and a
            Morse potential would pull open bcc and sc pieces towards
            close packing), so by default they are only scaled to the
            data's nearest-neighbour distance. False keeps the decoded
            positions as they are.
        type_guidance : float, optional
            Strength with which the sampler is guided towards the
            structure type the cluster estimator reads in the data
            (:func:`~diffpy_cbldm.model.pipeline.guide_clean_estimate`);
            default :data:`TYPE_GUIDANCE`, 0 samples unguided. Needs
            weights with a cluster estimator and the template decoder.
        qdamp : float, optional
            The instrument's Qdamp in Å⁻¹ (from a calibration standard);
            default: the data's header, else unknown. Known, it lets the
            cluster estimator tell the resolution envelope from the
            particle's size, and its atom counts are markedly better
            (docs/benchmarks/model_quality.rst). The draws' raw Rw is
            computed with it too.
        connected : bool
            Join candidates of the template decoder that fall apart: a
            decoded cluster in pieces (the template sites scored highest
            can include stray sites or fragments) is replaced by one piece
            of the best-scored sites, the largest part grown by the best
            sites bonded to it
            (:func:`~diffpy_cbldm.clusters.bonds.connected_selection`),
            when that fits the data at least as well (raw Rw). Some
            particles of the training set are not one piece, hence the
            check. False keeps every decoded cluster as it is. No effect
            on other decoders.
        draws : int, optional
            Latents sampled, in one batch, at least `n`; the `n` clusters
            of lowest raw Rw (against the data, free scale) are returned.
            Default ``DRAWS_PER_CANDIDATE * n``
            (:data:`DRAWS_PER_CANDIDATE`); ``draws=n`` returns every
            sampled cluster.
        count : float, optional
            The number of metal atoms the particle is known to have (from
            its synthesis, mass spectrometry, microscopy): each latent's
            atom count is then drawn about it instead of about the
            cluster estimator's reading of the data (the estimator's type
            still guides the sampler). A PDF whose particle is longer
            than its r-range does not fix the count
            (docs/benchmarks/evaluate.rst); outside knowledge does. At
            most the weights' largest cluster (256 atoms for mmnp-v2).
        count_width : float, optional
            Uncertainty of `count` as a standard deviation of ln n
            (0.05, :data:`COUNT_WIDTH`, about ±5 %, when not given).
        fragments : bool
            When the count (given, else the cluster estimator's) is at
            most :data:`~diffpy_cbldm.clusters.fragments.FRAGMENT_ATOMS`
            atoms, add every compact fragment of every structure type
            (:func:`~diffpy_cbldm.clusters.fragments.compact_fragments`,
            of :data:`MIN_ATOMS` to 16 atoms, or those within
            ``exp(±2 count_width)`` of a given count), scaled to the
            data's first G(r) peak, to the draws: the `n` of lowest raw
            Rw among both are returned. Few-atom clusters are few and
            their count must be exact, which the networks, trained on
            larger particles, do not manage (docs/benchmarks/
            evaluate.rst). False samples only.
        **sampling
            ``base``, ``t1``, ``t2`` of the cbldm sampler.

        Returns
        -------
        list of ase.Atoms
            The `n` best of the `draws` sampled clusters, in generation
            order. ``atoms.info`` holds ``n_atoms``,
            ``adgp_residual`` (rms misfit of the Laplacian entries),
            ``merged_atoms`` (see :data:`MERGE_DISTANCE`), ``pieces``
            and ``stray_atoms`` (connected parts of the cluster and atoms
            outside its largest,
            :func:`~diffpy_cbldm.clusters.bonds.connected_parts`),
            ``joined_sites`` (sites of the decoded cluster replaced to
            join it into one piece, see `connected`; 0 when kept),
            ``input_stretch`` (the factor r of the data was stretched by
            for the networks, :func:`~diffpy_cbldm.conventions
            .stretch_factor`; 1 for weights that do not stretch),
            ``relaxed``
            (the nearest-neighbour distance in Å it was relaxed to, or
            None), ``relax_steps`` and ``relax_converged`` (FIRE steps
            taken and whether the forces fell below the threshold; None
            without relaxation), ``structure_type`` (the template
            decoder's type, else None); with a cluster estimator in the
            weights ``count_estimate`` and ``count_estimate_width`` (its
            atom count for the data, ``exp`` of its mean of ln n, and
            the standard deviation of ln n), ``type_estimate`` and
            ``type_estimate_probability`` (its most probable structure
            type and that type's probability), ``count_estimate_qdamp``
            (the Qdamp it read with, None when unknown); ``count_given``
            and ``count_given_width`` (`count` and `count_width`, None
            when no count was given); ``rw`` (against
            the data, free scale, positions unrefined, at the data's
            displacement ``rw_uiso`` and ``rw_delta2`` in Å², refined
            once per call with the draw that fits best at Uiso 0.005 Å²,
            :func:`data_displacement`), ``generator``, ``sampler``,
            ``seed``, ``candidate`` (the latent's index among the draws)
            and ``draws``. A compact fragment (see `fragments`) has
            ``generator`` ``"compact fragment"``, its index among the
            fragments as ``candidate``, ``adgp_residual`` and
            ``sampler`` None, and 0 relaxation steps.

        Raises
        ------
        ValueError
            n < 1, draws < n, a PDF too short, zero, or with NaN; no
            element; a PDF without a nearest-neighbour peak at 1.8-3.6 Å
            (weights that stretch their input, or `relax`); a bad
            `qdamp`; a `count` that is not a number from
            :data:`MIN_ATOMS` to the weights' largest cluster, or a
            `count_width` that is not positive (or given without
            `count`).
        """
        import torch
        from ase import Atoms

        from diffpy_cbldm.clusters.build import STRUCTURE_TYPES
        from diffpy_cbldm.clusters.laplacian import positions_from_laplacian
        from diffpy_cbldm.clusters.relax import relax_clusters
        from diffpy_cbldm.clusters.bonds import connected_parts
        from diffpy_cbldm.pdf.peaks import first_peak

        n = check_count("n", n)
        if draws is None:
            draws = DRAWS_PER_CANDIDATE * n
        draws = check_count(
            "draws",
            draws,
            least=n,
            bound=f"n = {n} (the candidates are the best of the draws)",
        )
        if seed is not None:
            # torch's generators take 64-bit seeds.
            seed = check_count("seed", seed, least=0, most=2**64 - 1)
        if type_guidance is None:
            type_guidance = TYPE_GUIDANCE
        given = _given_count(count, count_width, self.conventions.max_atoms)
        # The draws are screened with the Qdamp given, as refined.
        pdf, qdamp, x, stretch = self._read(data, qdamp)
        element = _element(pdf, element)
        nn = None
        if relax is not False:
            try:
                nn = first_peak(pdf.r, pdf.g)
            except ValueError as exc:
                raise ValueError(
                    f"{pdf.name}: {exc}; pass relax=False to skip the "
                    "relaxation"
                ) from None
        started = time.perf_counter()
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(seed)
        dtype = next(self.modules["denoiser"].parameters()).dtype
        g = torch.as_tensor(x, dtype=dtype, device=self.device)[None]
        svae = self.modules["structure_vae"]
        with torch.no_grad():
            z_c = self.modules["condition_vae"].condition(g)
            estimate = self._estimate(g, qdamp, stretch)
            # sample_latents checks type_guidance whether or not there
            # is a type to guide towards.
            guide = {"type_guidance": type_guidance}
            if estimate and svae.config.decoder == "template":
                guide["target_types"] = estimate["type_logits"].argmax(dim=-1)
            latents = self.pipeline.sample_latents(
                z_c,
                int(draws),
                sampler=sampler,
                steps=steps,
                generator=generator,
                **guide,
                **sampling,
            )
            if not torch.isfinite(latents).all():
                raise RuntimeError(
                    f"the {sampler or self.pipeline.defaults.get('sampler')}"
                    " sampler returned non-finite latents; try another "
                    "sampler or more steps"
                )
            # The count's Gaussian in ln n: the given count in place of
            # the estimator's reading, else the reading, else none.
            prior = None
            if given["count_given"] is not None:
                prior = [
                    torch.tensor(float(value), device=latents.device)
                    for value in (
                        np.log(given["count_given"]),
                        2 * np.log(given["count_given_width"]),
                    )
                ]
            elif estimate:
                _warn_beyond_range(estimate, self.conventions.max_atoms, pdf)
                _warn_uncertain_count(
                    estimate, self.conventions.pdf.rmax / stretch, pdf
                )
                prior = [estimate["mean"], estimate["logvar"]]
            if prior is not None:
                prior = tuple(t.expand(len(latents)) for t in prior)
            counts = svae.count_atoms(
                latents,
                z_c.expand(len(latents), *z_c.shape[1:]),
                prior=prior,
            ).clamp(min=MIN_ATOMS)
            # origin[j]: the latent of decoded cluster j; the one-piece
            # variants of clusters that fell apart follow the plain ones
            origin = list(range(len(latents)))
            replaced = [0] * len(latents)
            starts = None
            if svae.config.decoder in ("coordinates", "template"):
                if connected and svae.config.decoder == "template":
                    starts, joined, moved = svae.decode_both_ways(
                        latents, counts
                    )
                    apart = [k for k, m in enumerate(moved) if m > 0]
                    origin += apart
                    replaced += [moved[k] for k in apart]
                    apart = torch.as_tensor(apart, dtype=torch.long)
                    starts = torch.cat([starts, joined[apart]])
                    counts = torch.cat([counts, counts[apart]])
                else:
                    starts = svae.decode_positions(latents, counts)
                L = svae.positions_laplacian(starts, counts)
                starts = starts.double().cpu()
            else:
                L = svae.decode(latents, atoms=counts)
            types = None
            if svae.config.decoder == "template":
                types = [
                    STRUCTURE_TYPES[t]
                    for t in svae.structure_types(latents[origin]).tolist()
                ]
        L = L.double().cpu().numpy()
        L = 0.5 * (L + np.swapaxes(L, -1, -2))
        counts = counts.cpu().tolist()
        sampled = time.perf_counter() - started
        sigma = self.conventions.sigma
        clusters = []
        for k, matrix in enumerate(L):
            init = "mds" if starts is None else starts[k, : counts[k]]
            positions, info = positions_from_laplacian(
                matrix, sigma, n_atoms=counts[k], init=init
            )
            positions, merged = merge_close_atoms(positions)
            clusters.append((positions, info, merged))
        relax_records = [{}] * len(clusters)
        if nn is not None and relax is None and types is not None:
            # Template sites have exact bonds: scale them, no relaxation.
            scaled = match_first_peak(
                [c[0] for c in clusters], pdf, nn, element
            )
            clusters = [
                (x, info, merged)
                for x, (_, info, merged) in zip(scaled, clusters)
            ]
            relax_records = [{"steps": 0}] * len(clusters)
        elif nn is not None:
            relaxed, relax_records = relax_clusters(
                [c[0] for c in clusters], nn
            )
            # Relaxing pushes atoms apart; merging again only guards
            # against atoms the potential could not separate.
            clusters = [
                (y, info, merged + again)
                for (y, again), (_, info, merged) in zip(
                    map(merge_close_atoms, relaxed), clusters
                )
            ]
        # The entries every candidate shares, draws and fragments alike.
        shared = dict(
            input_stretch=float(stretch),
            **estimate.get("info", dict.fromkeys(_ESTIMATE_KEYS)),
            **given,
            seed=seed,
            draws=int(draws),
        )
        candidates = []
        for j, ((positions, info, merged), record) in enumerate(
            zip(clusters, relax_records)
        ):
            k = origin[j]
            atoms = Atoms(f"{element}{len(positions)}", positions=positions)
            pieces, stray = connected_parts(positions)
            atoms.info.update(
                joined_sites=replaced[j],
                n_atoms=len(atoms),
                adgp_residual=float(info["residual"]),
                merged_atoms=int(merged),
                pieces=pieces,
                stray_atoms=stray,
                relaxed=nn,
                structure_type=types[j] if types else None,
                relax_steps=record.get("steps"),
                relax_converged=record.get("converged"),
                generator=f"CbLDM {self.name}",
                sampler=sampler or self.pipeline.defaults.get("sampler"),
                candidate=k,
                **shared,
            )
            candidates.append(atoms)
        pieces_of = []
        if fragments:
            count = given["count_given"]
            if count is None and estimate:
                count = estimate["info"]["count_estimate"]
            pieces_of = self._fragments(
                pdf, element, count, given["count_given_width"], nn
            )
            for atoms in pieces_of:
                atoms.info.update(shared)
        set_raw_rw(candidates + pieces_of, pdf)
        candidates = _one_piece_if_as_good(candidates, int(draws))
        candidates += pieces_of
        if len(candidates) > n:
            best = sorted(
                range(len(candidates)),
                key=lambda k: candidates[k].info["rw"],
            )[:n]
            candidates = [candidates[k] for k in sorted(best)]
        logger.info(
            "%d candidates of %d draws in %.2f s (sampling %.2f s)",
            n,
            draws,
            time.perf_counter() - started,
            sampled,
        )
        return candidates

    def _fragments(self, pdf, element, count, width=None, nn=None):
        """The compact fragments offered for a particle of about `count`
        atoms (none above FRAGMENT_ATOMS or for no count), as ase.Atoms
        scaled to the data's first G(r) peak `nn` (found when None); all
        sizes from MIN_ATOMS, or those within ``exp(±2 width)`` of a
        given count."""
        from ase import Atoms

        from diffpy_cbldm.clusters.build import STRUCTURE_TYPES
        from diffpy_cbldm.clusters.fragments import (
            FRAGMENT_ATOMS,
            compact_fragments,
        )
        from diffpy_cbldm.pdf.peaks import first_peak

        if count is None or count > FRAGMENT_ATOMS:
            return []
        sizes = range(MIN_ATOMS, FRAGMENT_ATOMS + 1)
        if width is not None:
            sizes = [
                k for k in sizes if abs(np.log(k / count)) <= 2 * width
            ] or [int(round(count))]
        try:
            if nn is None:
                nn = first_peak(pdf.r, pdf.g)
        except ValueError as exc:
            raise ValueError(
                f"{pdf.name}: {exc}; the compact fragments offered for "
                f"a particle of about {count:.0f} atoms are scaled to it "
                "(fragments=False skips them)"
            ) from None
        kinds, shapes = [], []
        for stype in STRUCTURE_TYPES:
            for y in compact_fragments(stype, sizes):
                kinds.append(stype)
                shapes.append(y)
        scaled = match_first_peak(shapes, pdf, nn, element)
        out = []
        for k, (stype, x) in enumerate(zip(kinds, scaled)):
            atoms = Atoms(f"{element}{len(x)}", positions=x)
            atoms.info.update(
                joined_sites=0,
                n_atoms=len(atoms),
                adgp_residual=None,
                merged_atoms=0,
                pieces=1,
                stray_atoms=0,
                relaxed=nn,
                structure_type=stype,
                relax_steps=0,
                relax_converged=None,
                generator="compact fragment",
                sampler=None,
                candidate=k,
            )
            out.append(atoms)
        return out

    def _estimate(self, g, qdamp=None, stretch=1.0):
        """The cluster estimator's reading of a model input (1, N), with
        the data's Qdamp in Å⁻¹ when known and the input's
        :func:`~diffpy_cbldm.conventions.stretch_factor` (the network
        reads Qdamp / stretch): a dict of its tensors and the
        ``atoms.info`` entries, or an empty dict for weights without an
        estimator."""
        import torch

        from diffpy_cbldm.clusters.build import STRUCTURE_TYPES

        net = self.modules.get("cluster_estimator")
        if net is None:
            return {}
        if not net.reads_qdamp:
            qdamp = None
        if qdamp is None:
            mean, logvar, type_logits = net(g)
        else:
            seen = torch.tensor([float(qdamp) / stretch])
            mean, logvar, type_logits = net(g, seen)
        p = torch.softmax(type_logits, dim=-1)[0]
        best = int(p.argmax())
        return {
            "mean": mean,
            "logvar": logvar,
            "type_logits": type_logits,
            "info": {
                "count_estimate": float(mean.exp()),
                "count_estimate_width": float(torch.exp(0.5 * logvar)),
                "type_estimate": STRUCTURE_TYPES[best],
                "type_estimate_probability": float(p[best]),
                "count_estimate_qdamp": qdamp,
            },
        }

    # -- solving ---------------------------------------------------------

    def solve(
        self,
        data,
        n=10,
        seed=None,
        sampler=None,
        steps=None,
        *,
        element=None,
        relax=None,
        type_guidance=None,
        connected=True,
        draws=None,
        count=None,
        count_width=None,
        progress=True,
        site_moves=None,
        site_count_window=None,
        **refine_options,
    ):
        """Propose `n` candidates, refine each, return them ranked by Rw.

        Parameters
        ----------
        data, n, seed, sampler, steps, element, relax, type_guidance
            As for :meth:`propose`.
        connected, draws, count, count_width
            As for :meth:`propose`.
        progress : bool
            Show a progress bar over the refinements.
        site_moves, site_count_window : optional
            As for :func:`refine_candidates`: the site refinement that
            moves atoms of each candidate on its arrangement (and, with
            a count window, adds and removes them) before the continuous
            refinement; ``site_moves=0`` skips it.
        **refine_options
            Keywords of :func:`diffpy_cbldm.refine.refine_cluster`
            (``rmin``, ``rmax``, ``qmin``, ``qmax``, ``qdamp``,
            ``refine_positions``...). The Q settings go into the data's
            header first (:func:`as_pdf_data`), so that the candidates
            are screened with them as well; a ``qdamp`` also reaches the
            cluster estimator, as in :meth:`propose`.

        Returns
        -------
        list of RefinementResult
            Best (lowest Rw) first; each result's ``atoms.info`` keeps the
            candidate's generation record and adds ``refined_rw`` and
            ``rank``.
        """
        from diffpy_cbldm.refine import Q_SETTINGS

        pdf = as_pdf_data(
            data, **{k: refine_options.get(k) for k in Q_SETTINGS}
        )
        candidates = self.propose(
            pdf,
            n,
            seed=seed,
            sampler=sampler,
            steps=steps,
            element=element,
            relax=relax,
            type_guidance=type_guidance,
            qdamp=refine_options.get("qdamp"),
            connected=connected,
            draws=draws,
            count=count,
            count_width=count_width,
        )
        return refine_candidates(
            candidates,
            pdf,
            progress=progress,
            site_moves=site_moves,
            site_count_window=site_count_window,
            **refine_options,
        )


def refine_candidates(
    candidates,
    data,
    *,
    progress=True,
    site_moves=None,
    site_count_window=None,
    **refine_options,
):
    """Refine candidates from any generators and rank them together.

    Each candidate on a site arrangement first has its outline refined,
    atom by atom, on that arrangement
    (:func:`~diffpy_cbldm.site_refinement.refine_candidate_sites`: the
    atom count and shape), then its continuous parameters by
    :func:`~diffpy_cbldm.refine.refine_cluster`.

    Parameters
    ----------
    candidates : sequence of ase.Atoms
    data : anything :func:`as_pdf_data` accepts
    progress : bool
    site_moves : int, optional
        Most atoms added, removed or moved per candidate in the site
        refinement (default
        :data:`~diffpy_cbldm.site_refinement.MAX_MOVES`); 0 refines the
        candidates as they come.
    site_count_window : float, optional
        How far the site refinement may change a candidate's atom count,
        as a fraction of it (default
        :data:`~diffpy_cbldm.site_refinement.COUNT_WINDOW`, 0: atoms are
        only moved, the count stays the generator's).
    **refine_options
        Keywords of :func:`diffpy_cbldm.refine.refine_cluster`; its Q
        settings and fit range hold for the site refinement too.

    Returns
    -------
    list of RefinementResult, best first
    """
    from tqdm.auto import tqdm

    from diffpy_cbldm.refine import Q_SETTINGS
    from diffpy_cbldm.site_refinement import refine_candidate_sites

    pdf = as_pdf_data(data)
    candidates = refine_candidate_sites(
        candidates,
        as_pdf_data(pdf, **{k: refine_options.get(k) for k in Q_SETTINGS}),
        max_moves=site_moves,
        count_window=site_count_window,
        rmin=refine_options.get("rmin"),
        rmax=refine_options.get("rmax"),
        progress=progress,
    )
    results = []
    # One summary instead of a warning per anti-correlated candidate.
    flagged = []
    quiet = _CollectAntiCorrelated(flagged)
    refine_logger = logging.getLogger("diffpy_cbldm.refine")
    refine_logger.addFilter(quiet)
    try:
        for k, atoms in enumerate(
            tqdm(
                candidates,
                desc="refining",
                unit="candidate",
                disable=not progress,
            )
        ):
            quiet.candidate = k
            results.append(_refine_one(atoms, pdf, refine_options))
    finally:
        refine_logger.removeFilter(quiet)
    if flagged:
        logger.warning(
            "%d of %d candidates started with a G(r) anti-correlated with "
            "the data (refined from scale 1): %s",
            len(flagged),
            len(candidates),
            ", ".join(str(k) for k in flagged),
        )
    ranked = rank_results(results)
    for rank, result in enumerate(ranked, 1):
        result.atoms.info["rank"] = rank
    return ranked


class _CollectAntiCorrelated(logging.Filter):
    """Swallows refine_cluster's anti-correlation warning, noting the
    candidate it was about."""

    def __init__(self, flagged):
        super().__init__()
        self.flagged = flagged
        self.candidate = None

    def filter(self, record):
        if getattr(record, "anti_correlated", False):
            self.flagged.append(self.candidate)
            return False
        return True


def _refine_one(atoms, pdf, refine_options):
    """refine_cluster, keeping the candidate's generation record.

    The refined cluster's info is the candidate's with this fit's values
    and Rw set over it; ``raw_rw`` stays the Rw before any refinement
    when a refined result is refined again."""
    from diffpy_cbldm.refine import refine_cluster

    result = refine_cluster(atoms, pdf, **refine_options)
    result.atoms.info.update(
        raw_rw=atoms.info.get("raw_rw", atoms.info.get("rw")),
        refined_rw=float(result.rw),
    )
    return result
