"""The one way latentbridge writes a file: atomically (temp file in the same folder, fsync, ``os.replace``).

An interrupted or failed write never leaves a partial file under the final name, and a cancelled operation
never reaches the write. The temp file is created with the mode an ordinary ``open`` would give (0666 less the
umask), not the 0600 of ``tempfile.mkstemp``, so the result has the permissions users expect.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

Writer = Callable[[BinaryIO], None]


def atomic_write(
    path: str | os.PathLike[str], data: bytes | Writer, *, overwrite: bool = True, parents: bool = False
) -> Path:
    """Write ``data`` (bytes, or a function that writes to a binary file) to ``path`` atomically.

    Args:
        path: the final file.
        data: the bytes, or ``writer(file)`` (PIL's ``image.save(file, format=…)`` and the like).
        overwrite: replace an existing file (default); False refuses it with a FileExistsError, also when it
            appears while the data is written.
        parents: create missing parent folders; False (default) refuses a missing folder with a
            FileNotFoundError naming it.

    Returns:
        ``path`` as a Path.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists: pass overwrite=True (--overwrite) to replace it")
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    elif not path.parent.is_dir():
        raise FileNotFoundError(f"folder {path.parent} does not exist: create it first")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # mode honours the umask
    try:
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, bytes | bytearray | memoryview):
                f.write(data)
            else:
                data(f)
            f.flush()
            os.fsync(f.fileno())
        if path.exists() and not overwrite:  # appeared while we wrote
            raise FileExistsError(f"{path} already exists: pass overwrite=True (--overwrite) to replace it")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
