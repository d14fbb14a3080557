"""A fitting run's ``--target`` and ``--access`` → its TargetAccess (fit.access).

    fastnet | path/to/model.pt ───────▶ white-box (training.classifiers' checkpoint loader)
    path/to/model.onnx ───────────────▶ white-box (fit.onnx_white_box), else black-box through onnxruntime
    https://host[:port]/v1/classify ──▶ black-box (fit.cloud_labeler)

Each kind of target lists the accesses it offers, best first. Without ``access`` the first that can be had is
taken and a fallback is logged with its reason; an ``access`` asked for is that access or a TargetError.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pmc2.fit.access import BLACK_BOX, WHITE_BOX, AccessUnavailable, TargetAccess
from pmc2.fit.cloud_labeler import CloudLabeler
from pmc2.fit.input_spaces import INPUT_SPACES, input_space_named
from pmc2.fit.onnx_labeler import OnnxLabeler
from pmc2.fit.onnx_white_box import convert_onnx
from pmc2.fit.white_box import WhiteBoxTarget
from pmc2.runtime.cifar10 import load_evaluation
from pmc2.runtime.paths import CHECKPOINTS
from pmc2.runtime.sessions import SessionSettings
from pmc2.training.classifiers import CLASSIFIERS, load_classifier
from pmc2.value_ranges import NON_NEGATIVE, check_fields

log = logging.getLogger(__name__)


class TargetError(ValueError):
    """A target that names nothing usable, or an access it cannot give (a command line prints the message)."""


@dataclass(frozen=True)
class TargetOptions:
    input_space: str = "normalized"  # what an ONNX file takes (fit.input_spaces; this project's take "normalized")
    ca: Path | None = None  # what a cloud's certificate is checked against (None: the system's CAs)
    client_cert: Path | None = None  # PEM with its key, presented to a cloud that asks for mutual TLS
    tolerance: float = 1e-3  # the largest |Δlogit| allowed between an ONNX file's torch conversion and onnxruntime
    # what an ONNX file's conversion is checked on: uint8 [N,32,32,3]; None: the bundled sample
    check_images: np.ndarray | None = field(default=None, repr=False, compare=False)
    sessions: SessionSettings = field(default_factory=SessionSettings)

    def __post_init__(self) -> None:
        input_space_named(self.input_space)
        check_fields(self, {"tolerance": NON_NEGATIVE})

    def images_to_check(self) -> np.ndarray:
        return load_evaluation(None).images if self.check_images is None else self.check_images


def _file(spec: str, what: str) -> Path:
    path = Path(spec)
    if not path.is_file():
        raise TargetError(f"no {what} at {path}")
    return path


def _classifier(spec: str, options: TargetOptions) -> TargetAccess:
    path = _file(str(CHECKPOINTS / f"{spec}.pt") if spec in CLASSIFIERS else spec, "checkpoint")
    return WhiteBoxTarget(f"checkpoint {path}", load_classifier(path), INPUT_SPACES["normalized"])


def _onnx_white_box(spec: str, options: TargetOptions) -> TargetAccess:
    path, space = _file(spec, "ONNX file"), input_space_named(options.input_space)
    module = convert_onnx(path, space, options.images_to_check(), options.tolerance, options.sessions)
    return WhiteBoxTarget(f"onnx2torch's conversion of {path}", module, space)


def _onnx_black_box(spec: str, options: TargetOptions) -> TargetAccess:
    return OnnxLabeler(_file(spec, "ONNX file"), input_space_named(options.input_space), options.sessions)


def _cloud(spec: str, options: TargetOptions) -> TargetAccess:
    try:
        return CloudLabeler(spec, options.ca, options.client_cert)
    except ValueError as error:
        raise TargetError(str(error)) from None


Builder = Callable[[str, TargetOptions], TargetAccess]


@dataclass(frozen=True)
class TargetKind:
    name: str
    matches: Callable[[str], bool]
    accesses: dict[str, Builder]  # best first


TARGET_KINDS = (
    TargetKind("cloud URL", lambda spec: spec.startswith("https://"), {BLACK_BOX: _cloud}),
    TargetKind("ONNX file", lambda spec: spec.endswith(".onnx"),
               {WHITE_BOX: _onnx_white_box, BLACK_BOX: _onnx_black_box}),
    TargetKind("classifier", lambda spec: spec in CLASSIFIERS or spec.endswith(".pt"), {WHITE_BOX: _classifier}),
)


def resolve_target(spec: str, access: str | None = None, options: TargetOptions = TargetOptions()) -> TargetAccess:
    """The access to ``spec`` (a classifier name, a checkpoint, an ONNX file or a cloud's classify URL): ``access``
    (white-box or black-box), or without it the best the target offers."""
    kind = next((kind for kind in TARGET_KINDS if kind.matches(spec)), None)
    if kind is None:
        raise TargetError(f"target {spec!r} is none of: a classifier ({', '.join(CLASSIFIERS)}), a checkpoint (.pt), "
                          f"an ONNX file (.onnx), a cloud's https://host[:port]/v1/classify")
    if access is not None and access not in kind.accesses:
        raise TargetError(f"a {kind.name} offers {' or '.join(kind.accesses)} access, not {access!r}")
    tried, reasons = [access] if access else list(kind.accesses), []
    for name in tried:
        try:
            target = kind.accesses[name](spec, options)
        except AccessUnavailable as error:
            reasons.append(str(error))
            continue
        if reasons:
            log.warning("%s; fitting %s", "; ".join(reasons), target.description)
        return target
    untried = [name for name in kind.accesses if name not in tried]
    raise TargetError(f"{'; '.join(reasons)}: no {' or '.join(tried)} access to {spec}"
                      + (f" ({' or '.join(untried)} access is possible)" if untried else ""))
