"""sociomap.merge.tasks: the two merge steps, run in worker processes or as Dask tasks.

* ``merge_leaf``: one block of tiles read from the store: link its pieces (``links``), union each
  linked group, finish the objects that cannot reach outside the block. An object with a seam interval
  on the block's boundary is handed back as a ``Partial``: its polygon so far (WKB), its calls and only
  its seam intervals on that boundary.
* ``merge_node``: the partials of a block's children (2-4 blocks of the finer zoom): link them through
  their intervals on the edges between the children, union each group, finish what no longer reaches
  the block's boundary and hand the rest up again.
So no step holds more than a block of pieces or the intervals along a block's edges, plus the objects
it is merging; the result equals ``merge_table`` (the whole layer linked at once).
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely

from sociomap.merge.config import MergeConfig
from sociomap.merge.features import Members, ObjectBatch, finish_objects, union_parts
from sociomap.merge.links import (
    SeamIntervals, block_lines, connected_labels, contested_tiles, near_box_edge, overlap_pairs, seam_intervals,
    seam_pairs, tile_bounds,
)
from sociomap.merge.store import Call, PieceRows, PieceStore


@dataclass(frozen=True)
class Block:
    """A block: the tiles of the layer inside one tile of a coarser zoom."""

    z: int
    x: int
    y: int

    def lines(self) -> np.ndarray:
        """(4,) line keys of its sides (``links.block_lines``)."""
        return block_lines(self.z, self.x, self.y)


@dataclass
class Partial:
    """An object cut by its block's boundary, merged so far, waiting for the block next to it.

    Attributes:
        geometry: WKB (EPSG:3857) of the union of its pieces so far.
        calls: the ``Call`` of each call its pieces came from.
        n_pieces: how many pieces it holds.
        intervals: its seam intervals on the block's boundary (nothing else can link it).
    """

    geometry: bytes
    calls: dict[int, Call]
    n_pieces: int
    intervals: SeamIntervals


@dataclass
class TaskStats:
    """What one task held and where it ran (for logs, the benchmark and the bounded-memory test)."""

    kind: str
    pid: int
    pieces: int = 0
    partials_in: int = 0
    intervals: int = 0
    partial_bytes: int = 0
    seconds: float = 0.0
    peak_rss_mb: int = 0


@dataclass
class TaskResult:
    """Finished objects of a task, its partials for the parent block, and its stats."""

    batch: ObjectBatch
    partials: list[Partial]
    stats: TaskStats


@dataclass(frozen=True)
class LeafTask:
    """Merge one block read from the store. ``source`` is the store's folder (workers on this machine
    read it themselves) or the block's (pieces, calls) shipped by the driver (a cluster).
    ``boundary`` is the block whose edge can cut objects (None at the root: nothing is cut).
    """

    boundary: Block | None
    calls: np.ndarray
    source: Path | tuple[PieceRows, dict[int, Call]]
    config: MergeConfig
    tol: float
    crs: str
    grid_zoom: int


@dataclass(frozen=True)
class NodeTask:
    """Merge the partials of a block's children (``grid_zoom``: the layer's finest tile zoom)."""

    boundary: Block | None
    partials: list[Partial]
    config: MergeConfig
    tol: float
    crs: str
    grid_zoom: int


@dataclass
class _Linked:
    """Pieces of a block with their component labels and seam intervals."""

    rows: PieceRows
    geoms: np.ndarray
    labels: np.ndarray
    intervals: SeamIntervals
    contested: np.ndarray


def run_task(task: LeafTask | NodeTask) -> TaskResult:
    """Entry point of a worker process or Dask task."""
    result = merge_leaf(task) if isinstance(task, LeafTask) else merge_node(task)
    result.stats.peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # so far, this process
    return result


def merge_leaf(task: LeafTask) -> TaskResult:
    """Link, group and union one block's pieces; finish what its boundary does not cut."""
    start = time.perf_counter()
    rows, calls = _load(task)
    linked = link_pieces(rows, calls, task.config, task.tol)
    labels = np.unique(linked.labels, return_inverse=True)[1].reshape(-1)  # 0..k-1 in store order
    n_objects = int(labels.max()) + 1 if len(labels) else 0
    cut = np.zeros(n_objects, dtype=bool)
    iv = linked.intervals
    on_boundary = _on_boundary(iv, task.boundary)
    if on_boundary.any():
        index = np.searchsorted(rows.piece_id, iv.piece[on_boundary], sorter=_sorter(rows.piece_id))
        cut[labels[_sorter(rows.piece_id)[index]]] = True
    geoms, members, n_pieces = _objects(linked, labels, n_objects, task.grid_zoom, task.tol)
    batch = finish_objects(geoms[~cut], _subset(members, ~cut), n_pieces[~cut], calls, task.config, task.crs)
    partials = []
    if cut.any():
        piece_object = dict(zip(rows.piece_id.tolist(), labels.tolist()))
        boundary_iv = iv.take(on_boundary)
        owner = np.array([piece_object[p] for p in boundary_iv.piece.tolist()], dtype=np.int64)
        for k in np.flatnonzero(cut):
            calls_k = {int(c): calls[int(c)] for c in members.of(int(k))}
            partials.append(Partial(shapely.to_wkb(geoms[k]), calls_k, int(n_pieces[k]),
                                    boundary_iv.take(owner == k)))
    stats = TaskStats("leaf", os.getpid(), pieces=len(rows), intervals=len(iv),
                      seconds=time.perf_counter() - start)
    return TaskResult(batch, partials, stats)


