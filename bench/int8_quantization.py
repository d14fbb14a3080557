"""Static int8 (QDQ) quantisation of the generator and the target with onnxruntime, calibrated on
validation images; reports the accuracy change on the evaluation images and the speed-up.

    python -m pmc2.bench.int8_quantization [--data DIR] [--limit N]   # → reports/bench/int8.json

The int8 models are worth shipping only if they are both faster and within 0.5 points; the JSON
says whether they are, and holds ORT's profile of each model (ms per image by operator type, batch 256),
and the operators ORT runs after its optimisations, which show where the time goes: which convolutions
were fused into QLinearConv, which still run in float between Dequantize/Quantize pairs, and what those cost. Runs without torch.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections import Counter
from dataclasses import replace
from pathlib import Path

import numpy as np
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quant_pre_process, quantize_static
from tqdm import tqdm

from pmc2.bench.timing import median_seconds
from pmc2.machine import cpu_model
from pmc2.runtime.cifar10 import load_evaluation, load_validation
from pmc2.runtime.paths import REPORTS, SHARED_DATA
from pmc2.runtime.model_bundle import DEFAULT_MODELS, ModelBundle, run_single_output
from pmc2.runtime.normalization import normalize
from pmc2.runtime.pipeline import perturb, preprocess
from pmc2.runtime.protection import Protector
from pmc2.runtime.sessions import SessionSettings, create_session
from pmc2.value_ranges import positive_int

MAX_ACCURACY_DROP = 0.5
CALIBRATION_BATCH = 50


class BatchReader(CalibrationDataReader):
    """Feeds calibration images to the quantiser in batches."""

    def __init__(self, input_name: str, images: np.ndarray) -> None:
        self.batches = iter([{input_name: images[i : i + CALIBRATION_BATCH]} for i in range(0, len(images), CALIBRATION_BATCH)])

    def get_next(self) -> dict | None:
        return next(self.batches, None)


def quantize(model: Path, calibration: np.ndarray, out: Path) -> Path:
    prepared = out / f"{model.stem}.prepared.onnx"
    quant_pre_process(str(model), str(prepared))
    quantized = out / f"{model.stem}.int8.onnx"
    input_name = create_session(model, SessionSettings()).get_inputs()[0].name
    quantize_static(str(prepared), str(quantized), BatchReader(input_name, calibration), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return quantized


def op_ms_per_image(model: Path, settings: SessionSettings, batch: np.ndarray, profile_dir: Path, runs: int = 10) -> dict:
    """ORT's own per-node kernel times for ``runs`` calls on ``batch``, summed by operator type, in ms per image."""
    profile_dir.mkdir(parents=True, exist_ok=True)
    session = create_session(model, replace(settings, profile_prefix=profile_dir / model.stem))
    for _ in range(runs):
        run_single_output(session, batch)
    events = json.loads(Path(session.end_profiling()).read_text())
    microseconds = Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            microseconds[event["args"]["op_name"]] += event["dur"]
    return {op: total / 1e3 / (runs * len(batch)) for op, total in microseconds.most_common()}


def optimized_operator_counts(model: Path, settings: SessionSettings, out: Path) -> dict[str, int]:
    """How many nodes of each operator type ORT runs after its graph optimisations (fusions included): a QDQ
    convolution that ORT fused shows as QLinearConv, one it did not as Conv between (De)QuantizeLinear."""
    import onnx

    create_session(model, replace(settings, optimized_model_dir=out))
    graph = onnx.load(str(out / f"{model.stem}.optimized.onnx")).graph
    return dict(Counter(node.op_type for node in graph.node).most_common())


def accuracy(target, images_normalized: np.ndarray, labels: np.ndarray) -> float:
    predictions = np.concatenate([run_single_output(target, images_normalized[i : i + 500]).argmax(1)
                                  for i in range(0, len(images_normalized), 500)])
    return 100.0 * float((predictions == labels).mean())


