"""Fig. 10 of the paper; same as `hvpoison reproduce fig10` (see reproduce/README.md).

Usage: python reproduce/fig10.py [--quick] [--jobs N] [--data-dir DIR] [--out reproduce/out]
"""
import sys

from hvpoison.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "fig10", *sys.argv[1:]]))
