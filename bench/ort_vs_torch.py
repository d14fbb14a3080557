"""ORT vs torch eager latency for every exported model, the neural codec vs CompressAI, and the
machine's peak matmul rate. Each measurement runs in a fresh process of its own, torch and ORT with
the same number of intra-op threads.

    python -m pmc2.bench.ort_vs_torch [--threads 1]   # writes reports/bench/ort_vs_torch.{json,png}
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from pmc2.machine import cpu_model  # noqa: E402
from pmc2.runtime.model_bundle import ModelBundle  # noqa: E402
from pmc2.bench.torch_worker import WIDE_BASE_WIDTH, wide_generator  # noqa: E402
from pmc2.training.generator import PixelOutput, load_generator  # noqa: E402
from pmc2.export.to_onnx import to_onnx_bytes  # noqa: E402
from pmc2.runtime.paths import CHECKPOINTS, ONNX_MODELS, REPO_ROOT, REPORTS  # noqa: E402
from pmc2.value_ranges import positive_int  # noqa: E402

MODELS = ("generator", "generator_base32", "g_a", "g_s", "target", "aux")
BATCHES = (1, 16, 256)
PEAK_MATMUL = """
import time, statistics, numpy as np
n = 2048; a = np.random.rand(n, n).astype(np.float32); b = np.random.rand(n, n).astype(np.float32)
a @ b
times = []
for _ in range(10):
    t = time.perf_counter(); a @ b; times.append(time.perf_counter() - t)
