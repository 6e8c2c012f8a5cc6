"""Fig. 5 of the paper; same as `hvpoison reproduce fig5` (see reproduce/README.md).

Usage: python reproduce/fig5.py [--quick] [--jobs N] [--data-dir DIR] [--out reproduce/out]
"""
import sys

from hvpoison.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "fig5", *sys.argv[1:]]))
