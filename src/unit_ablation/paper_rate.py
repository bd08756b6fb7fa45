"""`python -m unit_ablation.paper_rate`: the command line of `unit_ablation.tools.paper_rate`."""

import sys

from unit_ablation.tools.paper_rate import main

if __name__ == "__main__":
    sys.exit(main())
