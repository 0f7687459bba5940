"""sociomap.merge.blocks: merge each (layer, query) in spatial blocks of tiles, in worker processes.

A block is one tile of a coarser zoom: every call tile of a (layer, query) nests in exactly one block,
so duplicates (same, parent or child tile) never cross a block, and the only links between blocks are
seam links between pieces that reach the block's edge. Each block is read from the store with an
indexed lookup, linked, grouped, unioned and cleaned on its own; a group holding a piece at the block
edge is handed back unmerged, and those pieces (a few per cent) are merged together in a second pass.
Memory is bounded by the block, and the blocks run in parallel. The result equals ``merge_table`` on
the whole (layer, query): same links (one seam tolerance for all blocks), same groups, same order.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np

from sociomap.merge.config import MergeConfig
from sociomap.merge.links import near_box_edge, seam_tolerance, tile_bounds
from sociomap.merge.reconcile import COLUMNS, build_objects, component_labels, concat_frames
from sociomap.merge.store import PieceStore, PieceTable

logger = logging.getLogger(__name__)

#: Blocks hold at least this many pieces on average (less than 4 x as many: the grid halves per zoom step);
#: small enough to balance 2 workers and bound their memory, large enough that few pieces lie at block edges.
BLOCK_PIECES = 4_000
#: Fewer pieces than this are merged in this process: starting 2 workers (~1 s) costs more than they save.
PARALLEL_MIN_PIECES = 20_000

#: (store, [(layer, query, block, config, tol), ...]) -> iterator of ``_merge_block`` results, in order.
BlockRunner = Callable[[PieceStore, list[tuple]], Iterator[tuple]]


@dataclass(frozen=True)
class Block:
    """One block: the calls whose tiles lie in it and its EPSG:3857 bounds (minx, miny, maxx, maxy)."""

    calls: dict[int, tuple]
    bounds: tuple[float, float, float, float]


def merge_layers(
    store: PieceStore, config: MergeConfig, workers: int = 2
) -> Iterator[tuple[str, gpd.GeoDataFrame]]:
    """Yield (layer slug, GeoDataFrame in EPSG:3857) per layer, layers in sorted order.

    Columns as ``merge_table``. Each (layer, query) is merged in blocks of tiles by ``workers`` processes
    (1: block after block in this process); the result does not depend on ``workers``. Only one block
    per worker, the pieces at block edges and the objects of the current layer are in memory at a time.
    """
    current, frames = None, []
    with block_runner(workers) as run_blocks:
        for layer, query in store.layers():
            if layer != current and frames:
                yield current, concat_frames(frames)
                frames = []
            current = layer
            frames.append(merge_query(store, layer, query, config, run_blocks))
            logger.info("Merged layer=%s query=%r: %d objects", layer, query, len(frames[-1]))
    if frames:
        yield current, concat_frames(frames)


def plan_blocks(call_tiles: np.ndarray, n_pieces: np.ndarray, block_pieces: int) -> tuple[int, np.ndarray]:
    """(block zoom, (M,) block number per call): the finest block grid with ``block_pieces`` pieces a block.

    Args:
        call_tiles: (M, 3) int64 z, x, y of each call's tile.  n_pieces: (M,) pieces of each call.
    Block zooms are at most the calls' coarsest zoom, so each tile nests in one block.
    """
    for zoom in range(int(call_tiles[:, 0].min()), -1, -1):
        shift = call_tiles[:, 0] - zoom
        keys = np.column_stack([call_tiles[:, 1] >> shift, call_tiles[:, 2] >> shift])
        _, number = np.unique(keys, axis=0, return_inverse=True)
        per_block = np.bincount(number.reshape(-1), weights=n_pieces)
        if zoom == 0 or per_block[per_block > 0].mean() >= block_pieces:
            return zoom, number.reshape(-1)
    raise AssertionError("unreachable: zoom 0 always returns")


def split_blocks(calls: dict[int, tuple], n_pieces: dict[int, int], block_pieces: int) -> list[Block]:
    """The blocks of one (layer, query) that hold pieces, from its calls and their piece counts."""
    call_ids = np.array(sorted(calls), dtype=np.int64)
    call_tiles = np.array([calls[c][:3] for c in call_ids], dtype=np.int64).reshape(-1, 3)
    counts = np.array([n_pieces.get(int(c), 0) for c in call_ids], dtype=float)
    if not counts.any():
        return []
    zoom, number = plan_blocks(call_tiles, counts, block_pieces)
    blocks = []
    for b in np.unique(number[counts > 0]):
        members = np.flatnonzero(number == b)
        z, x, y = call_tiles[members[0]]
        shift = z - zoom
        box = tile_bounds(np.array([zoom]), np.array([x >> shift]), np.array([y >> shift]))[0]
        blocks.append(Block({int(c): calls[int(c)] for c in call_ids[members]}, tuple(box.tolist())))
    return blocks


def merge_query(
    store: PieceStore, layer: str, query: str, config: MergeConfig, run_blocks: BlockRunner,
    block_pieces: int = BLOCK_PIECES, parallel_min_pieces: int = PARALLEL_MIN_PIECES,
) -> gpd.GeoDataFrame:
    """Objects of one (layer, query), merged block by block (``merge_layers`` gives the columns)."""
    calls = store.read_calls(layer, query)
    n_pieces = store.count_pieces(layer, query)
    blocks = split_blocks(calls, n_pieces, block_pieces)
    tol = seam_tolerance(np.array([c[:3] for c in calls.values()], dtype=np.int64).reshape(-1, 3), config)
    tasks = [(layer, query, block, config, tol) for block in blocks]
    frames, firsts, edge_tables = [], [], []
    run = run_blocks if len(tasks) > 1 and sum(n_pieces.values()) >= parallel_min_pieces else _run_here
    for frame, first, edge in run(store, tasks):
        frames.append(frame)
        firsts.append(first)
        edge_tables.append(edge)
    edge = _concat_tables(edge_tables, calls)
    frame, first = build_objects(query, edge, component_labels(edge, config, tol), config)
    frames.append(frame)
    firsts.append(np.column_stack([edge.call[first], edge.piece_id[first]]))
    logger.debug("layer=%s query=%r: %d blocks, %d pieces at block edges", layer, query, len(blocks),
                 len(edge.call))
    first = np.concatenate(firsts).reshape(-1, 2)
    order = np.lexsort((first[:, 1], first[:, 0]))  # store order of each object's first piece
    # Empty frames are left out: their object columns would turn the str columns of the others to object.
    merged = concat_frames([f for f in frames if len(f)] or frames[-1:]).iloc[order].reset_index(drop=True)
    return merged[list(COLUMNS) + ["geometry"]]


@contextlib.contextmanager
def block_runner(workers: int) -> Iterator[BlockRunner]:
    """Runs block tasks in ``workers`` spawned processes (started on first use), or here when 1."""
    if workers <= 1:
        yield _run_here
        return
    # spawn, not fork: the caller may hold threads (Dask, torch) and an open SQLite connection.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield lambda store, tasks: pool.map(_merge_block, itertools.repeat(store.directory), *zip(*tasks))


def _run_here(store: PieceStore, tasks: list[tuple]) -> Iterator[tuple]:
    return (_merge_block(store, *task) for task in tasks)


_WORKER_STORES: dict[Path, PieceStore] = {}


def _merge_block(
    source: PieceStore | Path, layer: str, query: str, block: Block, config: MergeConfig, tol: float
) -> tuple[gpd.GeoDataFrame, np.ndarray, PieceTable]:
    """(finished objects, (K, 2) call and piece id of their first pieces, pieces of groups at the block edge).

    ``source`` is the store, or in a worker process its directory (each worker opens it once).
    """
    if isinstance(source, PieceStore):
        store = source
    else:
        store = _WORKER_STORES.get(source) or _WORKER_STORES.setdefault(source, PieceStore(source))
    table = store.read_block(layer, query, block.calls)
    labels = component_labels(table, config, tol)
    at_edge = np.isin(labels, labels[near_box_edge(table.bounds, np.array(block.bounds), tol)])
    inner = _subset(table, ~at_edge)
    frame, first = build_objects(query, inner, labels[~at_edge], config)
    return frame, np.column_stack([inner.call[first], inner.piece_id[first]]), _subset(table, at_edge)


def _subset(table: PieceTable, keep: np.ndarray) -> PieceTable:
    return PieceTable(table.piece_id[keep], table.call[keep], table.geometry[keep], table.bounds[keep],
                      table.calls)


def _concat_tables(tables: list[PieceTable], calls: dict[int, tuple]) -> PieceTable:
    """One table of the blocks' edge pieces, in store order, with every call of the (layer, query)."""
    piece_id = np.concatenate([t.piece_id for t in tables] + [np.empty(0, dtype=np.int64)])
    call = np.concatenate([t.call for t in tables] + [np.empty(0, dtype=np.int64)])
    order = np.lexsort((piece_id, call))
    geometry = np.concatenate([t.geometry for t in tables] + [np.empty(0, dtype=object)])[order]
    bounds = np.concatenate([t.bounds for t in tables] + [np.empty((0, 4))])[order]
    return PieceTable(piece_id[order], call[order], geometry, bounds, calls)
