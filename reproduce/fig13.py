"""Fig. 13 of the paper; same as `hvpoison reproduce fig13` (see reproduce/README.md).

Usage: python reproduce/fig13.py [--quick] [--tasks mnist ...] [--jobs N] [--data-dir DIR]
"""
import sys

from hvpoison.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "fig13", *sys.argv[1:]]))
