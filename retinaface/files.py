"""Files written whole or not at all, and their digests (stdlib only; ships to the Pi, Python 3.7+)."""

import hashlib
import os
import tempfile


def write_atomic(path, data, mode=0o644):
    """Write `data` (bytes, or text as UTF-8) to a temp name beside `path`, then rename over it.

    A reader sees the old file or the new one, never half of it; an interrupted write leaves no
    temp file behind. `mode` defaults to 0644 because mkstemp makes 0600 and results are shared.
    """
    if isinstance(data, str):
        data = data.encode("utf-8")
    path = str(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        os.makedirs(directory)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def sha256_file(path):
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(str(path), "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
