"""sociomap.evaluation."""
