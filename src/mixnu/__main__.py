"""`python -m mixnu` runs the CLI."""

import sys

from mixnu.cli import main

sys.exit(main())
