"""Write files so that a failure never leaves a partial file behind."""

import contextlib
import json
import os
import tempfile
from pathlib import Path

__all__ = ["atomic_path", "write_json"]


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; move it onto `path` on success.

    The temporary file lives in the destination folder, so the final
    ``os.replace`` is atomic. If the body raises, the temporary file is
    removed and `path` is left as it was.

    Raises
    ------
    OSError
        With the destination named, when its folder does not exist or is
        not writable, or when it is a folder.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(
            f"cannot write {path}: folder {folder} does not exist"
        )
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"cannot write {path}: {folder} is not writable")
    if path.is_dir():
        # Checked before anything is written: os.replace would fail only
        # after the body, when callers may have moved other files already.
        raise IsADirectoryError(f"cannot write {path}: it is a folder")
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.", suffix=".part", dir=folder
    )
    os.close(fd)
    # mkstemp creates the file 0600; give it the mode a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path, value):
    """Write `value` as indented JSON to `path` through
    :func:`atomic_path`; numpy scalars and other numbers are written as
    floats. Returns the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=2, default=float) + "\n")
    return Path(path)
