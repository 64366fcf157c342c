"""``python -m relance``: the same command line as ``relance``."""

from relance.cli import main

main()
