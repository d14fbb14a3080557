"""The edge→cloud link codecs, found by name: the only module that knows them.

    LINK_CODECS["png"].build(context) ──encode([0,1] NCHW batch)──▶ payloads ──wire──▶ decode(payloads, n) ──▶ [0,1]

Each codec class carries its name, its wire id (``runtime.wire_format``), whether a batch travels as one
stream, how a batch becomes payloads and back, and what the evaluation report needs of it: its label, how it
describes its settings, a setting the evaluation tunes per model pair (``Tuning``: JPEG's quality) and the
images per stream its bytes are counted at. Servers, client, demo and evaluation look codecs up here and never
branch on a name. A neural codec is built for one compressor (``runtime.compressors``: the context's), whose
name its batches carry; a pixel codec's batches name the default one. To add a codec: write one class with
``@register`` below, and its tests; the report then measures and lists it with the others.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from PIL import Image

from pmc2.runtime.compressors import DEFAULT_COMPRESSOR, WIRE_IDS
from pmc2.runtime.image_decoding import MAX_IMAGE_PIXELS, decode_images
from pmc2.runtime.latent_codebook import CorruptIndexStream, IndexCoder, LatentCodebook
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.neural_codec import NeuralCodec
from pmc2.runtime.normalization import to_uint8_nhwc, to_unit_nchw
from pmc2.value_ranges import JPEG_QUALITY, WEBP_QUALITY


class UnknownCodec(ValueError):
    """No link codec has that name or wire id."""


class CorruptBitstream(ValueError):
    """A neural payload that is no valid stream: too short for rANS, or naming codebook entries there are not."""


@dataclass(frozen=True)
class CodecContext:
    """What building a codec may take: the bundle's entropy tables and one compressor's sessions, and the codecs'
    settings."""

    bundle: ModelBundle | None = None
    compressor: str = DEFAULT_COMPRESSOR  # whose tables a neural codec codes with, and whose g_a and g_s these are
    g_a: object = None  # ORT session of the analysis transform (edge)
    g_s: object = None  # ORT session of the synthesis transform (cloud)
    jpeg_quality: int = 95
    jpeg_subsampling: str = "4:4:4"  # chroma off: perturbed images lose their signal under 4:2:0
    webp_quality: int | None = None  # None: lossless
    max_image_pixels: int = MAX_IMAGE_PIXELS


@dataclass(frozen=True)
class Tuning:
    """A setting the evaluation picks per model pair: the lowest of ``values`` (accuracy taken to rise with it)
    whose accuracy is within ``tolerance`` points of the ``reference`` codec's, the ``fixed`` settings kept."""

    setting: str  # a CodecContext field
    values: range
    reference: str  # a codec evaluated at the context's defaults
    label: str  # what the report calls the tuned setting
    heading: str  # its column in the report, after the codec's label
    tolerance: float = 0.5
    fixed: Mapping[str, object] = field(default_factory=dict)  # other CodecContext fields it is evaluated at

    def settings(self, value: int) -> dict[str, object]:
        """The CodecContext fields of the codec tuned to ``value``."""
        return {self.setting: value, **self.fixed}


class LinkCodec(ABC):
    name: ClassVar[str]
    wire_id: ClassVar[int]
    one_stream: ClassVar[bool] = False  # a batch travels as one payload holding every image
    carries_pixels: ClassVar[bool] = True  # encodes the image it is given (False: codes a latent of it)
    compressor: str = DEFAULT_COMPRESSOR  # the compressor its batches name (a neural codec's: the one it was built for)
    # what the evaluation report needs (pmc2.evaluation, pmc2.training.evaluate)
    report_label: ClassVar[str]
    report_label_in_full: ClassVar[str | None] = None  # the label and its mode, where the label alone is ambiguous
    tuning: ClassVar[Tuning | None] = None  # None: evaluated at the context's defaults
    evaluated_images_per_stream: ClassVar[int] = 1  # a one-stream codec's bytes are counted at this batch size
    measured_bytes: ClassVar[str] = "batched_bytes"  # a one-stream latent codec's sizes in a compressor's measurement

    @classmethod
    def describe(cls, settings: Mapping[str, object]) -> str:
        """The report's words for this codec built with ``settings`` (CodecContext fields; defaults for the rest)."""
        return "defaults"

    @classmethod
    def full_label(cls) -> str:
        return cls.report_label_in_full or cls.report_label

    @classmethod
    def applies(cls, context: CodecContext) -> bool:
        """Whether ``context`` can build this codec (a codebook codec: only for a compressor with a codebook)."""
        return True

    @classmethod
    @abstractmethod
    def build(cls, context: CodecContext) -> "LinkCodec": ...

    @abstractmethod
    def encode(self, images_unit: np.ndarray) -> list[bytes]:
        """[0, 1] NCHW float images to payloads (one per image, or one for the batch)."""

    @abstractmethod
    def decode(self, payloads: list[bytes], images: int) -> np.ndarray:
        """Payloads of ``images`` images back to [0, 1] NCHW float32."""


