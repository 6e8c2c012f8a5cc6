"""Fig. 3 of the paper; same as `hvpoison reproduce fig3` (see reproduce/README.md).

Usage: python reproduce/fig3.py [--quick] [--jobs N] [--data-dir DIR] [--out reproduce/out]
"""
import sys

from hvpoison.cli import main

if __name__ == "__main__":
    sys.exit(main(["reproduce", "fig3", *sys.argv[1:]]))
