"""Saved artefacts: one directory = weights in safetensors + metadata in JSON, written atomically.

Every saved object (encoder, VINN policy, BYOL checkpoint, baselines) goes through `save_artefact` /
`load_artefact`, so all of them share the same guarantees:

* loading never unpickles (safetensors + JSON only);
* the directory is written next to its destination and swapped in with renames, so an interrupted save
  leaves the previous artefact intact;
* `config.json` records the artefact kind, the format version, the SHA-256 of the weights file and of its
  own other fields, so a truncated, corrupted, hand-edited or foreign artefact is refused with a message
  that says what was expected;
* a save replaces only an artefact (a folder holding just a known kind's config.json and weights) or an
  empty folder: a folder with anything else in it is refused, never swapped out and deleted.
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

FORMAT_VERSION = 2
"""2: config.json carries `meta_sha256`, the checksum of its other fields. Version 1 artefacts still load."""
READABLE_VERSIONS = (1, 2)
WEIGHTS_FILE = "model.safetensors"
META_FILE = "config.json"
KINDS = ("encoder", "vinn_policy", "bc_policy", "open_loop_policy", "random_policy", "byol_checkpoint", "bc_checkpoint")
"""Every artefact kind this package writes: a save may replace a folder holding one of these."""


class ArtefactError(ValueError):
    """A saved artefact is missing, truncated, corrupted, of another kind or of another format version."""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _meta_sha256(meta: dict[str, Any]) -> str:
    """Checksum of config.json's fields other than meta_sha256 itself (canonical JSON, so key order and
    indentation do not matter)."""
    fields = {k: v for k, v in meta.items() if k != "meta_sha256"}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_replaceable(path: Path) -> None:
    """Refuse to save over anything but a missing path, an empty folder or an artefact this package wrote.

    Raises:
        FileExistsError: `path` is a file, or a folder holding anything besides a known kind's config.json
            and weights; the message names what is there.
    """
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_dir() or path.is_symlink():
        raise FileExistsError(f"Cannot save to {path}: it is a file, not an artefact folder. Choose another path.")
    entries = sorted(p.name for p in path.iterdir())
    if not entries:
        return
    foreign = [name for name in entries if name not in (META_FILE, WEIGHTS_FILE)]
    kind = None
    if META_FILE in entries:
        try:
            meta = json.loads((path / META_FILE).read_text())
            kind = meta.get("kind") if isinstance(meta, dict) else None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            kind = None
    if foreign or kind not in KINDS:
        shown = ", ".join(entries[:8]) + (f", ... ({len(entries)} entries)" if len(entries) > 8 else "")
        why = f"it holds files a save did not write ({', '.join(foreign[:8])})" if foreign else \
            f"its {META_FILE} names no artefact kind this package writes ({sorted(KINDS)})"
        raise FileExistsError(f"Refusing to save over {path}: {why}. A save replaces only an empty folder or a saved "
                              f"artefact ({META_FILE} + {WEIGHTS_FILE}); found: {shown}. Save to another path, or move "
                              "those files away first.")


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

    `path` must not exist, or be an empty folder or an artefact (see `check_replaceable`): anything else is
    refused before anything is written. The new directory is fully written and synced under a temporary name first, then swapped with an
    existing artefact at `path` in one atomic exchange (Linux), so a crash at any point keeps a complete
    artefact at `path`. Without renameat2 the old one is renamed aside first; a crash between the two
    renames leaves it as `.<name>.old-<pid>` next to `path`, and loading says so.
    """
    path = Path(path)
    check_replaceable(path)
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
        header["meta_sha256"] = _meta_sha256(header)
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
    if meta.get("format_version") not in READABLE_VERSIONS:
        raise ArtefactError(
            f"{path} was saved with format version {meta.get('format_version')!r}; this vinn-policy reads "
            f"format versions {list(READABLE_VERSIONS)}. Re-create it with this version of vinn-policy."
        )
    if meta["format_version"] >= 2 and meta.get("meta_sha256") != _meta_sha256(meta):
        raise ArtefactError(
            f"{meta_path} does not match its own recorded checksum (meta_sha256): it was edited or corrupted. "
            "Re-save the artefact from code (e.g. load the original and save again) instead of editing config.json."
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


def artefact_digest(path: str | Path) -> str:
    """SHA-256 of an artefact's config.json, which records the weights' checksum: two artefacts with the same
    digest hold the same weights and metadata (results.json records it for each evaluated policy)."""
    return _sha256(Path(path) / META_FILE)


def require_keys(tensors: dict[str, torch.Tensor], names: list[str], path: str | Path) -> None:
    """Raise ArtefactError naming the first expected tensor that an artefact lacks."""
    missing = [n for n in names if n not in tensors]
    if missing:
        raise ArtefactError(f"{path} lacks tensors {missing}; expected {names}.")


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """An optimizer's state as flat tensors ("optim.<param>.<name>") and its JSON-able param_groups, for a checkpoint."""
    state = optimizer.state_dict()
    tensors = {f"optim.{i}.{name}": torch.as_tensor(v) for i, s in state["state"].items() for name, v in s.items()}
    return tensors, state["param_groups"]


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], param_groups: list[dict], path: str | Path) -> None:
    """Restore what optimizer_tensors saved (ArtefactError if it does not fit this optimizer's parameters)."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, v in tensors.items():
        if name.startswith("optim."):
            _, i, key = name.split(".", 2)
            state.setdefault(int(i), {})[key] = v
    try:
        optimizer.load_state_dict({"state": state, "param_groups": param_groups})
    except (ValueError, KeyError) as e:
        raise ArtefactError(f"{path}: optimizer state does not fit this model ({e}).") from e
