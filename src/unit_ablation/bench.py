"""`python -m unit_ablation.bench`: the command line of `unit_ablation.tools.bench`."""

import sys

from unit_ablation.tools.bench import main

if __name__ == "__main__":
    sys.exit(main())
