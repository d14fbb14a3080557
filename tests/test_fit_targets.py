"""A fitting run's target access: the shipped ONNX target as a faithful torch module, the fallback to black-box
through onnxruntime and its counted, cached labels, and the targets that are refused."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from pmc2.fit.access import BLACK_BOX, WHITE_BOX, BlackBoxLabeler, QueryCount
from pmc2.fit.onnx_labeler import OnnxLabeler
from pmc2.fit.targets import TargetError, TargetOptions, resolve_target
from pmc2.fit.white_box import WhiteBoxTarget
from pmc2.runtime.cifar10 import load_evaluation
from pmc2.runtime.model_bundle import ModelBundle, run_single_output
from pmc2.runtime.normalization import normalize, to_unit_nchw
from pmc2.runtime.paths import CHECKPOINTS, ONNX_MODELS
from pmc2.runtime.pipeline import classify
from pmc2.runtime.sessions import SessionSettings, create_session
from pmc2.training.classifiers import load_classifier

SAMPLE = load_evaluation(None)
SHIPPED_TARGET = str(ONNX_MODELS / "target.onnx")
OPTIONS = TargetOptions(sessions=SessionSettings(intra_op_threads=1))


@pytest.fixture(scope="module")
def shipped_session():
    return ModelBundle.open().session("target", SessionSettings(intra_op_threads=1))


@pytest.fixture(scope="module")
def converted() -> WhiteBoxTarget:
    return resolve_target(SHIPPED_TARGET, options=OPTIONS)


def tiny_onnx(path: Path, shrink: bool) -> Path:
    """images [N,3,32,32] → mean colour → linear → 10 logits (then Shrink, an op onnx2torch cannot convert)."""
    weights = numpy_helper.from_array(np.random.default_rng(0).normal(size=(3, 10)).astype(np.float32), "weights")
    nodes = [helper.make_node("GlobalAveragePool", ["images"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Gemm", ["flat", "weights"], ["linear" if shrink else "logits"])]
    if shrink:
        nodes.append(helper.make_node("Shrink", ["linear"], ["logits"], lambd=0.01))
    graph = helper.make_graph(nodes, "tiny",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["n", 3, 32, 32])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["n", 10])], [weights])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def held_objects(root: object, depth: int = 6) -> list[object]:
    """Everything ``root`` reaches through instance attributes and containers (not through functions or modules)."""
    seen, found, frontier = {id(root)}, [], [root]
    for _ in range(depth):
        following = []
        for item in frontier:
            children = (list(item.values()) + list(item.keys()) if isinstance(item, dict)
                        else list(item) if isinstance(item, list | tuple | set | frozenset)
                        else list(vars(item).values()) if hasattr(item, "__dict__") and not callable(item) else [])
            for child in children:
                if id(child) not in seen:
                    seen.add(id(child))
                    found.append(child)
                    following.append(child)
        frontier = following
    return found


def assert_holds_no_model(labeler: BlackBoxLabeler) -> None:
    weights = [type(item).__name__ for item in held_objects(labeler)
               if isinstance(item, torch.Tensor | torch.nn.Module | onnx.ModelProto | np.ndarray)
               or (isinstance(item, bytes) and len(item) > 4096)]
    assert not weights, weights


def test_the_shipped_onnx_target_converts_to_the_model_onnxruntime_and_its_checkpoint_compute(
        converted: WhiteBoxTarget, shipped_session) -> None:
    assert isinstance(converted, WhiteBoxTarget) and converted.kind == WHITE_BOX
    assert converted.description == f"white-box through onnx2torch's conversion of {SHIPPED_TARGET}"
    unit = to_unit_nchw(SAMPLE.images)
    with torch.no_grad():
        logits = converted.module(torch.from_numpy(unit)).numpy()
        checkpoint = load_classifier(CHECKPOINTS / "fastnet.pt")(torch.from_numpy(normalize(unit))).numpy()
    reference = run_single_output(shipped_session, normalize(unit))
    assert np.abs(logits - reference).max() < 1e-4
    assert np.abs(logits - checkpoint).max() < 1e-4
    labels = converted.labels(SAMPLE.images)
    assert (labels == classify(shipped_session, unit)).all() and (labels == SAMPLE.labels).mean() > 0.85


def test_gradients_reach_the_input_of_the_converted_target(converted: WhiteBoxTarget) -> None:
    images = torch.from_numpy(to_unit_nchw(SAMPLE.images[:16])).requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(converted.module(images), torch.from_numpy(SAMPLE.labels[:16]).long())
    loss.backward()
    assert torch.isfinite(images.grad).all() and (images.grad.abs().flatten(1).sum(1) > 0).all()
    assert not any(parameter.requires_grad for parameter in converted.module.parameters())


def test_a_registry_name_is_its_checkpoint_white_box(shipped_session) -> None:
    target = resolve_target("fastnet", options=OPTIONS)
    assert target.kind == WHITE_BOX and target.via == f"checkpoint {CHECKPOINTS / 'fastnet.pt'}"
    assert (target.labels(SAMPLE.images) == classify(shipped_session, to_unit_nchw(SAMPLE.images))).all()


def test_an_unconvertible_onnx_falls_back_to_black_box_and_says_why(tmp_path: Path, caplog) -> None:
    path = tiny_onnx(tmp_path / "shrinking.onnx", shrink=True)
    with caplog.at_level(logging.WARNING, logger="pmc2.fit.targets"):
        target = resolve_target(str(path), options=OPTIONS)
    assert isinstance(target, OnnxLabeler) and target.kind == BLACK_BOX
    message = caplog.records[-1].getMessage()
    assert message.startswith(f"cannot convert {path} to torch (") and "Shrink" in message
    assert message.endswith(f"; fitting black-box through onnxruntime on {path}")
    session = create_session(path, SessionSettings(intra_op_threads=1))
    expected = run_single_output(session, normalize(to_unit_nchw(SAMPLE.images[:32]))).argmax(1)
    assert (target.labels(SAMPLE.images[:32]) == expected).all()
    assert_holds_no_model(target)


def test_white_box_is_refused_for_an_unconvertible_onnx_when_asked_for(tmp_path: Path) -> None:
    path = tiny_onnx(tmp_path / "shrinking.onnx", shrink=True)
    with pytest.raises(TargetError, match=rf"cannot convert {path} to torch \(.*Shrink.*\): no white-box access to "
                                          rf"{path} \(black-box access is possible\)$"):
        resolve_target(str(path), WHITE_BOX, OPTIONS)


def test_a_conversion_that_disagrees_with_onnxruntime_falls_back(caplog) -> None:
    options = TargetOptions(tolerance=1e-12, check_images=SAMPLE.images[:64], sessions=OPTIONS.sessions)
    with caplog.at_level(logging.WARNING, logger="pmc2.fit.targets"):
        target = resolve_target(SHIPPED_TARGET, options=options)
    assert isinstance(target, OnnxLabeler)
    assert "torch conversion disagrees with onnxruntime: max |Δlogit|" in caplog.records[-1].getMessage()


def test_an_onnx_taking_unit_images_is_fed_unit_images(tmp_path: Path) -> None:
    path = tiny_onnx(tmp_path / "tiny.onnx", shrink=False)
    options = TargetOptions(input_space="unit", sessions=OPTIONS.sessions)
    white, black = resolve_target(str(path), options=options), resolve_target(str(path), BLACK_BOX, options)
    assert white.kind == WHITE_BOX and black.kind == BLACK_BOX
    session = create_session(path, SessionSettings(intra_op_threads=1))
    expected = run_single_output(session, to_unit_nchw(SAMPLE.images)).argmax(1)
    assert (white.labels(SAMPLE.images) == expected).all() and (black.labels(SAMPLE.images) == expected).all()


def test_black_box_labels_are_counted_and_cached_by_content(shipped_session) -> None:
    labeler = resolve_target(SHIPPED_TARGET, BLACK_BOX, OPTIONS)
    assert isinstance(labeler, OnnxLabeler)
    assert labeler.description == f"black-box through onnxruntime on {SHIPPED_TARGET}"
    labeler.batch_images = 16
    images = SAMPLE.images
    expected = classify(shipped_session, to_unit_nchw(images))
    assert (labeler.labels(images[:40]) == expected[:40]).all()
    assert labeler.count == QueryCount(images_queried=40, images_from_cache=0, requests=3)
    again = np.concatenate([images[30:50], images[[0, 0, 45]]])  # 10 answered, 10 new, copies of answered and new
    assert (labeler.labels(again) == expected[[*range(30, 50), 0, 0, 45]]).all()
    assert labeler.count == QueryCount(images_queried=50, images_from_cache=13, requests=4)
    assert_holds_no_model(labeler)


@pytest.mark.parametrize("spec, access, message", [
    ("fastnet", BLACK_BOX, "a classifier offers white-box access, not 'black-box'"),
    ("https://localhost:1/v1/classify", WHITE_BOX, "a cloud URL offers black-box access, not 'white-box'"),
    ("https://localhost:1/classify", None, "a cloud target is its classify URL"),
    ("http://localhost:1/v1/classify", None, "is none of: a classifier"),
    ("missing.onnx", None, "no ONNX file at missing.onnx"),
    ("missing.pt", None, "no checkpoint at missing.pt"),
    ("squeezenet", None, "is none of: a classifier"),
])
def test_a_target_that_cannot_be_had_is_refused_naming_why(spec: str, access: str | None, message: str) -> None:
    with pytest.raises(TargetError, match=message.replace("(", r"\(")):
        resolve_target(spec, access, OPTIONS)


def test_a_named_classifier_without_its_checkpoint_is_refused_naming_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pmc2.fit.targets.CHECKPOINTS", tmp_path)
    with pytest.raises(TargetError, match=re.escape(f"no checkpoint at {tmp_path / 'vgg13_bn.pt'}")):
        resolve_target("vgg13_bn", None, OPTIONS)
