"""sociomap.pipeline."""
