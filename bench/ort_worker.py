"""Times onnxruntime (and the torch-free neural codec) in a process that never imports torch."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from pmc2.bench.timing import median_seconds
from pmc2.runtime.compressors import COMPRESSORS, DEFAULT_COMPRESSOR
from pmc2.runtime.model_bundle import ModelBundle, run_single_output
from pmc2.runtime.neural_codec import NeuralCodec
from pmc2.runtime.sessions import SessionSettings, create_session
from pmc2.value_ranges import positive_int


def input_shape(session, batch: int) -> tuple[int, ...]:
    return (batch, *session.get_inputs()[0].shape[1:])


def time_model(path: Path, batch: int, repeats: int, settings: SessionSettings) -> float:
    session = create_session(path, settings)
    inputs = np.random.default_rng(0).random(input_shape(session, batch), dtype=np.float32)
    return median_seconds(lambda: run_single_output(session, inputs), repeats)


def time_codec(folder: Path, batch: int, repeats: int, settings: SessionSettings) -> dict[str, float]:
    bundle = ModelBundle.open(folder)
    g_a, g_s = COMPRESSORS[DEFAULT_COMPRESSOR].models
    codec = NeuralCodec.of(bundle, DEFAULT_COMPRESSOR, g_a=bundle.session(g_a, settings),
                           g_s=bundle.session(g_s, settings))
    images = np.random.default_rng(0).random((batch, 3, 32, 32), dtype=np.float32)
    streams = codec.encode(images)
    return {
        "encode": median_seconds(lambda: codec.encode(images), repeats),
        "decode": median_seconds(lambda: codec.decode(streams), repeats),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, help="an .onnx file to time")
    parser.add_argument("--codec-folder", type=Path, help="an onnx_models folder whose neural codec to time")
    parser.add_argument("--batch", type=positive_int, required=True)
    parser.add_argument("--repeats", type=positive_int, default=20)
    parser.add_argument("--threads", type=positive_int, default=None, help="ORT intra-op threads (default: the CPUs available)")
    args = parser.parse_args()
    settings = SessionSettings(intra_op_threads=args.threads)
    result = time_codec(args.codec_folder, args.batch, args.repeats, settings) if args.codec_folder else {
        "seconds": time_model(args.model, args.batch, args.repeats, settings)}
    result["torch_imported"] = "torch" in sys.modules
    print(json.dumps(result))


if __name__ == "__main__":
    main()
