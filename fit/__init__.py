"""Fitting a protector to a cloud model someone brings: the access to that target a fitting run stands on.

    --target fastnet | model.pt ──────────────▶ white-box: the torch classifier (training.classifiers)
    --target model.onnx ──onnx2torch, checked──▶ white-box, else black-box through onnxruntime
    --target https://host/v1/classify ────────▶ black-box: the cloud's labels for PNG batches (counted, cached)
"""
