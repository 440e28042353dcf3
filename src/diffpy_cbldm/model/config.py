"""Architecture configurations of the three CbLDM networks.

Frozen dataclasses, saved as JSON inside every weights manifest
(:mod:`diffpy_cbldm.weights`) and read back with ``from_dict``. Sizes are
chosen so that the three training stages fit in a few CPU hours; the
reasoning and measurements are in ``docs/theory_model.rst``.
"""

import typing
from dataclasses import asdict, dataclass, field, fields

from diffpy_cbldm.clusters.build import STRUCTURE_TYPES
from diffpy_cbldm.conventions import Conventions

__all__ = [
    "BETA_SCHEDULES",
    "CbLDMConfig",
    "ConditionVAEConfig",
    "ClusterEstimatorConfig",
    "DenoiserConfig",
    "StructureVAEConfig",
]

DECODERS = ("coordinates", "patches", "template")
"""Kinds of structure-VAE decoder (:class:`StructureVAEConfig`)."""

BETA_SCHEDULES = ("squaredcos_cap_v2", "linear", "scaled_linear")
"""Noise schedules accepted (diffusers names); the paper uses the cosine
schedule, ``"squaredcos_cap_v2"``."""


def _check_positive_int(owner, name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"{owner}.{name} must be a positive integer, got {value!r}"
        )


def _check_channels(owner, name, value):
    if not isinstance(value, tuple) or not value:
        raise ValueError(
            f"{owner}.{name} must be a non-empty tuple of integers, got "
            f"{value!r}"
        )
    for c in value:
        _check_positive_int(owner, name, c)


def _check_nonnegative(owner, name, value):
    if not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(f"{owner}.{name} must be >= 0, got {value!r}")