def perturbed(generator, protector: Protector, images_normalized: np.ndarray) -> np.ndarray:
    """What the target sees over the pixel links (x', or the bundle's decode x̂ of it), normalised."""
    return normalize(np.concatenate([protector.pixels_for_links(perturb(generator, images_normalized[i : i + 500]))
                                     for i in range(0, len(images_normalized), 500)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument("--limit", type=positive_int, default=None, help="evaluation images (default all 5,000)")
    parser.add_argument("--calibration-images", type=positive_int, default=500)
    parser.add_argument("--repeats", type=positive_int, default=20)
    parser.add_argument("--threads", type=positive_int, default=None, help="ORT intra-op threads (default: the CPUs available)")
    parser.add_argument("--out", type=Path, default=REPORTS / "bench" / "int8.json")
    args = parser.parse_args()
    settings = SessionSettings(intra_op_threads=args.threads)
    evaluation = load_evaluation(args.data)
    if args.limit:
        evaluation = evaluation.subset(slice(0, args.limit))
    calibration_clean = preprocess(load_validation(args.data).images[: args.calibration_images])
    images, labels = preprocess(evaluation.images), evaluation.labels.astype(np.int64)
    fp32 = {name: create_session(DEFAULT_MODELS / f"{name}.onnx", settings) for name in ("generator", "target")}
    protector_bundle = ModelBundle.open(DEFAULT_MODELS)
    protector = Protector(protector_bundle)
    with tempfile.TemporaryDirectory() as scratch:
        # The generator is calibrated on clean images, the target on the perturbed images it will see.
        calibration = {"generator": calibration_clean, "target": perturbed(fp32["generator"], protector, calibration_clean)}
        paths = {"fp32": {name: DEFAULT_MODELS / f"{name}.onnx" for name in ("generator", "target")}}
        paths["int8"] = {name: quantize(path, calibration[name], Path(scratch))
                         for name, path in tqdm(paths["fp32"].items(), desc="quantising")}
        int8 = {name: create_session(path, settings) for name, path in paths["int8"].items()}
        profile = {f"{name} {kind}": op_ms_per_image(path, settings, images[:256], Path(scratch) / kind)
                   for kind, by_name in paths.items() for name, path in by_name.items()}
        operators = {f"{name} {kind}": optimized_operator_counts(path, settings, Path(scratch) / f"{kind}-optimized")
                     for kind, by_name in paths.items() for name, path in by_name.items()}
    accuracies = {
        f"generator {g} / target {t}": accuracy(sessions_t, perturbed(sessions_g, protector, images), labels)
        for g, sessions_g in (("fp32", fp32["generator"]), ("int8", int8["generator"]))
        for t, sessions_t in (("fp32", fp32["target"]), ("int8", int8["target"]))
    }
    batch = images[:256]
    latency = {f"{name} {kind} ms/image (batch 256)": 1e3 * median_seconds(
        lambda s=sessions[name]: run_single_output(s, batch), args.repeats) / len(batch)
        for kind, sessions in (("fp32", fp32), ("int8", int8)) for name in ("generator", "target")}
    reference = accuracies["generator fp32 / target fp32"]
    verdict = {
        name: (latency[f"{name} int8 ms/image (batch 256)"] < latency[f"{name} fp32 ms/image (batch 256)"]
               and reference - accuracies[key] <= MAX_ACCURACY_DROP)
        for name, key in (("generator", "generator int8 / target fp32"), ("target", "generator fp32 / target int8"))
    }
    result = {"bundle_sha256": protector_bundle.sha256, "cpu": cpu_model(), "threads": args.threads or "all",
              "images": len(labels), "calibration_images": args.calibration_images,
              "perturbed_accuracy": accuracies, "latency": latency, "int8_worth_shipping": verdict,
              "profile_ms_per_image_by_operator": profile, "operators_after_ort_optimisation": operators}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
