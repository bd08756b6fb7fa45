"""Torch-free facts: the layer-spec grammar, the built-in and torchvision architectures, the cost model."""
