"""Data sets: Fashion-MNIST and image folders, their caches and evaluation halves."""
