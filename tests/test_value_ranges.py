"""Numbers out of range are refused where they come in, naming the argument or field, before anything starts."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pmc2.cloud_server.config import CloudConfig
from pmc2.edge_server.config import EdgeConfig
from pmc2.mobile_client.run import run_mode
from pmc2.runtime.cifar10 import load_evaluation
from pmc2.runtime.image_codecs import jpeg_bytes
from pmc2.runtime.sessions import SessionSettings
from pmc2.value_ranges import JPEG_QUALITY, POSITIVE, Range, positive_float, positive_int


def test_a_range_holds_its_ends_only_as_told_and_never_a_non_finite_number() -> None:
    assert 1 in JPEG_QUALITY and 100 in JPEG_QUALITY and 0 not in JPEG_QUALITY and 101 not in JPEG_QUALITY
    assert 1e-9 in POSITIVE and 0 not in POSITIVE
    assert float("nan") not in Range() and float("inf") not in Range(0)


@pytest.mark.parametrize("parse, text, message", [
    (positive_int, "0", "0 is not > 0"), (positive_int, "2.5", "'2.5' is not an integer"),
    (positive_float, "nan", "nan is not > 0"), (positive_float, "fast", "'fast' is not a number"),
])
def test_an_argument_type_names_the_value_and_its_range(parse, text, message) -> None:
    with pytest.raises(Exception, match=message):
        parse(text)
    assert positive_int("7") == 7 and positive_float("0.5") == 0.5


@pytest.mark.parametrize("command, argument", [
    (["pmc2.demo", "--concurrency", "0"], "--concurrency"),
    (["pmc2.demo", "--limit", "-3"], "--limit"),
    (["pmc2.mobile_client", "--ca", "ca.pem", "--jpeg-quality", "150"], "--jpeg-quality"),
    (["pmc2.edge_server", "--max-batch-size", "0"], "--max-batch-size"),
    (["pmc2.cloud_server", "--cert", "cloud.pem", "--threads", "0"], "--threads"),
    (["pmc2.cloud_server", "--cert", "cloud.pem", "--max-queued-images", "0"], "--max-queued-images"),
    (["pmc2.cloud_server", "--cert", "cloud.pem", "--max-wait-ms", "-1"], "--max-wait-ms"),
    (["pmc2.evaluation", "--limit", "0"], "--limit"),
])
def test_the_commands_refuse_a_number_out_of_range(command: list[str], argument: str, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, timeout=120,
                            cwd=tmp_path)
    assert result.returncode == 2 and f"argument {argument}:" in result.stderr, result.stderr[-1000:]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("make_config, field", [
    (lambda: EdgeConfig(allow_unauthenticated=True, max_batch_size=0), "max_batch_size"),
    (lambda: EdgeConfig(allow_unauthenticated=True, jpeg_quality=0), "jpeg_quality"),
    (lambda: EdgeConfig(allow_unauthenticated=True, webp_quality=101), "webp_quality"),
    (lambda: EdgeConfig(allow_unauthenticated=True, cloud_timeout_s=0.0), "cloud_timeout_s"),
    (lambda: CloudConfig(max_wait_ms=-1.0), "max_wait_ms"),
    (lambda: CloudConfig(max_queued_images=0), "max_queued_images"),
    (lambda: SessionSettings(intra_op_threads=0), "intra_op_threads"),
])
def test_a_configuration_names_its_field_out_of_range(make_config, field: str) -> None:
    with pytest.raises(ValueError, match=f"{field} must be"):
        make_config()


def test_the_phone_refuses_a_jpeg_quality_pillow_would_clamp() -> None:
    pixels = np.zeros((32, 32, 3), np.uint8)
    with pytest.raises(ValueError, match="JPEG quality must be"):
        jpeg_bytes(pixels, 150)
    assert jpeg_bytes(pixels, 100)[:2] == b"\xff\xd8"


def test_a_run_with_no_request_in_flight_is_refused_instead_of_waiting_forever() -> None:
    with pytest.raises(ValueError, match="concurrency must be"):
        asyncio.run(run_mode(None, "pmc2", load_evaluation(None).subset(slice(0, 2)), None, concurrency=0))
