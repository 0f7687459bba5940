"""sociomap.merge: tile masks -> polygons -> one object per entity across tile seams, per socio-function."""

from sociomap.merge.config import MergeConfig
from sociomap.merge.features import COLUMNS, ObjectBatch
from sociomap.merge.runner import MergeRunner, default_workers, merge_layers, merge_table
from sociomap.merge.store import PieceStore
from sociomap.merge.vectorize import vectorize_mask

__all__ = ["COLUMNS", "MergeConfig", "MergeRunner", "ObjectBatch", "PieceStore", "default_workers", "merge_layers",
           "merge_table", "vectorize_mask"]
