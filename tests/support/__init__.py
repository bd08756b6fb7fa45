"""Helpers shared by the tests: project paths, synthetic data, workflow runs, planted tables."""
