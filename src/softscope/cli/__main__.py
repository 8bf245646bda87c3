"""`python -m softscope.cli` runs the command line."""

from . import main

main()