def _from_dict(cls, d):
    """Build a flat config dataclass from a dict, lists becoming tuples."""
    if not isinstance(d, dict):
        raise ValueError(f"{cls.__name__} needs a dict, got {d!r}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s) {unknown}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in d.items():
        if typing.get_origin(hints[key]) is tuple and isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


@dataclass(frozen=True)
class ConditionVAEConfig:
    """The condition VAE: a PDF of `n_points` -> latent condition.

    The PDF is folded into ``(fold, n_points // fold)`` (the paper's
    (6, 500)) and compressed by 1-D convolutions to ``(latent_channels,
    latent_length)`` (the paper's (2, 125)).

    Attributes
    ----------
    n_points : int
        Points of the PDF on the model's r-grid.
    fold : int
        Number of r-segments stacked as input channels.
    channels : tuple of int
        Channels per resolution level; ``len(channels) - 1`` halvings of
        the length.
    blocks_per_level : int
        Residual blocks per level in encoder and decoder.
    latent_channels : int
        Channels of the latent condition.
    kl_weight : float
        Weight of the KL term (nats per latent element) against the
        reconstruction MSE in :meth:`ConditionVAE.loss`.
    """

    n_points: int = 3000
    fold: int = 6
    channels: tuple[int, ...] = (32, 64, 64)
    blocks_per_level: int = 1
    latent_channels: int = 2
    kl_weight: float = 1e-4

    def __post_init__(self):
        owner = type(self).__name__
        for name in ("n_points", "fold", "blocks_per_level"):
            _check_positive_int(owner, name, getattr(self, name))
        _check_positive_int(owner, "latent_channels", self.latent_channels)
        _check_channels(owner, "channels", self.channels)
        _check_nonnegative(owner, "kl_weight", self.kl_weight)
        factor = self.fold * 2 ** (len(self.channels) - 1)
        if self.n_points % factor:
            raise ValueError(
                f"{owner}: n_points={self.n_points} must be divisible by "
                f"fold * 2**(len(channels) - 1) = {factor}"
            )

    @property
    def latent_length(self):
        """Length of the latent condition (125 by default)."""
        return self.n_points // self.fold // 2 ** (len(self.channels) - 1)

    @property
    def latent_shape(self):
        """Shape of one latent condition, ``(latent_channels, length)``."""
        return (self.latent_channels, self.latent_length)

    @property
    def condition_dim(self):
        """Number of values in one latent condition (250 by default)."""
        return self.latent_channels * self.latent_length

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return _from_dict(cls, d)


@dataclass(frozen=True)
class StructureVAEConfig:
    """The structure VAE: Laplacian + condition -> latent -> Laplacian.

    The encoder reads the adjacency ``W = diag(L) - L`` of the padded
    ``size x size`` Laplacian through a ``patch_size`` patch embedding,
    then convolutions and self-attention down to ``(latent_channels,
    latent_size, latent_size)``. The prior ``p(z | c)`` is an MLP of the
    latent condition; the decoder is unconditional.

    Attributes
    ----------
    size : int
        Side of the Laplacian image (``Conventions.max_atoms``).
    patch_size : int
        Side of the square patches the stem embeds.
    encoder_channels, decoder_channels : tuple of int
        Channels per resolution level, encoder from the patch grid down,
        decoder from the latent up; each has ``len - 1`` resolution
        changes by 2.
    encoder_blocks, decoder_blocks : int
        Residual blocks per level.
    head_channels : int
        Hidden width of the per-cell MLP that turns decoder features into
        a patch of ``patch_size**2`` matrix entries; at least
        ``patch_size**2`` lets a patch take any value.
    attention : bool
        Self-attention at the latent resolution in encoder and decoder.
    latent_channels : int
        Channels of the latent (1 in the paper).
    condition_dim : int
        Values in one latent condition (``ConditionVAEConfig
        .condition_dim``).
    prior_hidden : int
        Width of the hidden layers of the prior MLP and the atom-count
        head.
    count_weight : float
        Weight of the atom-count cross-entropy (nats) in the loss.
    kl_weight : float
        Default weight of ``KL(q(z|L,c) || p(z|c))`` (nats per latent
        element) against the reconstruction error.
    decoder : {"coordinates", "patches", "template"}
        "coordinates": an MLP of the latent gives ``size`` positions (in
        units of ``sigma``) and the decoded matrix is their Laplacian
        ``W_ij = exp(-d_ij^2 / 2 sigma^2)``, so every decoded matrix is
        the Laplacian of a realisable geometry. "patches": convolutions
        and a pixel shuffle paint the matrix entries directly (the
        paper's image decoder, made cheap). "template": a structure type
        and the occupied sites of that type's template
        (:class:`diffpy_cbldm.model.site_field.SiteField`), so every
        decoded cluster is a piece of a real lattice or twinned
        arrangement.
    coordinate_hidden : int
        Width of the hidden layers of the coordinate decoder.
    sigma : float
        Laplacian width in Å (``Conventions.sigma``), used by the
        coordinate decoder.
    distance_weight : float
        Weight of the decoded-distance error (coordinate decoder only,
        see :meth:`StructureVAE.loss`).
    count_prior : bool
        Add a head to the prior that predicts the atom count from the
        condition alone (a Gaussian in ln n, trained by its negative
        log-likelihood with weight ``count_weight``); decoding then
        takes the most probable count under the product of this and the
        latent's count head (:meth:`StructureVAE.count_atoms`). False in
        weights trained before the head existed.
    template_sites : tuple of int
        Sites of each structure type's template (template decoder only;
        :func:`diffpy_cbldm.clusters.templates.build_templates` of the
        training split). The sites themselves are saved with the weights.
    field_width : int
        Width of the template decoder's site field.
    field_frequencies : int
        Random Fourier frequencies of its site features.
    """

    size: int = 256
    patch_size: int = 16
    encoder_channels: tuple[int, ...] = (64,)
    decoder_channels: tuple[int, ...] = (64,)
    encoder_blocks: int = 1
    decoder_blocks: int = 2
    head_channels: int = 256
    attention: bool = True
    latent_channels: int = 1
    condition_dim: int = 250
    prior_hidden: int = 512
    count_weight: float = 1e-2
    kl_weight: float = 1e-3
    decoder: str = "coordinates"
    coordinate_hidden: int = 1024
    sigma: float = 3.0
    distance_weight: float = 0.1
    count_prior: bool = False
    template_sites: tuple[int, ...] = ()
    field_width: int = 128
    field_frequencies: int = 32

    def __post_init__(self):
        owner = type(self).__name__
        for name in (
            "size",
            "patch_size",
            "encoder_blocks",
            "decoder_blocks",
            "head_channels",
            "latent_channels",
            "condition_dim",
            "prior_hidden",
            "coordinate_hidden",
            "field_width",
            "field_frequencies",
        ):
            _check_positive_int(owner, name, getattr(self, name))
        if self.decoder not in DECODERS:
            raise ValueError(
                f"{owner}.decoder must be one of {DECODERS}, got "
                f"{self.decoder!r}"
            )
        if self.decoder == "template":
            sites = self.template_sites
            if len(sites) != len(STRUCTURE_TYPES) or not all(
                isinstance(m, int) and not isinstance(m, bool) and m > 0
                for m in sites
            ):
                raise ValueError(
                    f"{owner}.template_sites must give the number of "
                    f"template sites of each of the {len(STRUCTURE_TYPES)} "
                    f"structure types {STRUCTURE_TYPES} (positive ints), "
                    f"got {sites!r}"
                )
        if not (isinstance(self.sigma, (int, float)) and self.sigma > 0):
            raise ValueError(
                f"{owner}.sigma must be a length > 0 Å, got {self.sigma!r}"
            )
        _check_channels(owner, "encoder_channels", self.encoder_channels)
        _check_channels(owner, "decoder_channels", self.decoder_channels)
        _check_nonnegative(owner, "kl_weight", self.kl_weight)
        _check_nonnegative(owner, "count_weight", self.count_weight)
        _check_nonnegative(owner, "distance_weight", self.distance_weight)
        for name in ("attention", "count_prior"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"{owner}.{name} must be True or False, got "
                    f"{getattr(self, name)!r}"
                )
        down = self.patch_size * 2 ** (len(self.encoder_channels) - 1)
        if self.size % down:
            raise ValueError(
                f"{owner}: size={self.size} must be divisible by patch_size "
                f"* 2**(len(encoder_channels) - 1) = {down}"
            )
        up = self.latent_size * 2 ** (len(self.decoder_channels) - 1)
        if up * self.patch_size != self.size:
            raise ValueError(
                f"{owner}: the decoder must return to the patch grid; "
                f"latent_size={self.latent_size} * 2**(len(decoder_channels)"
                f" - 1) * patch_size = {up * self.patch_size} != size="
                f"{self.size}"
            )

    @property
    def latent_size(self):
        """Side of the latent image (16 by default)."""
        return (
            self.size
            // self.patch_size
            // 2 ** (len(self.encoder_channels) - 1)
        )

    @property
    def latent_shape(self):
        """Shape of one latent, ``(latent_channels, side, side)``."""
        return (self.latent_channels, self.latent_size, self.latent_size)

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return _from_dict(cls, d)


@dataclass(frozen=True)
class DenoiserConfig:
    """The latent noise-prediction U-Net (diffusers ``UNet2DModel``).

    The latent condition enters through an MLP whose output is added to
    the timestep embedding of every residual block.

    Attributes
    ----------
    sample_size : int
        Side of the latent image.
    latent_channels : int
        Channels of the latent image.
    channels : tuple of int
        ``block_out_channels`` of the U-Net, one per resolution level.
    attention : tuple of bool
        Self-attention in the down block of each level (mirrored up).
    layers_per_block : int
        Residual layers per down block (up blocks have one more).
    condition_dim : int
        Values in one latent condition.
    norm_groups : int
        Groups of the group normalisations.
    attention_head_dim : int
        Channels per attention head.
    """

    sample_size: int = 16
    latent_channels: int = 1
    channels: tuple[int, ...] = (32, 64, 128)
    attention: tuple[bool, ...] = (False, True, True)
    layers_per_block: int = 1
    condition_dim: int = 250
    norm_groups: int = 8
    attention_head_dim: int = 32

    def __post_init__(self):
        owner = type(self).__name__
        for name in (
            "sample_size",
            "latent_channels",
            "layers_per_block",
            "condition_dim",
            "norm_groups",
            "attention_head_dim",
        ):
            _check_positive_int(owner, name, getattr(self, name))
        _check_channels(owner, "channels", self.channels)
        if not isinstance(self.attention, tuple) or len(self.attention) != len(
            self.channels
        ):
            raise ValueError(
                f"{owner}.attention must be a tuple of {len(self.channels)} "
                f"booleans (one per level), got {self.attention!r}"
            )
        for c in self.channels:
            if c % self.norm_groups:
                raise ValueError(
                    f"{owner}: channel count {c} is not divisible by "
                    f"norm_groups={self.norm_groups}"
                )
        if self.sample_size % 2 ** (len(self.channels) - 1):
            raise ValueError(
                f"{owner}: sample_size={self.sample_size} cannot be halved "
                f"{len(self.channels) - 1} times"
            )

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        return _from_dict(cls, d)


@dataclass(frozen=True)
class ClusterEstimatorConfig:
    """The cluster estimator: a normalised PDF -> mean and log-variance
    of ln n and logits of the structure type
    (:class:`diffpy_cbldm.model.cluster_estimator.ClusterEstimator`).

    Attributes
    ----------
    n_points : int
        Points of the PDF on the model's r-grid.
    pool : int
        Average-pooling factor applied first (5: 0.05 Å steps).
    channels : tuple of int
        Channels of the strided (length-halving) 1-D convolutions.
    kernel : int
        Kernel size of the convolutions (odd).
    hidden : int
        Width of the MLP head.
    qdamp_reference : float or None
        Qdamp in Å⁻¹ (0.1, the top of the training range) to which a PDF
        whose Qdamp is known is damped before it is read, so that
        the resolution envelope no longer mimics a smaller particle; such
        PDFs are read by a second, *informed* reader. None: the estimator
        has the blind reader only (weights made before it had two).
    rstep : float
        r-step in Å of the model grid, for that envelope.
    """

    n_points: int = 3000
    pool: int = 5
    channels: tuple[int, ...] = (32, 64, 64, 64)
    kernel: int = 9
    hidden: int = 256
    qdamp_reference: float | None = 0.1
    rstep: float = 0.01

    def __post_init__(self):
        owner = type(self).__name__
        for name in ("n_points", "pool", "kernel", "hidden"):
            _check_positive_int(owner, name, getattr(self, name))
        q = self.qdamp_reference
        if q is not None and (
            isinstance(q, bool)
            or not isinstance(q, (int, float))
            or not 0 < q < 1
        ):
            raise ValueError(
                f"{owner}.qdamp_reference must be None or a Qdamp in "
                f"(0, 1) Å⁻¹, got {q!r}"
            )
        if (
            isinstance(self.rstep, bool)
            or not isinstance(self.rstep, (int, float))
            or not 0 < self.rstep < float("inf")
        ):
            raise ValueError(
                f"{owner}.rstep must be a positive length in Å, got "
                f"{self.rstep!r}"
            )
        _check_channels(owner, "channels", self.channels)
        if self.kernel % 2 == 0:
            raise ValueError(f"{owner}.kernel must be odd, got {self.kernel}")
        if self.n_points % self.pool:
            raise ValueError(
                f"{owner}: n_points={self.n_points} must be divisible by "
                f"pool={self.pool}"
            )

    def to_dict(self):
        return asdict(self)

    @classmethod
    def from_dict(cls, d):
        """Rebuild from :meth:`to_dict` output; a dict written before
        the estimator read Qdamp (no ``qdamp_reference``) describes one
        that does not."""
        if isinstance(d, dict) and "qdamp_reference" not in d:
            d = dict(d, qdamp_reference=None)
        return _from_dict(cls, d)


@dataclass(frozen=True)
class CbLDMConfig:
    """The whole model: four networks, conventions and noise schedule.

    Attributes
    ----------
    condition, structure, denoiser
        Configurations of the paper's three networks.
    estimator : ClusterEstimatorConfig
        The cluster estimator, a fourth, small network that reads the
        PDF (weights made before it existed load with its default here
        and have no ``cluster_estimator`` module).
    conventions : Conventions
        Data conventions (r-grid, normalisation, sigma, atom order...).
    num_train_timesteps : int
        Diffusion steps T (1000 in the paper).
    beta_schedule : str
        diffusers name of the noise schedule; ``"squaredcos_cap_v2"`` is
        the cosine schedule of the paper.
    latent_scale : float
        Structure-VAE latents are multiplied by this before diffusion
        and divided by it after sampling, so that the diffused data have
        about unit variance (set it to 1 / std of the training latents).
    """

    condition: ConditionVAEConfig = field(default_factory=ConditionVAEConfig)
    structure: StructureVAEConfig = field(default_factory=StructureVAEConfig)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    estimator: ClusterEstimatorConfig = field(
        default_factory=ClusterEstimatorConfig
    )
    conventions: Conventions = field(default_factory=Conventions)
    num_train_timesteps: int = 1000
    beta_schedule: str = "squaredcos_cap_v2"
    latent_scale: float = 1.0

    def __post_init__(self):
        _check_positive_int(
            "CbLDMConfig", "num_train_timesteps", self.num_train_timesteps
        )
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(
                f"CbLDMConfig.beta_schedule={self.beta_schedule!r} is not "
                f"one of {BETA_SCHEDULES}"
            )
        if not isinstance(self.latent_scale, (int, float)) or not (
            0 < self.latent_scale < float("inf")
        ):
            raise ValueError(
                "CbLDMConfig.latent_scale must be a positive finite number, "
                f"got {self.latent_scale!r}"
            )
        c, s, d = self.condition, self.structure, self.denoiser
        checks = [
            (
                "condition.n_points",
                c.n_points,
                "conventions r-grid points",
                self.conventions.n_points,
            ),
            (
                "estimator.n_points",
                self.estimator.n_points,
                "conventions r-grid points",
                self.conventions.n_points,
            ),
            (
                "estimator.rstep",
                self.estimator.rstep,
                "conventions r-step",
                self.conventions.pdf.rstep,
            ),
            (
                "structure.size",
                s.size,
                "conventions.max_atoms",
                self.conventions.max_atoms,
            ),
            (
                "structure.sigma",
                s.sigma,
                "conventions.sigma",
                self.conventions.sigma,
            ),
            (
                "structure.condition_dim",
                s.condition_dim,
                "condition.condition_dim",
                c.condition_dim,
            ),
            (
                "denoiser.condition_dim",
                d.condition_dim,
                "condition.condition_dim",
                c.condition_dim,
            ),
            (
                "denoiser.sample_size",
                d.sample_size,
                "structure.latent_size",
                s.latent_size,
            ),
            (
                "denoiser.latent_channels",
                d.latent_channels,
                "structure.latent_channels",
                s.latent_channels,
            ),
        ]
        for name, value, other, expected in checks:
            if value != expected:
                raise ValueError(
                    f"CbLDMConfig: {name}={value} does not match {other}="
                    f"{expected}"
                )

    def to_dict(self):
        """JSON-ready dict, conventions included."""
        return {
            "condition": self.condition.to_dict(),
            "structure": self.structure.to_dict(),
            "denoiser": self.denoiser.to_dict(),
            "estimator": self.estimator.to_dict(),
            "conventions": self.conventions.to_dict(),
            "num_train_timesteps": self.num_train_timesteps,
            "beta_schedule": self.beta_schedule,
            "latent_scale": float(self.latent_scale),
        }

    @classmethod
    def from_dict(cls, d):
        """Rebuild from :meth:`to_dict` output.

        Raises
        ------
        ValueError
            When a field is unknown or a value is invalid.
        """
        if not isinstance(d, dict):
            raise ValueError(f"CbLDMConfig needs a dict, got {d!r}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown CbLDMConfig field(s) {unknown}")
        parts = {
            "condition": ConditionVAEConfig,
            "structure": StructureVAEConfig,
            "denoiser": DenoiserConfig,
            "estimator": ClusterEstimatorConfig,
            "conventions": Conventions,
        }
        kwargs = dict(d)
        for key, part in parts.items():
            if key in kwargs:
                kwargs[key] = part.from_dict(kwargs[key])
        return cls(**kwargs)
