"""Fig. 6 of the paper; same as `hvpoison reproduce fig6` (see reproduce/README.md).

Usage: python reproduce/fig6.py [--quick] [--tasks mnist ...] [--jobs N] [--data-dir DIR]
"""
import sys

from hvpoison.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "fig6", *sys.argv[1:]]))
