"""sociomap.merge: tile masks -> polygons -> one object per entity across tile seams, per socio-function."""

from sociomap.merge.config import MergeConfig
from sociomap.merge.blocks import merge_layers
from sociomap.merge.reconcile import merge_table, seam_crossings
from sociomap.merge.store import PieceStore
from sociomap.merge.vectorize import vectorize_mask

__all__ = ["MergeConfig", "PieceStore", "merge_layers", "merge_table", "seam_crossings", "vectorize_mask"]
