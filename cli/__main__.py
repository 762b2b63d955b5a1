"""``python -m poolfetch.cli`` runs the command line (same as the ``poolfetch`` script)."""

from poolfetch.cli.main import main

main()
