"""`python -m quickadapt ...` is the `quickadapt` command (so `torchrun -m quickadapt` works)."""
from quickadapt.cli import main

main()
