"""The cloud's blocking work: decode a batch with its link codec and compressor; classify images with the target."""

from __future__ import annotations

import numpy as np

from pmc2.runtime.compressors import TablesMismatch, UnknownCompressor, compressor_named
from pmc2.runtime.link_codecs import CodecContext, LinkCodec, UnknownCodec, build_codecs, codec_named
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.protection import bundle_protectors, protector_named
from pmc2.runtime.pipeline import classify
from pmc2.runtime.sessions import SessionSettings
from pmc2.runtime.wire_format import EncodedBatch


def cloud_models(bundle: ModelBundle) -> tuple[str, ...]:
    """The models a cloud runs (the counterpart of ``edge_server.state.edge_models``): the target, each compressor's
    g_s, each split protector's cloud models."""
    return ("target", *(compressor_named(name).g_s for name in bundle.compressors),
            *(model for name in bundle_protectors(bundle, side="cloud") for model in protector_named(name).models_on("cloud")))


class CloudRecognizer:
    """The target and every link codec's decoder for each compressor the bundle holds, built once from the model
    bundle and keyed as batches name them: (codec, compressor)."""

    def __init__(self, bundle: ModelBundle, settings: SessionSettings, max_image_pixels: int) -> None:
        self.target = bundle.session("target", settings)
        self.class_names, self.compressors = bundle.class_names, bundle.compressors
        self.tables = {compressor: bundle.tables_sha256(compressor) for compressor in self.compressors}
        self.codecs: dict[tuple[str, str], LinkCodec] = {}
        for compressor in self.compressors:
            g_s = bundle.session(compressor_named(compressor).g_s, settings)
            context = CodecContext(bundle, compressor, g_s=g_s, max_image_pixels=max_image_pixels)
            self.codecs.update({(codec.name, codec.compressor): codec for codec in build_codecs(context).values()})

    def decode(self, batch: EncodedBatch) -> np.ndarray:
        """[0, 1] NCHW images of one received batch; UnknownCompressor (answered 400) for a compressor this
        cloud's bundle does not hold, UnknownCodec (400) for a codec that does not apply to it."""
        if batch.compressor not in self.compressors:
            raise UnknownCompressor(f"this cloud's model bundle holds no compressor {batch.compressor!r} for "
                                    f"{batch.codec} batches; it holds {', '.join(self.compressors)}")
        if (batch.codec, batch.compressor) not in self.codecs:
            usable = sorted(codec for codec, compressor in self.codecs if compressor == batch.compressor)
            raise UnknownCodec(f"{batch.codec} does not apply to compressor {batch.compressor!r} (its codec "
                               f"needs what the compressor lacks); its batches travel as {', '.join(usable)}")
        return self.codecs[batch.codec, batch.compressor].decode(batch.payloads, batch.images)

    def check_tables(self, batch: EncodedBatch, claimed: str | None) -> None:
        """TablesMismatch (answered 409) when a batch of latents says it was coded with entropy tables other than
        this cloud's for its compressor; a batch that says nothing (a client that predates the check) passes."""
        if claimed is None or codec_named(batch.codec).carries_pixels or batch.compressor not in self.tables:
            return
        if claimed != self.tables[batch.compressor]:
            raise TablesMismatch(f"this {batch.codec} batch was coded with compressor {batch.compressor!r}'s tables "
                                 f"{claimed[:12]}…, this cloud holds {self.tables[batch.compressor][:12]}…: run the edge "
                                 "and the cloud on the same model bundle")

    def classify(self, images: np.ndarray) -> list[int]:
        return classify(self.target, images).tolist()
