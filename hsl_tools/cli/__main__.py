"""`python -m hsl_tools.cli` (as `accelerate launch -m hsl_tools.cli train …` runs it)."""

from hsl_tools.cli import main

main()
