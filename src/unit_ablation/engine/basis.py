"""Unit bases: the canonical basis and seeded Haar-random rotations."""

from __future__ import annotations

import numpy as np
import torch


def random_rotation(dim: int, seed: int) -> np.ndarray:
    """Haar-random orthogonal matrix (QR of a Gaussian, signs fixed by diag(R)); column j is direction j."""
    rng = np.random.default_rng(seed)
    gaussian = rng.standard_normal((dim, dim))
    q, r = np.linalg.qr(gaussian)
    return q * np.sign(np.diag(r))[None, :]


def basis_matrix(dim: int, rotation_seed: int | None) -> np.ndarray | None:
    """The rotation for a seed, or None for the canonical basis."""
    return None if rotation_seed is None else random_rotation(dim, rotation_seed)


def to_basis(activation: torch.Tensor, rotation: torch.Tensor | None) -> torch.Tensor:
    """Coordinates z = Q^T a at every position (B x U x H x W); unchanged for the canonical basis."""
    if rotation is None:
        return activation
    return torch.einsum("buhw,uj->bjhw", activation, rotation)


def from_basis(coordinates: torch.Tensor, rotation: torch.Tensor | None) -> torch.Tensor:
    """Activation a = Q z from coordinates in the basis (inverse of `to_basis`)."""
    if rotation is None:
        return coordinates
    return torch.einsum("bjhw,uj->buhw", coordinates, rotation)


def orient_rotation(rotation: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """Q with column j multiplied by signs[j] (+1/-1): the oriented directions s_j q_j.

    Ablating a direction does not depend on its sign; its coordinates z_j do. With the signs of
    `attributes.orientation_signs` every oriented direction has q_j^T mu >= 0.
    """
    return rotation * np.asarray(signs, dtype=rotation.dtype)[None, :]
