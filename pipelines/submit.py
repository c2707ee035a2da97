"""Compile and run an image-classification experiment: `python pipelines/submit.py --help`."""

import sys

from pipelines.cli import main

if __name__ == "__main__":
    sys.exit(main())
