"""onnxruntime CPU sessions configured for a (confidential) container."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from pmc2.runtime.cpu_budget import available_cpus
from pmc2.value_ranges import POSITIVE, check_fields

_OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


@dataclass(frozen=True)
class SessionSettings:
    """Defaults: intra-op threads = CPUs available to the process, one inter-op thread,
    no busy-wait spinning, full graph optimisation, no cached optimised model."""

    intra_op_threads: int | None = None
    inter_op_threads: int = 1
    allow_spinning: bool = False
    optimization: str = "all"
    optimized_model_dir: Path | None = None
    profile_prefix: Path | None = None  # ORT writes a per-node timing profile here (benchmarks only)

    def __post_init__(self) -> None:
        if self.optimization not in _OPTIMIZATION_LEVELS:
            raise ValueError(f"optimization must be one of {', '.join(_OPTIMIZATION_LEVELS)}")
        check_fields(self, {"intra_op_threads": POSITIVE, "inter_op_threads": POSITIVE})

    def session_options(self, model_path: Path) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads or available_cpus()
        options.inter_op_num_threads = self.inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = _OPTIMIZATION_LEVELS[self.optimization]
        spin = "1" if self.allow_spinning else "0"
        options.add_session_config_entry("session.intra_op.allow_spinning", spin)
        options.add_session_config_entry("session.inter_op.allow_spinning", spin)
        if self.optimized_model_dir is not None:
            self.optimized_model_dir.mkdir(parents=True, exist_ok=True)
            options.optimized_model_filepath = str(self.optimized_model_dir / f"{model_path.stem}.optimized.onnx")
        if self.profile_prefix is not None:
            options.enable_profiling = True
            options.profile_file_prefix = str(self.profile_prefix)
        return options


def create_session(model: Path | bytes, settings: SessionSettings = SessionSettings(), name: str = "model"):
    """A CPU InferenceSession from a file path or from model bytes held in memory."""
    path = model if isinstance(model, Path) else Path(name)
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, sess_options=settings.session_options(path), providers=["CPUExecutionProvider"])
