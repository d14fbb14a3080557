"""Torch side of PMC²: data, models, training and ONNX export."""
