"""The one pseudonym function: a keyed HMAC-SHA256 of the original PatientID.

`lumbar ingest` names patients with it; anything keyed by an original PatientID (the phantom
generator's labels.csv, a hospital spreadsheet) is joined through it with the same secret, so the
original ID is never written out.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from lumbar.errors import UserError

SECRET_ENV = "LUMBAR_PSEUDONYM_SECRET"
SECRET_FILE = ".lumbar-secret"
PSEUDONYM_PREFIX = "P"
PSEUDONYM_HEX_DIGITS = 12


def pseudonymize(patient_id: str, secret: bytes) -> str:
    """Return the pseudonym of `patient_id`, e.g. `P3f9a0c12de45`; stable for a given secret."""
    if not secret:
        raise ValueError("pseudonym secret must not be empty")
    digest = hmac.new(secret, patient_id.strip().encode("utf-8"), hashlib.sha256).hexdigest()
    return PSEUDONYM_PREFIX + digest[:PSEUDONYM_HEX_DIGITS]


def load_secret(folder: Path | None = None, *, create: bool = False) -> bytes:
    """The pseudonym secret: $LUMBAR_PSEUDONYM_SECRET, else `folder/.lumbar-secret`.

    With `create`, a missing secret file is made (32 random bytes, hex, mode 0600).

    Raises:
        UserError: no secret is available and `create` is false.
    """
    env = os.environ.get(SECRET_ENV)
    if env:
        return env.encode("utf-8")
    if folder is None:
        raise UserError(f"no pseudonym secret: set ${SECRET_ENV}")
    path = Path(folder) / SECRET_FILE
    if path.is_file():
        return path.read_text(encoding="utf-8").strip().encode("utf-8")
    if not create:
        raise UserError(f"no pseudonym secret: set ${SECRET_ENV} or provide {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(secrets.token_hex(32) + "\n")
    return path.read_text(encoding="utf-8").strip().encode("utf-8")
