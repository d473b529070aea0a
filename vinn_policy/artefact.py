"""Saved artefacts: one directory = weights in safetensors + metadata in JSON, written atomically.

Every saved object (encoder, VINN policy, BYOL checkpoint, baselines) goes through `save_artefact` /
`load_artefact`, so all of them share the same guarantees:

* loading never unpickles (safetensors + JSON only);
* the directory is written next to its destination and swapped in with renames, so an interrupted save
  leaves the previous artefact intact;
* `config.json` records the artefact kind, the format version and the SHA-256 of the weights file, so a
  truncated, corrupted or foreign file is refused with a message that says what was expected.
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "config.json"


class ArtefactError(ValueError):
    """A saved artefact is missing, truncated, corrupted, of another kind or of another format version."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def usual_permissions(path: str | Path) -> None:
    """Give a file or folder from mkstemp / mkdtemp (owner-only) the permissions open() / mkdir() would."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~umask)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        usual_permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_artefact(path: str | Path, kind: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Save `tensors` (safetensors) and `meta` (JSON) as the artefact directory `path`, atomically.

    The new directory is fully written and synced under a temporary name first, then swapped with an
    existing artefact at `path` in one atomic exchange (Linux), so a crash at any point keeps a complete
    artefact at `path`. Without renameat2 the old one is renamed aside first; a crash between the two
    renames leaves it as `.<name>.old-<pid>` next to `path`, and loading says so.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        usual_permissions(staging)
        weights = staging / WEIGHTS_FILE
        # safetensors refuses non-contiguous or shared-memory tensors; clone makes each one standalone.
        save_file({name: t.detach().cpu().contiguous().clone() for name, t in tensors.items()}, str(weights))
        usual_permissions(weights)  # safetensors, too, writes owner-only files
        header = {
            "kind": kind,
            "format_version": FORMAT_VERSION,
            "weights_sha256": _sha256(weights),
            **meta,
        }
        (staging / META_FILE).write_text(json.dumps(header, indent=2, sort_keys=True))
        for p in (weights, staging / META_FILE, staging):  # on disk before the swap, not only in the page cache
            _fsync(p)
        if not path.exists():
            os.replace(staging, path)
        elif _exchange(staging, path):  # staging now holds the previous artefact
            shutil.rmtree(staging, ignore_errors=True)
        else:  # no atomic exchange here: a crash between these renames leaves the previous one at `old`
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(staging, path)
            shutil.rmtree(old, ignore_errors=True)
        _fsync(path.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE); False where that is unavailable."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    if ctypes.get_errno() in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):  # filesystem or kernel without it
        return False
    raise OSError(ctypes.get_errno(), f"Could not swap {a} into {b}: {os.strerror(ctypes.get_errno())}")


def load_artefact(path: str | Path, kind: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load an artefact saved by `save_artefact`, validating kind, version and checksum.

    Returns:
        (tensors, meta): the weights by name and the JSON metadata (including `kind` and `format_version`).

    Raises:
        ArtefactError: the directory or a file is missing, unreadable, of another kind or format version,
            or the weights do not match the recorded checksum (truncated or corrupted).
    """
    path = Path(path)
    meta_path, weights_path = path / META_FILE, path / WEIGHTS_FILE
    if not path.is_dir():
        leftover = sorted(path.parent.glob(f".{path.name}.old-*")) if not path.exists() else []
        hint = f" A save was interrupted; the previous artefact is {leftover[-1]}: rename it to {path}." if leftover else ""
        raise ArtefactError(f"{path} is not a saved {kind} directory (expected a folder with {META_FILE}).{hint}")
    for p in (meta_path, weights_path):
        if not p.is_file():
            raise ArtefactError(f"{path} is incomplete: {p.name} is missing (expected {META_FILE} + {WEIGHTS_FILE}).")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtefactError(f"{meta_path} is not valid JSON ({e}); the artefact is corrupted.") from e
    if not isinstance(meta, dict) or meta.get("kind") != kind:
        found = meta.get("kind") if isinstance(meta, dict) else type(meta).__name__
        raise ArtefactError(f"{path} holds a {found!r} artefact; expected a {kind!r} artefact.")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtefactError(
            f"{path} was saved with format version {meta.get('format_version')!r}; this vinn-policy reads "
            f"format version {FORMAT_VERSION}. Re-create it with this version of vinn-policy."
        )
    if _sha256(weights_path) != meta.get("weights_sha256"):
        raise ArtefactError(
            f"{weights_path} does not match the checksum recorded in {META_FILE}: the file is truncated or corrupted."
        )
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError) as e:  # unreachable unless the checksum collides; kept for clarity
        raise ArtefactError(f"{weights_path} is not a readable safetensors file: {e}") from e
    return tensors, meta


def require_keys(tensors: dict[str, torch.Tensor], names: list[str], path: str | Path) -> None:
    """Raise ArtefactError naming the first expected tensor that an artefact lacks."""
    missing = [n for n in names if n not in tensors]
    if missing:
        raise ArtefactError(f"{path} lacks tensors {missing}; expected {names}.")
