"""Saving and loading CbLDM weights: safetensors plus a JSON manifest.

A weights directory holds one ``<module>.safetensors`` per network and a
``manifest.json`` with

``format``, ``format_version``
    What the directory is.
``conventions``
    Every data convention (:class:`diffpy_cbldm.conventions.Conventions`):
    r-grid and PDF settings, PDF normalisation, Laplacian sigma, atom
    order rule, maximum number of atoms.
``architecture``
    The rest of :class:`~diffpy_cbldm.model.config.CbLDMConfig`.
``sampler_defaults``
    Keywords for :meth:`CbLDMPipeline.sample_latents` (sampler, t1, t2...).
``data_hash``, ``metrics``
    Hash of the training data and the measured metrics.
``files``
    Per module: file name, size and sha256; every hash is checked before
    any tensor is read. Tensors are read with safetensors, never pickle.
"""

import datetime
import hashlib
import json
import math
import os
from pathlib import Path

from diffpy_cbldm.atomic import atomic_path
from diffpy_cbldm.weights.registry import (
    MANIFEST,
    WeightsError,
    _registered,
    resolve,
)

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "load_weights",
    "read_manifest",
    "save_weights",
]

FORMAT = "diffpy-cbldm-weights"
FORMAT_VERSION = 1
_SAMPLER_KEYS = ("sampler", "base", "steps", "t1", "t2")


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _write(path, data):
    """Write bytes atomically, readable as the umask allows (mkstemp's
    temporary files are private, which shipped weights must not be)."""
    umask = os.umask(0)
    os.umask(umask)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
        os.chmod(tmp, 0o666 & ~umask)


def _check_json(name, value):
    def finite(x):
        if isinstance(x, float) and not math.isfinite(x):
            raise ValueError
        if isinstance(x, dict):
            for v in x.values():
                finite(v)
        if isinstance(x, (list, tuple)):
            for v in x:
                finite(v)

    try:
        json.dumps(value)
        finite(value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must hold only JSON values (str, finite numbers, bool, "
            f"None, lists, dicts), got {value!r}"
        ) from None


def save_weights(
    directory,
    config,
    modules,
    *,
    metrics,
    data_hash,
    sampler_defaults,
    description="",
):
    """Write networks and their manifest to `directory`.

    Parameters
    ----------
    directory : str or Path
        Created if missing; files of the same names are replaced, each
        atomically, the manifest last.
    config : CbLDMConfig
        The configuration the modules were built from.
    modules : dict of str -> torch.nn.Module
        Some or all of ``condition_vae``, ``structure_vae``, ``denoiser``
        and ``cluster_estimator``.
    metrics : dict
        Measured metrics (JSON values), e.g. validation Rw.
    data_hash : str
        Hash identifying the training data.
    sampler_defaults : dict
        Default keywords of :meth:`CbLDMPipeline.sample_latents`: any of
        ``sampler``, ``base``, ``steps``, ``t1``, ``t2``.
    description : str, optional
        One line for humans.

    Returns
    -------
    pathlib.Path
        The weights directory.

    Raises
    ------
    ValueError
        On an unknown module name, a module whose class or configuration
        does not match `config`, or metadata that is not plain JSON.
    """
    from safetensors.torch import save

    from diffpy_cbldm import __version__
    from diffpy_cbldm.model.config import CbLDMConfig
    from diffpy_cbldm.model.registry import MODULES

    if not isinstance(config, CbLDMConfig):
        raise ValueError(f"config must be a CbLDMConfig, got {config!r}")
    if not isinstance(modules, dict) or not modules:
        raise ValueError("modules must be a non-empty dict name -> module")
    for name, module in modules.items():
        if name not in MODULES:
            raise ValueError(
                f"unknown module name {name!r}; known: {list(MODULES)}"
            )
        cls, part = MODULES[name]
        if not isinstance(module, cls):
            raise ValueError(
                f"module {name!r} must be a {cls.__name__}, got "
                f"{type(module).__name__}"
            )
        if module.config != getattr(config, part):
            raise ValueError(
                f"module {name!r} was built with {module.config}, but "
                f"config.{part} is {getattr(config, part)}"
            )
    if not isinstance(data_hash, str) or not data_hash:
        raise ValueError(
            f"data_hash must be a non-empty string: {data_hash!r}"
        )
    if not isinstance(metrics, dict):
        raise ValueError(f"metrics must be a dict, got {metrics!r}")
    _check_json("metrics", metrics)
    if not isinstance(sampler_defaults, dict):
        raise ValueError(
            f"sampler_defaults must be a dict, got {sampler_defaults!r}"
        )
    unknown = sorted(set(sampler_defaults) - set(_SAMPLER_KEYS))
    if unknown:
        raise ValueError(
            f"unknown sampler_defaults key(s) {unknown}; known: "
            f"{list(_SAMPLER_KEYS)}"
        )
    _check_json("sampler_defaults", sampler_defaults)

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for name in sorted(modules):
        tensors = {
            key: value.detach().cpu().contiguous().clone()
            for key, value in modules[name].state_dict().items()
        }
        data = save(tensors, metadata={"module": name, "format": "pt"})
        filename = f"{name}.safetensors"
        _write(directory / filename, data)
        files[name] = {
            "path": filename,
            "bytes": len(data),
            "sha256": _sha256(data),
        }

    arch = config.to_dict()
    conventions = arch.pop("conventions")
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "description": str(description),
        "package_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"
        ),
        "conventions": conventions,
        "architecture": arch,
        "sampler_defaults": sampler_defaults,
        "data_hash": data_hash,
        "metrics": metrics,
        "files": files,
    }
    _write(
        directory / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode()
    )
    return directory


