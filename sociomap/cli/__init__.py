"""sociomap.cli."""
