"""`python -m unit_ablation.describe MODEL_SPEC`: the command line of `unit_ablation.tools.describe`."""

import sys

from unit_ablation.tools.describe import main

if __name__ == "__main__":
    sys.exit(main())
