"""ONNX export of the trained models: the bundles, their parity with torch, and the stored entropy tables."""