LINK_CODECS: dict[str, type[LinkCodec]] = {}


def register(codec: type[LinkCodec]) -> type[LinkCodec]:
    clash = [other.name for other in LINK_CODECS.values() if other.wire_id == codec.wire_id]
    if codec.name in LINK_CODECS or clash:
        raise ValueError(f"link codec {codec.name!r} (wire id {codec.wire_id}) clashes with {clash or codec.name}")
    if codec.wire_id not in WIRE_IDS:
        raise ValueError(f"link codec {codec.name!r}: wire id {codec.wire_id} does not fit the header's 4 bits")
    if not getattr(codec, "report_label", None):
        raise ValueError(f"link codec {codec.name!r} has no report_label: the evaluation report lists every codec")
    LINK_CODECS[codec.name] = codec
    return codec


def codec_named(name: str) -> type[LinkCodec]:
    if name not in LINK_CODECS:
        raise UnknownCodec(f"unknown codec {name!r}; choose from {', '.join(LINK_CODECS)}")
    return LINK_CODECS[name]


def codec_with_wire_id(wire_id: int) -> type[LinkCodec]:
    for codec in LINK_CODECS.values():
        if codec.wire_id == wire_id:
            return codec
    raise UnknownCodec(f"unknown codec id {wire_id}")


def codecs_for(bundle: ModelBundle, compressor: str) -> tuple[str, ...]:
    """The link codecs that apply to ``bundle``'s ``compressor``: what its images can travel over."""
    context = CodecContext(bundle, compressor)
    return tuple(name for name, codec in LINK_CODECS.items() if codec.applies(context))


def build_codecs(context: CodecContext) -> dict[str, LinkCodec]:
    """Every link codec that applies to ``context`` built from it (its neural codecs for the context's compressor),
    by name."""
    return {name: codec.build(context) for name, codec in LINK_CODECS.items() if codec.applies(context)}


class PillowLink(LinkCodec):
    """One image per payload, written by Pillow; read back by the one image decoder (32x32 only)."""

    pillow_format: ClassVar[str]

    def __init__(self, save_options: dict, max_image_pixels: int) -> None:
        self.save_options, self.max_image_pixels = save_options, max_image_pixels

    def encode(self, images_unit: np.ndarray) -> list[bytes]:
        payloads = []
        for pixels in to_uint8_nhwc(images_unit):
            buffer = io.BytesIO()
            Image.fromarray(pixels).save(buffer, format=self.pillow_format, **self.save_options)
            payloads.append(buffer.getvalue())
        return payloads

    def decode(self, payloads: list[bytes], images: int) -> np.ndarray:
        return to_unit_nchw(decode_images(payloads, self.max_image_pixels, policy="reject"))


@register
class PngLink(PillowLink):
    """Lossless PNG, optimize=True."""

    name, wire_id, pillow_format = "png", 2, "PNG"
    report_label = "PNG"

    @classmethod
    def describe(cls, settings: Mapping[str, object]) -> str:
        return "lossless"

    @classmethod
    def build(cls, context: CodecContext) -> "PngLink":
        return cls({"optimize": True}, context.max_image_pixels)


@register
class JpegLink(PillowLink):
    """JPEG at ``context.jpeg_quality``, chroma subsampling as the context says (4:4:4 by default)."""

    name, wire_id, pillow_format = "jpeg", 3, "JPEG"
    report_label = "JPEG"
    tuning = Tuning("jpeg_quality", range(50, 101), reference=PngLink.name, label="JPEG 4:4:4 quality", heading="q",
                    fixed={"jpeg_subsampling": "4:4:4"})

    @classmethod
    def describe(cls, settings: Mapping[str, object]) -> str:
        context = CodecContext(**settings)
        return f"q{context.jpeg_quality} {context.jpeg_subsampling}"

    @classmethod
    def build(cls, context: CodecContext) -> "JpegLink":
        JPEG_QUALITY.require(context.jpeg_quality, "JPEG quality")
        options = {"quality": context.jpeg_quality, "subsampling": context.jpeg_subsampling, "optimize": True}
        return cls(options, context.max_image_pixels)


