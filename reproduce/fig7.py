"""Fig. 7 of the paper; same as `hvpoison reproduce fig7` (see reproduce/README.md).

Usage: python reproduce/fig7.py [--quick] [--tasks mnist ...] [--jobs N] [--data-dir DIR]
"""
import sys

from hvpoison.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "fig7", *sys.argv[1:]]))
