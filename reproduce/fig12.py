"""Fig. 12 of the paper; same as `hvpoison reproduce fig12` (see reproduce/README.md).

Usage: python reproduce/fig12.py [--quick] [--tasks mnist ...] [--jobs N] [--data-dir DIR]
"""
import sys

from hvpoison.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "fig12", *sys.argv[1:]]))
