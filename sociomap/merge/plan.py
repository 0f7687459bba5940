"""sociomap.merge.plan: a layer's tiles as a quadtree of blocks, leaves small enough for one worker.

Starting from the smallest tile that holds every call tile of the layer, a block holding more than
``block_pieces`` pieces is split into its four children of the next zoom (those that hold tiles), so a
dense downtown gets small leaves and sparse suburbs large ones. A block is never split below the
coarsest call tile inside it, so every call tile nests in exactly one leaf, and overlapping tiles (a
z16 tile and its z17 children, a re-run) always share a leaf. A block with a single non-empty child is
not a merge step: the child takes its place and its boundary. The plan is listed in post-order (each
block after its children), the order in which its steps run and their objects are written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sociomap.merge.store import CallIndex
from sociomap.merge.tasks import Block


@dataclass(frozen=True)
class PlanStep:
    """One merge step: a leaf (``calls`` to read from the store) or a node (``children`` to join).

    Attributes:
        block: the block this step covers.
        boundary: the block whose edge can still cut its objects; None at the root.
        calls: (M,) int64 call ids of a leaf; empty for a node.
        children: positions in the plan of a node's child steps; () for a leaf.
        pieces: pieces under this step.
    """

    block: Block
    boundary: Block | None
    calls: np.ndarray
    children: tuple[int, ...]
    pieces: int


def plan_layer(index: CallIndex, block_pieces: int) -> list[PlanStep]:
    """The merge steps of one layer, in post-order (see the module docstring); [] when it has no pieces."""
    if len(index.call_id) == 0:
        return []
    tiles = index.tiles
    plan: list[PlanStep] = []

    def visit(block: Block, boundary: Block | None, idx: np.ndarray) -> int:
        pieces = int(index.n_pieces[idx].sum())
        z = block.z
        if pieces <= block_pieces or int(tiles[idx, 0].min()) == z:
            plan.append(PlanStep(block, boundary, index.call_id[idx], (), pieces))
            return len(plan) - 1
        shift = tiles[idx, 0] - (z + 1)
        cx, cy = tiles[idx, 1] >> shift, tiles[idx, 2] >> shift
        quadrant = (cx - 2 * block.x) + 2 * (cy - 2 * block.y)  # 0 NW, 1 NE, 2 SW, 3 SE
        present = [q for q in range(4) if (quadrant == q).any()]
        if len(present) == 1:  # one child: it takes this block's place and boundary
            first = np.flatnonzero(quadrant == present[0])[0]
            return visit(Block(z + 1, int(cx[first]), int(cy[first])), boundary, idx)
        children = []
        for q in present:
            member = quadrant == q
            first = np.flatnonzero(member)[0]
            child = Block(z + 1, int(cx[first]), int(cy[first]))
            children.append(visit(child, child, idx[member]))
        plan.append(PlanStep(block, boundary, np.empty(0, dtype=np.int64), tuple(children), pieces))
        return len(plan) - 1

    visit(_common_tile(tiles), None, np.arange(len(index.call_id)))
    return plan


def _common_tile(tiles: np.ndarray) -> Block:
    """The smallest tile containing every tile of ``tiles`` ((M, 3) z, x, y)."""
    for zoom in range(int(tiles[:, 0].min()), -1, -1):
        shift = tiles[:, 0] - zoom
        x, y = tiles[:, 1] >> shift, tiles[:, 2] >> shift
        if (x == x[0]).all() and (y == y[0]).all():
            return Block(zoom, int(x[0]), int(y[0]))
    raise AssertionError("unreachable: zoom 0 holds every tile")
