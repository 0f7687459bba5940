"""sociomap.merge."""
