"""Black-box access to a local ONNX classifier through onnxruntime: its top-1 labels, counted like a cloud's.
The labeler holds an onnxruntime session and nothing else of the model (no graph, no weights)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pmc2.fit.access import BlackBoxLabeler
from pmc2.fit.input_spaces import InputSpace
from pmc2.runtime.model_bundle import run_single_output
from pmc2.runtime.normalization import to_unit_nchw
from pmc2.runtime.sessions import SessionSettings, create_session


class OnnxLabeler(BlackBoxLabeler):
    def __init__(self, path: Path, space: InputSpace, settings: SessionSettings = SessionSettings(),
                 batch_images: int = 256) -> None:
        super().__init__(f"onnxruntime on {path}", batch_images)
        self._session = create_session(Path(path), settings)
        self._model_input = space.from_unit_numpy

    def _query(self, images_uint8: np.ndarray) -> np.ndarray:
        return run_single_output(self._session, self._model_input(to_unit_nchw(images_uint8))).argmax(axis=1)