@register
class WebpLink(PillowLink):
    """WebP: lossless (``context.webp_quality`` None) or lossy at that quality; slowest, smallest method."""

    name, wire_id, pillow_format = "webp", 5, "WEBP"
    report_label, report_label_in_full = "WebP", "WebP lossless"  # evaluated lossless; lossy WebP is swept too

    @classmethod
    def describe(cls, settings: Mapping[str, object]) -> str:
        quality = CodecContext(**settings).webp_quality
        return "lossless" if quality is None else f"q{quality}"

    @classmethod
    def build(cls, context: CodecContext) -> "WebpLink":
        quality = context.webp_quality
        WEBP_QUALITY.require(quality, "WebP quality")
        options = {"lossless": True, "quality": 100} if quality is None else {"quality": quality}
        return cls({**options, "method": 6}, context.max_image_pixels)


@register
class NeuralLink(LinkCodec):
    """One compressor's g_a + rANS (edge) / rANS⁻¹ + g_s (cloud): one stream per image."""

    name, wire_id, carries_pixels = "neural", 1, False
    report_label = "neural"
    MIN_STREAM_BYTES = 4  # the rANS decoder reads a 32-bit state before anything else

    @classmethod
    def describe(cls, settings: Mapping[str, object]) -> str:
        images = cls.evaluated_images_per_stream
        return f"{images} image{'s' if images > 1 else ''}/stream"

    def __init__(self, codec: NeuralCodec, compressor: str) -> None:
        self.codec, self.compressor = codec, compressor

    @classmethod
    def build(cls, context: CodecContext) -> "NeuralLink":
        if context.bundle is None:
            raise ValueError(f"the {cls.name} codec needs a model bundle (entropy tables)")
        codec = NeuralCodec.of(context.bundle, context.compressor, g_a=context.g_a, g_s=context.g_s)
        return cls(codec, context.compressor)

    def _check(self, payloads: list[bytes]) -> None:
        for index, payload in enumerate(payloads):
            if len(payload) < self.MIN_STREAM_BYTES:
                raise CorruptBitstream(f"corrupt neural bitstream: stream {index} has {len(payload)} bytes")

    def encode(self, images_unit: np.ndarray) -> list[bytes]:
        return self.codec.encode(images_unit)

    def decode(self, payloads: list[bytes], images: int) -> np.ndarray:
        self._check(payloads)
        return self.codec.decode(payloads)


@register
class NeuralBatchLink(NeuralLink):
    """The neural codec with one rANS stream per batch: the coder's flush is paid once per batch."""

    name, wire_id, one_stream = "neural-batch", 4, True
    evaluated_images_per_stream = 256  # the edge's largest micro-batch

    def encode(self, images_unit: np.ndarray) -> list[bytes]:
        return [self.codec.encode_stream(images_unit)]

    def decode(self, payloads: list[bytes], images: int) -> np.ndarray:
        self._check(payloads)
        return self.codec.decode_stream(payloads[0], images)


@register
class NeuralIndexLink(NeuralLink):
    """For a compressor whose g_a ends with a latent codebook: one rANS stream of the batch's codebook indexes
    (runtime.latent_codebook), which the cloud turns back into the very latents a neural-batch stream carries."""

    name, wire_id, one_stream = "neural-index", 6, True
    report_label = "neural index"
    evaluated_images_per_stream = 256
    measured_bytes = "codebook_bytes"

    def __init__(self, codec: NeuralCodec, compressor: str, codebook: LatentCodebook) -> None:
        super().__init__(codec, compressor)
        self.codebook, self.index_coder = codebook, IndexCoder(codebook)

    @classmethod
    def applies(cls, context: CodecContext) -> bool:
        return context.bundle is not None and context.bundle.latent_codebook(context.compressor) is not None

    @classmethod
    def build(cls, context: CodecContext) -> "NeuralIndexLink":
        codebook = context.bundle.latent_codebook(context.compressor) if context.bundle else None
        if codebook is None:
            raise ValueError(f"the {cls.name} codec needs a model bundle whose compressor {context.compressor!r} has a "
                             "latent codebook")
        codec = NeuralCodec.of(context.bundle, context.compressor, g_a=context.g_a, g_s=context.g_s)
        return cls(codec, context.compressor, codebook)

    def encode(self, images_unit: np.ndarray) -> list[bytes]:
        symbols = self.codec.coder.symbols(self.codec.analyse(images_unit))
        return [self.index_coder.encode(self.codebook.indexes_of(symbols))]

    def decode(self, payloads: list[bytes], images: int) -> np.ndarray:
        self._check(payloads)
        try:
            indexes = self.index_coder.decode(payloads[0], images)
        except CorruptIndexStream as error:
            raise CorruptBitstream(str(error)) from None
        return self.codec.synthesise(self.codec.coder.dequantize(self.codebook.symbols_at(indexes)))


DEFAULT_CODEC = NeuralLink.name  # what the edge sends the cloud unless configured otherwise
