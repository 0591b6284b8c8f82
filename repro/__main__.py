from repro.cli import main
from repro.exit import run_and_exit

run_and_exit(main)
