"""Fig. 14 of the paper; same as `hvpoison reproduce fig14` (see reproduce/README.md).

Usage: python reproduce/fig14.py [--quick] [--tasks mnist ...] [--jobs N] [--data-dir DIR]
"""
import sys

from hvpoison.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "fig14", *sys.argv[1:]]))
