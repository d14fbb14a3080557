"""Torch side of PMC²: CIFAR-10 tensors, models, losses, trainers and the in-process evaluation of trained pairs."""
