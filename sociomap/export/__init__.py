"""sociomap.export."""
