"""`python -m mercato` runs the `mercato` command (used to start child servers portably)."""

from mercato.cli import app

app()
