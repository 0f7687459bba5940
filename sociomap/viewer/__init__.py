"""sociomap.viewer: see a run: a MapLibre web map (served or one offline file) and pictures for reports."""

from sociomap.viewer.view import Background, Layer, RunView, open_run, published_set

__all__ = ["Background", "Layer", "RunView", "open_run", "published_set"]
