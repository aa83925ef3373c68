"""``python -m npy_tome_layer.tools.benchmark``: the command line (cli.py)."""
from .cli import main

main()
