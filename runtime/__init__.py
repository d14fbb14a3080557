"""Torch-free PMC² runtime: onnxruntime sessions, codecs and CIFAR-10 readers.

Importing this package must never import torch (the edge image has none).
"""
