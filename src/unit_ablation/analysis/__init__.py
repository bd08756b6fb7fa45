"""Statistics over ablation results: damage, attributes, correlations, claims."""
