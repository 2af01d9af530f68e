"""The one pseudonym function: a keyed HMAC-SHA256 of the original PatientID.

`lumbar ingest` names patients with it; anything keyed by an original PatientID (the phantom
generator's labels.csv, a hospital spreadsheet) is joined through it with the same secret, so the
original ID is never written out.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
from pathlib import Path

from lumbar.errors import UserError

SECRET_ENV = "LUMBAR_PSEUDONYM_SECRET"
SECRET_FILE = ".lumbar-secret"
# the temporary file a secret is written under before it is linked into place
SECRET_TEMP = re.compile(r"^\.lumbar-secret\.\d+\.part$")
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
    if not path.is_file():
        if not create:
            raise UserError(f"no pseudonym secret: set ${SECRET_ENV} or provide {path}")
        _create_secret(path)
    secret = path.read_text(encoding="utf-8").strip()
    if not secret:
        raise UserError(f"pseudonym secret file {path} is empty; restore it from a backup")
    return secret.encode("utf-8")


def _create_secret(path: Path) -> None:
    """Write a new random secret (mode 0600) all at once: complete, or absent after a kill.

    The file is written under a temporary name and hard-linked into place, which fails if a
    concurrent run created the secret first; then that run's secret is the one used.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")  # matches SECRET_TEMP
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(fd, 0o600)  # also when a killed run left this temporary file behind
            handle.write(secrets.token_hex(32) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
