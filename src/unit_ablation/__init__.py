"""unit-ablation: single-unit ablation studies of CNNs (Zhou et al. 2018)."""

__version__ = "0.1.0"
