"""The fuzz and soak benchmarks, small: real edge and cloud processes on loopback with TLS."""

from __future__ import annotations

from pathlib import Path

from pmc2.bench import fuzz_servers, serving, soak


def test_generated_requests_never_get_a_5xx_and_good_ones_stay_right(tmp_path: Path) -> None:
    results = fuzz_servers.run(300, tmp_path)
    for endpoint in ("edge /v1/recognize", "cloud /v1/classify"):
        figures = results[endpoint]
        assert figures["requests"] == 300, endpoint
        assert figures["responses_5xx"] == 0, figures["first_5xx"]
        assert figures["non_json_error_bodies"] == 0
        assert figures["good_requests"] >= 30 and figures["good_requests_wrong"] == 0
        assert len(figures["statuses"]) >= 3  # the generator reaches several kinds of answer, not one
    assert results["ready_after"] == {"edge": True, "cloud": True}
    assert all(results["processes_alive_after"].values())


def test_soak_counts_errors_and_measures_memory(tmp_path: Path) -> None:
    results = soak.run(requests=400, warmup=100, concurrency=8, workdir=tmp_path)
    assert results["requests"] == 400 and results["errors"] == 0, results["first_error"]
    assert all(value > 10 for value in results["rss_mib_before"].values())
    assert set(results["rss_growth_percent"]) == {"edge", "cloud"}
    assert all(results["processes_alive_after"].values())


def test_serving_benchmark_reports_served_against_bound_and_overload(tmp_path: Path) -> None:
    results = serving.run(requests=80, workdir=tmp_path)
    assert [run["concurrency"] for run in results["runs"]] == list(serving.CONCURRENCIES)
    for run in results["runs"]:
        assert run["errors"] == 0 and run["images_per_s"] > 0 and 0 < run["load_generator_cores"] < results["cores"]
        assert sum(run["batch_sizes"].values()) == 80 and run["bound_images_per_s"] > 0
        assert 0 < run["served_over_bound"] < 1.5
    assert max(max(run["batch_sizes"]) for run in results["runs"]) > 1  # concurrency forms batches
    overload = results["overload"]
    assert overload["errors"] > 0 and "503" in overload["first_error"]
