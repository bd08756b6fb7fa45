"""`python -m unit_ablation.plan_cost`: the command line of `unit_ablation.tools.plan_cost`."""

import sys

from unit_ablation.tools.plan_cost import main

if __name__ == "__main__":
    sys.exit(main())
