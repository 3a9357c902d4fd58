"""`python -m jaxmoe` runs the command line."""

import sys

from jaxmoe.cli import main

sys.exit(main())
