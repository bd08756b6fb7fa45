"""`python -m unit_ablation.fetch_data`: the command line of `unit_ablation.data.fetch`."""

import sys

from unit_ablation.data.fetch import main

if __name__ == "__main__":
    sys.exit(main())
