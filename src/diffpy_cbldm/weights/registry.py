"""Finding weights: the ``diffpy_cbldm.weights`` entry-point group.

A package registers a set of weights by naming, in its metadata, an object
that gives the directory holding ``manifest.json``::

    [project.entry-points."diffpy_cbldm.weights"]
    mmnp-v2 = "diffpy_cbldm.weights.shipped:mmnp_v2"

The object may be a function returning the directory, or the directory
itself (a path or an ``importlib.resources`` Traversable). Discovery reads
the entry points of every installed distribution
(:func:`importlib.metadata.distributions`), so any of them can add weights
without this package knowing about it; a distribution whose metadata
cannot be read is skipped with a logged warning rather than hiding the
others.
"""

import logging
import os
import re
from importlib.metadata import distributions
from pathlib import Path

__all__ = ["ENTRY_POINT_GROUP", "MANIFEST", "WeightsError", "available"]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "diffpy_cbldm.weights"
"""Entry-point group weights are registered in."""

MANIFEST = "manifest.json"
"""Name of the manifest file in a weights directory."""


class WeightsError(ValueError):
    """Weights that cannot be found, verified or loaded; the message names
    the set, the file and what is wrong."""


def _entry_points():
    """Entry points of the group from every installed distribution.

    As :func:`importlib.metadata.entry_points`, only the first
    distribution of each (normalised) name on ``sys.path`` counts. A
    distribution whose metadata or ``entry_points.txt`` cannot be read
    (one malformed file would make ``entry_points`` raise for every
    group) is skipped with a logged warning naming it.
    """
    seen = set()
    for dist in distributions():
        where = getattr(dist, "_path", None)
        name = None
        try:
            name = dist.metadata["Name"]
            if name:
                key = re.sub(r"[-_.]+", "-", name).lower()
                if key in seen:
                    continue
                seen.add(key)
            group = [
                ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP
            ]
        except Exception as err:
            logger.warning(
                "cannot read the entry points of distribution %s (%s): "
                "%r; its weights, if any, are left out",
                name or "?",
                where,
                err,
            )
            continue
        yield from group


def _registered():
    """Entry points of the group by name; the first of duplicates wins."""
    found = {}
    for ep in _entry_points():
        if ep.name in found:
            if found[ep.name].value != ep.value:
                logger.warning(
                    "weights name %r is registered twice (%s and %s); "
                    "using the first",
                    ep.name,
                    found[ep.name].value,
                    ep.value,
                )
            continue
        found[ep.name] = ep
    return found


def _directory(ep):
    """The directory an entry point designates.

    Raises
    ------
    WeightsError
        When the object cannot be loaded or is not an existing directory.
    """
    where = f"weights {ep.name!r} (entry point {ep.value!r})"
    try:
        obj = ep.load()
        if callable(obj):
            obj = obj()
    except Exception as err:
        raise WeightsError(f"{where} cannot be resolved: {err!r}") from err
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
    elif hasattr(obj, "joinpath") and hasattr(obj, "is_dir"):
        # An importlib.resources Traversable; for a package installed as
        # files (not in a zip) its str() is the real path.
        path = Path(str(obj))
    else:
        raise WeightsError(
            f"{where} gives {obj!r}, not a directory path or Traversable"
        )
    if not path.is_dir():
        raise WeightsError(f"{where} points to {path}, not a directory")
    return path


def resolve(name):
    """Directory of the registered weights called `name`.

    Raises
    ------
    WeightsError
        When no weights of that name are registered (the message lists
        the registered names) or the entry point is broken.
    """
    registered = _registered()
    if name not in registered:
        names = sorted(registered)
        raise WeightsError(
            f"no weights named {name!r} are installed; available: "
            f"{names if names else 'none'} (entry-point group "
            f"{ENTRY_POINT_GROUP!r})"
        )
    return _directory(registered[name])


def available():
    """Every installed set of weights.

    Returns
    -------
    dict of str -> pathlib.Path
        Name -> directory holding ``manifest.json``, sorted by name.
        Registered sets whose entry point is broken or whose directory has
        no manifest are left out with a logged warning.
    """
    out = {}
    for name, ep in sorted(_registered().items()):
        try:
            path = _directory(ep)
        except WeightsError as err:
            logger.warning("%s", err)
            continue
        if not (path / MANIFEST).is_file():
            logger.warning(
                "weights %r at %s have no %s; left out", name, path, MANIFEST
            )
            continue
        out[name] = path
    return out
