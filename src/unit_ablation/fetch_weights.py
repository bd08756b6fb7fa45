"""`python -m unit_ablation.fetch_weights`: the command line of `unit_ablation.models.fetch_weights`."""

import sys

from unit_ablation.models.fetch_weights import main

if __name__ == "__main__":
    sys.exit(main())
