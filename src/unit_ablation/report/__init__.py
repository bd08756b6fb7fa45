"""Figures and the summary."""
