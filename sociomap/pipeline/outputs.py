"""sociomap.pipeline.outputs: published output sets, replaced in one atomic step.

A run (or an export) assembles a complete set of files (layers, exports, run.json) in a staging folder,
moves it to ``OUT/.sociomap/sets/<set_id>`` and then repoints the ``OUT/current`` symlink with one
``rename``: a reader always sees the whole previous set or the whole new one, never a mix, whatever
kills the writer. ``OUT/<file>`` links (``-> current/<file>``) keep the paths QGIS projects and web
servers use. A user's own file at such a path is never replaced without ``overwrite``. Old sets stay
until pruned, so a reader that opened one keeps working.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

from sociomap.errors import InputError

logger = logging.getLogger(__name__)

STATE_DIR = ".sociomap"
SETS_DIR = "sets"
STAGING_DIR = "staging"
CURRENT = "current"
MANIFEST = "run.json"
#: Published sets kept besides the current one (readers of an older set keep working for a while).
KEEP_SETS = 2


def state_dir(out: Path) -> Path:
    """``OUT/.sociomap``: lock, cache, sets, staging."""
    return Path(out) / STATE_DIR


def published_set(out: Path) -> Path | None:
    """The folder of the published set (resolved once), OUT itself for an output written before sets
    existed, or None when nothing was published yet."""
    out = Path(out)
    current = out / CURRENT
    if current.is_symlink() or current.is_dir():
        resolved = current.resolve()
        return resolved if resolved.is_dir() else None
    return out if (out / MANIFEST).is_file() and not (out / MANIFEST).is_symlink() else None


def _legacy_outputs(out: Path) -> set[str]:
    """File names an old-style run (files directly in OUT, listed in its run.json) wrote."""
    from sociomap.pipeline.manifest import read_manifest

    manifest = read_manifest(out / MANIFEST) if (out / MANIFEST).is_file() and not (out / MANIFEST).is_symlink() else None
    if not manifest:
        return set()
    return {Path(p).name for p in manifest.get("outputs", [])} | {MANIFEST}


def check_user_files(out: Path, names: Iterable[str], overwrite: bool) -> None:
    """Refuse, before any work, to replace a file in OUT that sociomap did not make (``--overwrite`` allows it)."""
    out = Path(out)
    ours = _legacy_outputs(out)
    for name in [CURRENT, *names]:
        path = out / name
        if path.is_symlink() or not path.exists() or name in ours:
            continue
        if name == CURRENT or not overwrite:
            raise InputError(f"{path} exists and was not written by sociomap; move it away, choose another --out"
                             + ("" if name == CURRENT else ", or pass --overwrite to replace it"))


def remove_leftovers(out: Path) -> list[Path]:
    """Staging folders and temporary files of runs that were killed (called under the run lock)."""
    state = state_dir(out)
    removed = [p for p in (state / STAGING_DIR).glob("*")] if (state / STAGING_DIR).is_dir() else []
    removed += [p for p in Path(out).glob(".current-*") if p.is_symlink()]
    removed += [p for p in Path(out).glob(".tmp-*")] + [p for p in state.glob(".tmp-*")]
    for path in removed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    if removed:
        logger.info("Removed %d leftovers of interrupted runs under %s", len(removed), out)
    return removed


def staging_dir(out: Path, name: str) -> Path:
    """A fresh folder under ``OUT/.sociomap/staging`` (removed at the next run if this one dies)."""
    path = state_dir(out) / STAGING_DIR / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def link_or_copy(source: Path, target: Path) -> None:
    """Hard-link ``source`` to ``target`` (sets share unchanged files for free); copy where links fail."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def carry_over(previous: Path | None, target: Path, names: Iterable[str]) -> list[str]:
    """Link the files ``names`` of the previous set into the set being built; returns those found."""
    carried = []
    for name in names:
        if previous is not None and (previous / name).is_file() and not (target / name).exists():
            link_or_copy(previous / name, target / name)
            carried.append(name)
    return carried


def _symlink_atomic(target: str, link: Path) -> None:
    tmp = link.with_name(f".current-{os.getpid()}-{link.name}")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def publish_set(out: Path, building: Path, set_id: str) -> Path:
    """Move a complete set into ``sets/``, switch ``OUT/current`` to it in one rename, refresh the links."""
    out = Path(out)
    sets = state_dir(out) / SETS_DIR
    sets.mkdir(parents=True, exist_ok=True)
    final = sets / set_id
    _fsync_tree(building)
    os.replace(building, final)
    old_names = {p.name for p in published_set(out).iterdir()} if published_set(out) is not None else set()
    legacy = _legacy_outputs(out)
    _symlink_atomic(os.path.join(STATE_DIR, SETS_DIR, set_id), out / CURRENT)  # THE switch
    new_names = {p.name for p in final.iterdir()}
    for name in sorted(new_names):
        link = out / name
        if not link.is_symlink() or os.readlink(link) != os.path.join(CURRENT, name):
            _symlink_atomic(os.path.join(CURRENT, name), link)
    for name in sorted((old_names | legacy) - new_names):
        link = out / name
        if link.is_symlink() and os.readlink(link) == os.path.join(CURRENT, name):
            link.unlink()
    _fsync_dir(out)
    return final


def prune_sets(out: Path, keep: int = KEEP_SETS) -> list[Path]:
    """Remove published sets older than the ``keep`` newest besides the current one."""
    sets = state_dir(out) / SETS_DIR
    current = published_set(out)
    if not sets.is_dir():
        return []
    old = sorted((p for p in sets.iterdir() if p.is_dir() and p != current), key=lambda p: p.name, reverse=True)
    removed = old[keep:]
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def set_files(folder: Path) -> list[str]:
    """The files of a published set, relative to it. For an output written before sets existed (files directly
    in OUT), the files its run.json lists."""
    folder = Path(folder)
    if (folder / STATE_DIR).exists() or not (folder / MANIFEST).exists() or (folder / MANIFEST).is_symlink():
        return sorted(name for name in _legacy_outputs(folder) if (folder / name).is_file())
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def published_sets(out: Path) -> list[Path]:
    """Every published set folder, newest first."""
    sets = state_dir(out) / SETS_DIR
    return sorted((p for p in sets.iterdir() if p.is_dir()), key=lambda p: p.name, reverse=True) if sets.is_dir() else []


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