print(2 * n**3 / statistics.median(times) / 1e9)
"""


def run_worker(module: str, *args: str) -> dict:
    command = [sys.executable, "-m", f"pmc2.bench.{module}", *args]
    result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=REPO_ROOT)
    return json.loads(result.stdout.strip().splitlines()[-1])


def generator_flops_per_image(model: torch.nn.Module) -> float:
    """2 × multiply-accumulates of every conv / transposed conv for one 32×32 image."""
    macs = []

    def count(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if isinstance(module, torch.nn.Conv2d):
            macs.append(output.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1])
        elif isinstance(module, torch.nn.ConvTranspose2d):
            macs.append(inputs[0].numel() * module.out_channels * module.kernel_size[0] * module.kernel_size[1])

    for layer in model.modules():
        layer.register_forward_hook(count)
    with torch.inference_mode():
        model(torch.zeros(1, 3, 32, 32))
    return 2.0 * sum(macs)


def onnx_path(models: Path, checkpoints: Path, scratch: Path, name: str) -> Path:
    if name != "generator_base32":
        return models / f"{name}.onnx"
    path = scratch / "generator_base32.onnx"
    if not path.exists():
        model = PixelOutput(wide_generator(checkpoints))
        path.write_bytes(to_onnx_bytes(model, torch.zeros(1, 3, 32, 32), "images", "perturbed"))
    return path


def benchmark(models: Path, checkpoints: Path, repeats: int, threads: int | None) -> dict:
    results: dict = {"bundle_sha256": ModelBundle.open(models).sha256, "cpu": cpu_model(), "repeats": repeats,
                     "threads": threads or "all", "models": {}, "codec": {},
                     "generator_architecture": load_generator(checkpoints / "generator.pt").architecture}
    thread_args = ["--threads", str(threads)] if threads else []
    blas_threads = {name: str(threads) for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")} if threads else {}
    results["peak_matmul_gflops"] = float(subprocess.run(
        [sys.executable, "-c", PEAK_MATMUL], capture_output=True, text=True, check=True,
        env={**os.environ, **blas_threads}).stdout)
    jobs = [(m, b) for m in MODELS for b in BATCHES]
    with tempfile.TemporaryDirectory() as scratch:
        for name, batch in tqdm(jobs, desc="models"):
            common = ["--batch", str(batch), "--repeats", str(repeats), *thread_args]
            torch_s = run_worker("torch_worker", "--model", name, "--checkpoints", str(checkpoints), *common)["seconds"]
            ort = run_worker("ort_worker", "--model", str(onnx_path(models, checkpoints, Path(scratch), name)), *common)
            assert not ort["torch_imported"], "the ORT worker imported torch"
            results["models"].setdefault(name, {})[batch] = {
                "torch_ms": 1e3 * torch_s, "ort_ms": 1e3 * ort["seconds"], "speedup": torch_s / ort["seconds"],
                "ort_ms_per_image": 1e3 * ort["seconds"] / batch,
            }
    for batch in tqdm(BATCHES, desc="codec"):
        common = ["--batch", str(batch), "--repeats", str(repeats), *thread_args]
        torch_codec = run_worker("torch_worker", "--model", "codec", "--checkpoints", str(checkpoints), *common)
        ort_codec = run_worker("ort_worker", "--codec-folder", str(models), *common)
        results["codec"][batch] = {
            f"{side}_{step}_ms_per_image": 1e3 * timing[step] / batch
            for side, timing in (("compressai", torch_codec), ("runtime", ort_codec)) for step in ("encode", "decode")
        }
        for step in ("encode", "decode"):
            results["codec"][batch][f"{step}_speedup"] = torch_codec[step] / ort_codec[step]
    for name, model in (("generator", load_generator(checkpoints / "generator.pt")),
                        ("generator_base32", wide_generator(checkpoints))):
        flops = generator_flops_per_image(model)
        seconds = results["models"][name][256]["ort_ms"] / 1e3
        results["models"][name]["gflops_per_image"] = flops / 1e9
        results["models"][name]["achieved_gflops_batch256"] = flops * 256 / seconds / 1e9
    results["edge_ms_per_image_batch256_base32"] = (
        results["models"]["generator_base32"][256]["ort_ms_per_image"] + results["codec"][256]["runtime_encode_ms_per_image"]
    )
    return results


def plot(results: dict, path: Path) -> None:
    names = list(results["models"])
    figure, axes = plt.subplots(1, len(BATCHES), figsize=(5 * len(BATCHES), 4))
    for axis, batch in zip(axes, BATCHES):
        torch_ms = [results["models"][n][batch]["torch_ms"] for n in names]
        ort_ms = [results["models"][n][batch]["ort_ms"] for n in names]
        positions = range(len(names))
        axis.bar([p - 0.2 for p in positions], torch_ms, 0.4, label="torch eager")
        axis.bar([p + 0.2 for p in positions], ort_ms, 0.4, label="onnxruntime")
        axis.set_xticks(list(positions), names, rotation=30, ha="right")
        axis.set_yscale("log")
        axis.set_title(f"batch {batch}: median ms per call")
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def format_table(results: dict) -> str:
    lines = [f"{'model':<18}{'batch':>6}{'torch ms':>11}{'ORT ms':>10}{'speed-up':>10}"]
    for name, by_batch in results["models"].items():
        for batch in BATCHES:
            row = by_batch[batch]
            lines.append(f"{name:<18}{batch:>6}{row['torch_ms']:>11.2f}{row['ort_ms']:>10.2f}{row['speedup']:>9.2f}x")
    for batch, row in results["codec"].items():
        lines.append(
            f"neural codec b{batch}: encode {row['compressai_encode_ms_per_image']:.3f} → {row['runtime_encode_ms_per_image']:.3f} "
            f"ms/img ({row['encode_speedup']:.2f}x), decode {row['compressai_decode_ms_per_image']:.3f} → "
            f"{row['runtime_decode_ms_per_image']:.3f} ms/img ({row['decode_speedup']:.2f}x)")
    lines.append(f"peak matmul {results['peak_matmul_gflops']:.1f} GFLOP/s; generator (base {WIDE_BASE_WIDTH}) achieves "
                 f"{results['models']['generator_base32']['achieved_gflops_batch256']:.1f} GFLOP/s at batch 256")
    lines.append(f"edge compute per image (base-{WIDE_BASE_WIDTH} generator + g_a + rANS, batch 256): "
                 f"{results['edge_ms_per_image_batch256_base32']:.3f} ms")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ONNX_MODELS)
    parser.add_argument("--checkpoints", type=Path, default=CHECKPOINTS)
    parser.add_argument("--repeats", type=positive_int, default=20)
    parser.add_argument("--threads", type=positive_int, default=None, help="intra-op threads of both runtimes (default: all CPUs)")
    parser.add_argument("--out", type=Path, default=REPORTS / "bench")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = benchmark(args.models, args.checkpoints, args.repeats, args.threads)
    (args.out / "ort_vs_torch.json").write_text(json.dumps(results, indent=2) + "\n")
    plot(results, args.out / "ort_vs_torch.png")
    print(format_table(results))


if __name__ == "__main__":
    main()