def merge_node(task: NodeTask) -> TaskResult:
    """Link the children's partials across the edges between them; finish what the boundary does not cut."""
    start = time.perf_counter()
    parts = task.partials
    iv = SeamIntervals.concat([p.intervals for p in parts])
    owner_of = {}
    for k, p in enumerate(parts):
        owner_of.update(dict.fromkeys(p.intervals.piece.tolist(), k))
    pairs = seam_pairs(iv, task.config, task.tol)
    owners = np.array([[owner_of[a], owner_of[b]] for a, b in pairs.tolist()], dtype=np.int64).reshape(-1, 2)
    labels = np.unique(connected_labels(len(parts), owners), return_inverse=True)[1].reshape(-1)
    n_objects = int(labels.max()) + 1 if len(labels) else 0
    groups = _groups(labels, n_objects)
    finished_geoms, finished_calls, finished_pieces, partials = [], {}, [], []
    member_pairs = []
    for k, group in enumerate(groups):
        calls = {c: call for i in group for c, call in parts[i].calls.items()}
        group_iv = SeamIntervals.concat([parts[i].intervals for i in group])
        group_iv = group_iv.take(_on_boundary(group_iv, task.boundary))
        n_pieces = sum(parts[i].n_pieces for i in group)
        if len(group_iv) and len(group) == 1:  # still cut, nothing to merge: pass the WKB on as it is
            partials.append(Partial(parts[group[0]].geometry, calls, n_pieces, group_iv))
            continue
        geometry = union_parts(shapely.from_wkb([parts[i].geometry for i in group]), task.grid_zoom, task.tol)
        if len(group_iv):
            partials.append(Partial(shapely.to_wkb(geometry), calls, n_pieces, group_iv))
            continue
        member_pairs.extend((len(finished_geoms), c) for c in calls)
        finished_calls.update(calls)
        finished_geoms.append(geometry)
        finished_pieces.append(n_pieces)
    pairs_arr = np.array(member_pairs, dtype=np.int64).reshape(-1, 2)
    members = Members.from_pairs(pairs_arr[:, 0], pairs_arr[:, 1], len(finished_geoms))
    geoms = np.empty(len(finished_geoms), dtype=object)
    geoms[:] = finished_geoms
    batch = finish_objects(geoms, members, np.array(finished_pieces, dtype=np.int64), finished_calls,
                           task.config, task.crs)
    stats = TaskStats("node", os.getpid(), partials_in=len(parts), intervals=len(iv),
                      partial_bytes=sum(len(p.geometry) for p in parts), seconds=time.perf_counter() - start)
    return TaskResult(batch, partials, stats)


