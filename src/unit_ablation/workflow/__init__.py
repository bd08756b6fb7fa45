"""Torch-free workflow support: the config schema and checks, code hashes, the stage runner."""
