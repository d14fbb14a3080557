"""Kubernetes / CoCo manifests: schema-valid (strict), confidential runtime classes, initdata in sync."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from pmc2.runtime.paths import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.37.0"
RUNTIME_CLASSES = {"base": "kata-qemu-snp", "tdx": "kata-qemu-tdx", "coco-dev": "kata-qemu-coco-dev"}


def _load(path: Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _apply_json_patch(document: dict, operations: list[dict]) -> dict:
    """The 'replace' operations the overlays use (RFC 6902 subset)."""
    patched = copy.deepcopy(document)
    for operation in operations:
        assert operation["op"] == "replace", operation
        *parents, leaf = operation["path"].strip("/").split("/")
        node = patched
        for key in parents:
            node = node[key]
        assert leaf in node, f"{operation['path']} does not exist in the base"
        node[leaf] = operation["value"]
    return patched


def render(variant: str) -> list[dict]:
    """What `kubectl kustomize deploy/k8s/<base|overlays/variant>` produces for our overlays."""
    base = [doc for name in yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())["resources"]
            for doc in _load(K8S / "base" / name)]
    if variant == "base":
        return base
    overlay = yaml.safe_load((K8S / "overlays" / variant / "kustomization.yaml").read_text())
    assert overlay["resources"] == ["../../base"]
    documents = base
    for patch in overlay["patches"]:
        target = patch["target"]
        documents = [
            _apply_json_patch(doc, yaml.safe_load(patch["patch"]))
            if doc["kind"] == target["kind"] and doc["metadata"]["name"] == target["name"] else doc
            for doc in documents
        ]
    return documents


@pytest.mark.parametrize("variant", sorted(RUNTIME_CLASSES))
def test_manifests_are_valid_kubernetes(variant: str) -> None:
    for document in render(variant):
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("variant", sorted(RUNTIME_CLASSES))
def test_edge_runs_in_a_confidential_vm_and_cloud_does_not(variant: str) -> None:
    deployments = {d["metadata"]["name"]: d for d in render(variant) if d["kind"] == "Deployment"}
    edge = deployments["pmc2-edge"]["spec"]["template"]
    assert edge["spec"]["runtimeClassName"] == RUNTIME_CLASSES[variant]
    annotations = edge["metadata"]["annotations"]
    assert int(annotations["io.katacontainers.config.hypervisor.default_memory"]) >= 2048
    assert int(annotations["io.katacontainers.config.hypervisor.default_vcpus"]) >= 1
    assert "runtimeClassName" not in deployments["pmc2-cloud"]["spec"]["template"]["spec"]


def test_edge_gets_its_secrets_from_the_kbs_and_is_probed_over_https() -> None:
    edge = next(d for d in render("base") if d["kind"] == "Deployment" and d["metadata"]["name"] == "pmc2-edge")
    container = edge["spec"]["template"]["spec"]["containers"][0]
    uris = [arg.split("=", 1)[1] for arg in container["args"] if arg.split("=", 1)[0].endswith("-uri")]
    assert len(uris) == 5 and all(uri.startswith("kbs:///") for uri in uris)
    assert container["resources"]["limits"]["cpu"] == container["resources"]["requests"]["cpu"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"


def test_strict_validation_catches_a_misspelt_field() -> None:
    edge = copy.deepcopy(render("base")[0])
    edge["spec"]["template"]["spec"]["runtimeClassNam"] = "kata-qemu-snp"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(edge, KUBERNETES_VERSION, strict=True)


def test_initdata_annotation_matches_initdata_toml() -> None:
    spec = importlib.util.spec_from_file_location("initdata_annotation", REPO_ROOT / "deploy/coco/initdata_annotation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    edge = next(d for d in render("base") if d["metadata"]["name"] == "pmc2-edge" and d["kind"] == "Deployment")
    assert edge["spec"]["template"]["metadata"]["annotations"][module.ANNOTATION] == module.annotation_value()


def test_each_server_scales_on_cpu_and_its_queue_and_keeps_one_pod_through_disruptions() -> None:
    documents = render("base")
    for service in ("edge", "cloud"):
        name = f"pmc2-{service}"
        hpa = next(d for d in documents if d["kind"] == "HorizontalPodAutoscaler" and d["metadata"]["name"] == name)
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
        metrics = {metric["type"]: metric for metric in hpa["spec"]["metrics"]}
        assert metrics["Resource"]["resource"]["name"] == "cpu"
        assert metrics["Pods"]["pods"]["metric"]["name"] == f"pmc2_{service}_outstanding_images"
        pdb = next(d for d in documents if d["kind"] == "PodDisruptionBudget" and d["metadata"]["name"] == name)
        deployment = next(d for d in documents if d["kind"] == "Deployment" and d["metadata"]["name"] == name)
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"]
        pod = deployment["spec"]["template"]["spec"]
        assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {"kubernetes.io/hostname",
                                                                                "topology.kubernetes.io/zone"}
        container = pod["containers"][0]
        assert container["lifecycle"]["preStop"]["sleep"]["seconds"] < pod["terminationGracePeriodSeconds"]