def _weights_directory(name_or_path):
    """The directory of a weights set named by a name or a path.

    A ``str`` without a path separator that is a registered name is the
    registered set, even when a folder of that name exists in the
    working directory. A path-like object, a ``str`` with a separator
    (``"./mmnp-v2"``, ``"runs/x/weights"``) and an unregistered name
    that is an existing directory are paths; any other ``str`` is
    looked up as a name (the error lists the registered ones).
    """
    if isinstance(name_or_path, os.PathLike):
        path = Path(name_or_path)
    elif isinstance(name_or_path, str):
        path = Path(name_or_path)
        separator = os.sep in name_or_path or (
            os.altsep and os.altsep in name_or_path
        )
        # The registry (a scan of every installed distribution) is read
        # here only when a folder of that name exists; resolve reads it.
        if not separator and (
            not path.is_dir() or name_or_path in _registered()
        ):
            return resolve(name_or_path)
    else:
        raise WeightsError(
            f"weights must be named by a registered name or a directory "
            f"path, got {name_or_path!r}"
        )
    if not path.is_dir():
        raise WeightsError(f"weights directory {path} does not exist")
    return path


def read_manifest(name_or_path):
    """The manifest of a set of weights, as a dict.

    Parameters
    ----------
    name_or_path : str or Path
        A registered name (see :func:`available`) or a weights directory.
        A ``str`` without a path separator that is registered names the
        registered set, even when a folder of that name exists in the
        working directory; a Path, a ``str`` with a separator (e.g.
        ``"./mmnp-v2"``) or an unregistered name of an existing
        directory is a directory.

    Raises
    ------
    WeightsError
        When the set is unknown, or its manifest is missing, not JSON
        (line named) or not a CbLDM weights manifest.
    """
    directory = _weights_directory(name_or_path)
    path = directory / MANIFEST
    if not path.is_file():
        raise WeightsError(f"{path} does not exist")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise WeightsError(
            f"{path} is not valid JSON: {err.msg} at line {err.lineno}, "
            f"column {err.colno}"
        ) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise WeightsError(
            f"{path} has format_version "
            f"{manifest.get('format_version')!r}; this package reads "
            f"version {FORMAT_VERSION}"
        )
    for key in ("conventions", "architecture", "files", "sampler_defaults"):
        if not isinstance(manifest.get(key), dict):
            raise WeightsError(f"{path}: field {key!r} missing or not a dict")
    return manifest


def _verified_bytes(directory, name, entry):
    """Bytes of one weights file, after its size and sha256 matched."""
    where = directory / MANIFEST
    if not isinstance(entry, dict) or not isinstance(entry.get("path"), str):
        raise WeightsError(f"{where}: files.{name} has no file path")
    filename = entry["path"]
    if Path(filename).name != filename or filename in ("", ".", ".."):
        raise WeightsError(
            f"{where}: files.{name}.path={filename!r} must be a plain file "
            "name inside the weights directory"
        )
    path = directory / filename
    if not path.is_file():
        raise WeightsError(f"weights file {path} is missing")
    data = path.read_bytes()
    digest = _sha256(data)
    if digest != entry.get("sha256"):
        raise WeightsError(
            f"weights file {path} fails its checksum: sha256 {digest}, "
            f"manifest says {entry.get('sha256')}"
        )
    return data


def load_weights(name_or_path):
    """Load a set of weights, verified.

    Parameters
    ----------
    name_or_path : str or Path
        A registered name (see :func:`available`) or a weights directory.
        A ``str`` without a path separator that is registered names the
        registered set, even when a folder of that name exists in the
        working directory; a Path, a ``str`` with a separator (e.g.
        ``"./mmnp-v2"``) or an unregistered name of an existing
        directory is a directory.

    Returns
    -------
    config : CbLDMConfig
    modules : dict of str -> torch.nn.Module
        The networks present in the set, in eval mode.

    Raises
    ------
    WeightsError
        When the set is unknown (available names listed), a file is
        missing or fails its sha256 (file named) or the tensors do not
        fit the architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load

    from diffpy_cbldm.model.config import CbLDMConfig
    from diffpy_cbldm.model.registry import MODULES, build_modules

    manifest = read_manifest(name_or_path)
    directory = _weights_directory(name_or_path)
    where = directory / MANIFEST
    unknown = sorted(set(manifest["files"]) - set(MODULES))
    if unknown:
        raise WeightsError(
            f"{where}: unknown module(s) {unknown}; known: {list(MODULES)}"
        )
    # Every checksum is verified before any tensor is read.
    blobs = {
        name: _verified_bytes(directory, name, entry)
        for name, entry in manifest["files"].items()
    }
    try:
        config = CbLDMConfig.from_dict(
            {
                **manifest["architecture"],
                "conventions": manifest["conventions"],
            }
        )
    except (TypeError, ValueError) as err:
        raise WeightsError(f"{where}: invalid configuration: {err}") from err
    modules = build_modules(config, sorted(blobs))
    for name, data in blobs.items():
        try:
            state = load(data)
            modules[name].load_state_dict(state, strict=True)
        except (RuntimeError, SafetensorError) as err:
            raise WeightsError(
                f"weights file {directory / manifest['files'][name]['path']}"
                f" does not fit the {name} architecture: {err}"
            ) from err
        modules[name].eval()
    return config, modules
