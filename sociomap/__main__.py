"""``python -m sociomap`` == the ``sociomap`` console script."""

from sociomap.cli import cli

if __name__ == "__main__":
    cli(prog_name="sociomap")
