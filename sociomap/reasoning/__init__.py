"""sociomap.reasoning."""
