"""The notebook API: ablation, attributes, cumulative ablation and a layer table for any CNN
classifier and any torch Dataset or DataLoader (`import unit_ablation as ua; ua.ablate(...)`)."""
