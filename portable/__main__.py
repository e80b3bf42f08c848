"""`python -m realesr_portable ...` runs the `realesr-portable` command (same arguments, same exit codes)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
