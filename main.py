"""agentsearch command line: ``python main.py --help``."""

import sys

from agentsearch.cli import main

if __name__ == "__main__":
    sys.exit(main())
