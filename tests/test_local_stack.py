"""The local stack the demo and the serving benchmark use: real server processes, their memory reported,
and never left running once the process that started them is gone."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest

from pmc2.serving.local_stack import free_port, local_stack

SERVE_PAGE = "import sys; from pmc2.demo.__main__ import serve_page; serve_page(int(sys.argv[1]))"


def test_the_local_stack_reports_each_servers_peak_memory(tmp_path: Path) -> None:
    with local_stack(tmp_path) as stack:
        assert stack.alive() == {"cloud": True, "edge": True}
        peaks = stack.peak_memory_mib()
    assert set(peaks) == {"cloud", "edge"}
    # a Python process with onnxruntime and the models loaded holds tens of MiB, far below a pod's GiB
    assert all(30 < mib < 2048 for mib in peaks.values()), peaks


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state, ppid, ...); None once the process is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def _servers_of(parent: int) -> dict[int, int]:
    """pid → listening port of each child of ``parent`` (read from its ``--port`` argument)."""
    servers = {}
    for entry in Path("/proc").iterdir():
        fields = _stat(int(entry.name)) if entry.name.isdigit() else None
        if fields and int(fields[1]) == parent:
            argv = Path(f"/proc/{entry.name}/cmdline").read_text().split("\0")
            servers[int(entry.name)] = int(argv[argv.index("--port") + 1])
    return servers


def _running(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] != "Z"


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a new server would: TIME_WAIT does not count
        try:
            probe.bind(("127.0.0.1", port))
            probe.listen()
        except OSError:
            return False
    return True


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the parent-death signal is Linux's")
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL], ids=lambda stop: stop.name)
def test_the_served_demo_takes_its_servers_down_when_it_is_stopped(tmp_path: Path, stop: signal.Signals) -> None:
    demo = subprocess.Popen([sys.executable, "-u", "-c", SERVE_PAGE, str(free_port())], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output = []
        for line in demo.stdout:
            output.append(line)
            if line.startswith("The edge's page:"):
                break
        else:
            pytest.fail("the demo stopped before serving:\n" + "".join(output))
        servers = _servers_of(demo.pid)
        assert len(servers) == 2, servers
        os.kill(demo.pid, stop)
        # SIGTERM/SIGHUP unwind the demo (exit status 128 + signal); SIGKILL leaves it to the parent-death signal
        assert demo.wait(timeout=30) == (-stop if stop == signal.SIGKILL else 128 + stop)
        deadline = time.monotonic() + 15
        while any(map(_running, servers)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(_running, servers)), f"servers outlived the demo: {servers}"
        assert all(map(_port_is_free, servers.values())), servers
    finally:
        with suppress(ProcessLookupError):
            os.killpg(demo.pid, signal.SIGKILL)  # its session: the demo and anything left of its servers
        demo.wait()
        demo.stdout.close()
