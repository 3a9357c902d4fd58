"""`python -m jaxmoe` runs the command line. Guarded: a worker process started with `spawn` (a Dask worker of
`jaxmoe sweep --workers`) imports this module again, and must not run the command a second time."""

import sys

from jaxmoe.cli import main

if __name__ == "__main__":
    sys.exit(main())
