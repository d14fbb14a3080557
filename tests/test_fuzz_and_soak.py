"""The fuzz and soak benchmarks, small: real edge and cloud processes on loopback with TLS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings

from pmc2.bench import fuzz_servers, serving, soak
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.paths import REPORTS

FUZZED_ROUTES = ("edge /v1/recognize", "edge /v1/inspect", "cloud /v1/classify", "cloud /v1/split/facemix")
# committed benchmark results and the command that regenerates each
BENCHMARKS_OF_THE_BUNDLE = {"fuzz.json": "pmc2.bench.fuzz_servers", "soak.json": "pmc2.bench.soak",
                     "serving.json": "pmc2.bench.serving", "int8.json": "pmc2.bench.int8_quantization",
                     "ort_vs_torch.json": "pmc2.bench.ort_vs_torch"}
# Served throughput may exceed the compute bound by this factor only: the bound times each batch as the fastest
# of ten runs, which repeated measurements reproduce within ~2% even beside a busy core.
BOUND_NOISE = 1.05


def test_generated_requests_never_get_a_5xx_and_good_ones_stay_right(tmp_path: Path) -> None:
    results = fuzz_servers.run(300, tmp_path)
    assert [key for key in results if key.startswith(("edge /", "cloud /"))] == list(FUZZED_ROUTES)
    for route in FUZZED_ROUTES:
        figures = results[route]
        assert figures["requests"] == 300, route
        assert figures["responses_5xx"] == 0, figures["first_5xx"]
        assert figures["non_json_error_bodies"] == 0, route
        assert figures["good_requests"] >= 30 and figures["good_requests_wrong"] == 0, route
        assert len(figures["statuses"]) >= 3, route  # the generator reaches several kinds of answer, not one
    assert results["ready_after"] == {"edge": True, "cloud": True}
    assert all(results["processes_alive_after"].values())
    assert results["bundle_sha256"] == ModelBundle.open().sha256


def test_fuzzed_queries_reach_every_parameter_the_edge_reads() -> None:
    seen: list[str] = []

    @settings(max_examples=300, database=None)
    @given(fuzz_servers.queries())
    def collect(query: str) -> None:
        seen.append(query)

    collect()
    assert any("codec=" in query and "protector=" in query for query in seen)
    assert any(query.count("&") >= 2 for query in seen) and "" in seen


@pytest.mark.parametrize("name", sorted(BENCHMARKS_OF_THE_BUNDLE))
def test_committed_benchmark_measured_the_shipped_bundle(name: str) -> None:
    recorded = json.loads((REPORTS / "bench" / name).read_text())
    assert recorded.get("bundle_sha256") == ModelBundle.open().sha256, (
        f"reports/bench/{name} measured another bundle; rerun `python -m {BENCHMARKS_OF_THE_BUNDLE[name]}`")


def test_soak_counts_errors_and_measures_memory(tmp_path: Path) -> None:
    results = soak.run(requests=400, warmup=100, concurrency=8, workdir=tmp_path)
    assert results["requests"] == 400 and results["errors"] == 0, results["first_error"]
    assert all(value > 10 for value in results["rss_mib_before"].values())
    assert set(results["rss_growth_percent"]) == {"edge", "cloud"}
    assert all(results["processes_alive_after"].values())
    assert results["accuracy"] > 80 and results["bundle_sha256"] == ModelBundle.open().sha256


def test_serving_benchmark_reports_served_against_bound_and_overload(tmp_path: Path) -> None:
    results = serving.run(requests=80, workdir=tmp_path)
    assert [run["concurrency"] for run in results["runs"]] == list(serving.CONCURRENCIES)
    for run in results["runs"]:
        assert run["errors"] == 0 and run["images_per_s"] > 0 and 0 < run["load_generator_cores"] < results["cores"]
        assert sum(run["batch_sizes"].values()) == 80 and run["bound_images_per_s"] > 0
        assert 0 < run["served_over_bound"] <= BOUND_NOISE, run  # the bound is one: nothing serves faster
    assert max(max(run["batch_sizes"]) for run in results["runs"]) > 1  # concurrency forms batches
    overload = results["overload"]
    assert overload["errors"] > 0 and "503" in overload["first_error"]
