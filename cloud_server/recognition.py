"""The cloud's blocking work: decode a batch with its link codec; classify images with the target."""

from __future__ import annotations

import numpy as np

from pmc2.runtime.link_codecs import LINK_CODECS, CodecContext, LinkCodec
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.pipeline import classify
from pmc2.runtime.sessions import SessionSettings
from pmc2.runtime.wire_format import EncodedBatch


class CloudRecognizer:
    """The target and every link codec's decoder, built once from the model bundle."""

    def __init__(self, bundle: ModelBundle, settings: SessionSettings, max_image_pixels: int) -> None:
        self.target = bundle.session("target", settings)
        self.class_names = bundle.class_names
        context = CodecContext(bundle, g_s=bundle.session("g_s", settings), max_image_pixels=max_image_pixels)
        self.codecs: dict[str, LinkCodec] = {name: codec.build(context) for name, codec in LINK_CODECS.items()}

    def decode(self, batch: EncodedBatch) -> np.ndarray:
        """[0, 1] NCHW images of one received batch."""
        return self.codecs[batch.codec].decode(batch.payloads, batch.images)

    def classify(self, images: np.ndarray) -> list[int]:
        return classify(self.target, images).tolist()
