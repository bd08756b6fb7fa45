"""The exact ablation engine: graph split, plans, counts, resume."""