def link_pieces(rows: PieceRows, calls: dict[int, Call], config: MergeConfig, tol: float) -> _Linked:
    """Decode a block's pieces, find their seam intervals and links, and label their components."""
    geoms = np.asarray(shapely.from_wkb(rows.wkb), dtype=object).reshape(-1)
    call_ids = np.array(sorted(calls), dtype=np.int64)
    call_tiles = np.array([(calls[c].z, calls[c].x, calls[c].y) for c in call_ids], dtype=np.int64).reshape(-1, 3)
    row = np.searchsorted(call_ids, rows.call)
    tiles = call_tiles[row]
    edge = near_box_edge(rows.bounds, tile_bounds(tiles[:, 0], tiles[:, 1], tiles[:, 2]), tol)
    iv = seam_intervals(geoms[edge], rows.piece_id[edge], tiles[edge], tol)
    seam = seam_pairs(iv, config, tol)
    sorter = _sorter(rows.piece_id)
    seam_index = sorter[np.searchsorted(rows.piece_id, seam.reshape(-1), sorter=sorter)].reshape(-1, 2)
    query = np.array([calls[c].query for c in call_ids], dtype=object)[row]
    contested = contested_tiles(call_tiles)[row]
    overlap = overlap_pairs(geoms, rows.bounds, rows.call, query, tiles, contested, config)
    labels = connected_labels(len(geoms), np.concatenate([seam_index, overlap]))
    return _Linked(rows, geoms, labels, iv, contested)


def _objects(linked: _Linked, labels: np.ndarray, n: int, grid_zoom: int, tol: float
             ) -> tuple[np.ndarray, Members, np.ndarray]:
    """(geometry, calls, piece count) of each of the n components: singles as they are, groups unioned."""
    n_pieces = np.bincount(labels, minlength=n).astype(np.int64)
    out = np.empty(n, dtype=object)
    single = n_pieces[labels] == 1
    out[labels[single]] = linked.geoms[single]
    for k, group in zip(np.flatnonzero(n_pieces > 1), _groups_of(labels, n_pieces > 1)):
        # Pieces of overlapping tiles may cover each other's holes: only seam groups set inner holes aside.
        zoom = None if linked.contested[group].any() else grid_zoom
        out[k] = union_parts(linked.geoms[group], zoom, tol)
    return out, Members.from_pairs(labels, linked.rows.call, n), n_pieces


def _groups_of(labels: np.ndarray, wanted: np.ndarray) -> list[np.ndarray]:
    """Member indices of each wanted component, components in label order, members in index order."""
    members = np.flatnonzero(wanted[labels])
    if len(members) == 0:
        return []
    order = members[np.argsort(labels[members], kind="stable")]
    _, starts = np.unique(labels[order], return_index=True)
    return np.split(order, starts[1:])


def _groups(labels: np.ndarray, n: int) -> list[np.ndarray]:
    return _groups_of(labels, np.ones(n, dtype=bool)) if n else []


def _subset(members: Members, keep: np.ndarray) -> Members:
    counts = np.diff(members.ptr)
    entry_kept = np.repeat(keep, counts)
    ptr = np.concatenate([[0], np.cumsum(counts[keep])]).astype(np.int64)
    return Members(ptr, members.call[entry_kept])


def _on_boundary(iv: SeamIntervals, boundary: Block | None) -> np.ndarray:
    if boundary is None or len(iv) == 0:
        return np.zeros(len(iv), dtype=bool)
    return np.isin(iv.line, boundary.lines())


def _sorter(ids: np.ndarray) -> np.ndarray:
    return np.argsort(ids, kind="stable")


_WORKER_STORES: dict[Path, PieceStore] = {}


def _load(task: LeafTask) -> tuple[PieceRows, dict[int, Call]]:
    if not isinstance(task.source, Path):
        return task.source
    store = _WORKER_STORES.get(task.source)
    if store is None:
        store = _WORKER_STORES.setdefault(task.source, PieceStore(task.source, readonly=True))
    return store.read_pieces(task.calls), store.read_calls(task.calls)
