"""Command lines: bench, plan_cost, paper_rate."""
