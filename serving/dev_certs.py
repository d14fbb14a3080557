"""Create a development CA plus server and client certificates for localhost (trustme).

    python -m pmc2.serving.dev_certs --out certs
    → ca.pem, edge.pem (cert+key), cloud.pem (cert+key), edge-client.pem (for mutual TLS edge→cloud),
      fitter.pem (a black-box fitter's client certificate for the cloud's /v1/classify: ``python -m pmc2.fit``)
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import trustme


@dataclass(frozen=True)
class DevCertificates:
    ca: Path
    edge: Path
    cloud: Path
    edge_client: Path
    fitter: Path


def create_dev_certificates(out: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")) -> DevCertificates:
    out.mkdir(parents=True, exist_ok=True)
    authority = trustme.CA(organization_name="PMC2 development CA")
    paths = DevCertificates(out / "ca.pem", out / "edge.pem", out / "cloud.pem", out / "edge-client.pem",
                            out / "fitter.pem")
    authority.cert_pem.write_to_path(str(paths.ca))
    clients = ((paths.edge_client, ("pmc2-edge",)), (paths.fitter, ("pmc2-fitter",)))  # their own subjects
    for path, names in ((paths.edge, hosts), (paths.cloud, hosts), *clients):
        authority.issue_cert(*names).private_key_and_cert_chain_pem.write_to_path(str(path))
        path.chmod(0o600)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("certs"))
    parser.add_argument("--hosts", default="localhost,127.0.0.1,::1", help="comma-separated DNS names / IPs")
    args = parser.parse_args()
    paths = create_dev_certificates(args.out, tuple(args.hosts.split(",")))
    print("wrote " + ", ".join(str(path) for path in vars(paths).values()))


if __name__ == "__main__":
    main()
