"""An ONNX classifier as a differentiable torch module (onnx2torch), trusted only once it agrees with onnxruntime.

    model.onnx ──weights stored as float16 + Cast become float32 weights──▶ onnx2torch.convert ──▶ torch module
        checks: max |Δlogit| against onnxruntime on real images ≤ tolerance; a finite non-zero gradient at the input
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import helper, numpy_helper
from onnx2torch import convert
from torch import nn

from pmc2.fit.access import AccessUnavailable
from pmc2.fit.input_spaces import InputSpace
from pmc2.runtime.model_bundle import run_single_output
from pmc2.runtime.normalization import to_unit_nchw
from pmc2.runtime.sessions import SessionSettings, create_session


class ConversionFailed(AccessUnavailable):
    """The ONNX model has no faithful torch twin; the message says why."""


def fold_weight_casts(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with every Cast of a stored tensor replaced by the cast tensor. This project's exports keep
    weights in float16 behind a Cast (exact in float32); onnx2torch reads a convolution's weights only from
    stored tensors."""
    graph = model.graph
    stored = {tensor.name: tensor for tensor in graph.initializer}
    kept = []
    for node in graph.node:
        if node.op_type == "Cast" and node.input[0] in stored:
            dtype = helper.tensor_dtype_to_np_dtype(helper.get_attribute_value(node.attribute[0]))
            graph.initializer.append(numpy_helper.from_array(
                numpy_helper.to_array(stored[node.input[0]]).astype(dtype), node.output[0]))
        else:
            kept.append(node)
    del graph.node[:]
    graph.node.extend(kept)
    return model


def _largest_logit_difference(module: nn.Module, path: Path, space: InputSpace, images_unit: np.ndarray,
                              settings: SessionSettings) -> float:
    inputs = space.from_unit_numpy(images_unit)
    reference = run_single_output(create_session(path, settings), inputs)
    with torch.no_grad():
        converted = module(torch.from_numpy(inputs)).numpy()
    if converted.shape != reference.shape:
        return float("inf")
    return float(np.abs(converted - reference).max())


def _gradient_problem(module: nn.Module, space: InputSpace, images_unit: np.ndarray) -> str | None:
    images = torch.from_numpy(images_unit).requires_grad_(True)
    logits = module(space.from_unit_torch(images))
    logits.max(dim=1).values.sum().backward()
    if images.grad is None or not bool(images.grad.abs().sum() > 0):
        return "no gradient reaches the input"
    if not bool(torch.isfinite(images.grad).all()):
        return "the gradient at the input is not finite"
    return None


def convert_onnx(path: Path, space: InputSpace, check_images_uint8: np.ndarray, tolerance: float,
                 settings: SessionSettings = SessionSettings()) -> nn.Module:
    """The torch twin of the ONNX classifier at ``path`` (input in ``space``), eval mode, frozen; ConversionFailed
    when onnx2torch cannot convert it, when its logits on ``check_images_uint8`` differ from onnxruntime's by
    more than ``tolerance``, or when no usable gradient reaches the input."""
    try:
        module = convert(fold_weight_casts(onnx.load(path))).eval().requires_grad_(False)
    except Exception as error:  # onnx2torch fails in many ways (unsupported op, weights it cannot find, …)
        raise ConversionFailed(f"cannot convert {path} to torch ({type(error).__name__}: {error})") from None
    images_unit = to_unit_nchw(check_images_uint8)
    try:
        difference = _largest_logit_difference(module, path, space, images_unit, settings)
        problem = _gradient_problem(module, space, images_unit[:8])
    except Exception as error:  # a converted module that cannot even run what onnxruntime runs
        raise ConversionFailed(f"cannot run {path}'s torch conversion ({type(error).__name__}: {error})") from None
    if not difference <= tolerance:
        raise ConversionFailed(f"{path}'s torch conversion disagrees with onnxruntime: max |Δlogit| {difference:.3g} "
                               f"> {tolerance:g} on {len(images_unit)} images")
    if problem:
        raise ConversionFailed(f"{path}'s torch conversion is not usable white-box: {problem}")
    return module
