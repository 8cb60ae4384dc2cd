"""``python -m migrate`` is the same program as ``regmig``."""

from migrate.cli import main

main()
