"""Fig. 11 of the paper; same as `hvpoison reproduce fig11` (see reproduce/README.md).

Usage: python reproduce/fig11.py [--quick] [--tasks mnist ...] [--jobs N] [--data-dir DIR]
"""
import sys

from hvpoison.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "fig11", *sys.argv[1:]]))
