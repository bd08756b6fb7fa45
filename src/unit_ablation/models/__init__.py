"""The models: the built-in AlexNet-shaped CNN, torchvision classifiers, checkpoints, training."""
