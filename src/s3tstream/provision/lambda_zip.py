"""The transform Lambda's deployment package, built in process and byte-for-byte deterministic.

The zip holds exactly ``s3tstream/__init__.py`` (a minimal stdlib-only stub written here, not
the CLI's own ``__init__``) and ``s3tstream/transform/*.py`` (and, for a stack whose settings
exceed the Lambda environment's 4 KB, ``s3tstream/transform/settings.json``). Entries are sorted, every entry
has the same fixed timestamp (1980-01-01, the earliest a zip can store), Unix permissions
0644 and no extra fields, and they are STORED (not deflated): deflate output depends on the
zlib build, and a package that changed bytes from one machine to the next would make every
`up` from another machine update the function's code. The package is small (~60 KB), far
below Lambda's 50 MB limit for a direct upload.

Lambda reports the package hash as ``CodeSha256`` = base64(sha256(zip bytes)); `up` compares
it with :func:`code_sha256` to decide whether to call UpdateFunctionCode.
"""

from __future__ import annotations

import base64
import hashlib
import io
import zipfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

HANDLER = "s3tstream.transform.handler"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644  # regular file, rw-r--r--
UNIX = 3  # "create_system": the permission bits are Unix ones

# The package's __init__ inside the zip: stdlib only, imports nothing (the CLI's own
# s3tstream/__init__.py is not shipped).
INIT_PY = b'"""s3tstream transform Lambda package: only s3tstream.transform is shipped."""\n'


@dataclass(frozen=True)
class Package:
    data: bytes
    names: tuple[str, ...]

    @property
    def sha256(self) -> str:
        """base64(sha256), the form Lambda reports as CodeSha256."""
        return code_sha256(self.data)

    @property
    def hexdigest(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def code_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


def transform_dir() -> Path:
    import s3tstream.transform as t

    return Path(t.__file__).resolve().parent


def source_files(root: Path | None = None) -> list[tuple[str, bytes]]:
    """(archive name, content) of every file that goes in the zip, sorted by name."""
    root = root or transform_dir()
    files = [("s3tstream/__init__.py", INIT_PY)]
    for p in sorted(root.glob("*.py")):
        files.append((f"s3tstream/transform/{p.name}", p.read_bytes()))
    return sorted(files)


def build_zip(files: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, content in sorted(files):
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_STORED
            info.create_system = UNIX
            info.external_attr = FILE_MODE << 16
            zf.writestr(info, content)
    return buf.getvalue()


def build(root: Path | None = None, extra: tuple[tuple[str, bytes], ...] = ()) -> Package:
    files = sorted(source_files(root) + list(extra))
    return Package(build_zip(files), tuple(n for n, _ in files))


@lru_cache(maxsize=4)
def package(extra: tuple[tuple[str, bytes], ...] = ()) -> Package:
    """The package of the installed transform (built once per process), plus `extra` files:
    the settings of a stack whose tables' settings are too large for the Lambda environment
    (transform/routing.py)."""
    return build(extra=extra)
