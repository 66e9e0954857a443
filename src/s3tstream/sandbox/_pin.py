"""The moto version the sandbox's patches were written against (checked before moto is used)."""

from __future__ import annotations

import os
from importlib import metadata

MOTO_VERSION = "5.2.5"
SKIP_ENV = "S3TSTREAM_SANDBOX_ANY_MOTO"


def check_moto_version() -> str:
    """Return moto's version; raise RuntimeError unless it is MOTO_VERSION.

    Set S3TSTREAM_SANDBOX_ANY_MOTO=1 only while porting the patches to a new moto.
    """
    try:
        found = metadata.version("moto")
    except metadata.PackageNotFoundError as exc:  # pragma: no cover - depends on install
        raise RuntimeError(
            "the s3tstream sandbox needs moto: install the 'sandbox' extra "
            f"(pip install 's3tstream[sandbox]', which pins moto[server]=={MOTO_VERSION})"
        ) from exc
    if found != MOTO_VERSION and os.environ.get(SKIP_ENV) != "1":
        raise RuntimeError(
            f"the s3tstream sandbox patches moto internals written for moto {MOTO_VERSION}, "
            f"but moto {found} is installed. Install moto[server]=={MOTO_VERSION}, or re-check "
            "the internals listed in s3tstream/sandbox/__init__.py against the new version "
            f"(set {SKIP_ENV}=1 while doing so) and update MOTO_VERSION in sandbox/_pin.py."
        )
    return found
