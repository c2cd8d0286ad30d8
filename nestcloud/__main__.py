"""`python -m nestcloud` runs the CLI (same as the `nestcloud` executable)."""

from nestcloud.cli import main

main()
