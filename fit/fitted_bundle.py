"""A fitted bundle measured as the report measures the shipped ones, with the target answering through its access.

    evaluation images ──phone JPEG (S1)──▶ the bundle's edge (onnxruntime: generator, g_a, rANS) ──▶ link payloads
        ──the cloud's decode (PNG, or rANS + g_s)──▶ x̂ ──the target's access (uint8 images)──▶ labels

With a latent codebook the cloud decodes one of ten images, so a black-box target is asked about ten images and
its cache answers the rest. The attacks are the report's (``evaluation.privacy.attack_view``) on the neural
view, the label the attacker learns being the target's answer for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from pmc2.evaluation import plots
from pmc2.evaluation.inverse_attack import InverseAttackConfig
from pmc2.evaluation.judges import JUDGES, load_judges
from pmc2.evaluation.privacy import GRID_IMAGES, PrivacyConfig, attack_view
from pmc2.evaluation.privacy_goals import Goals, verdicts
from pmc2.fit.access import TargetAccess
from pmc2.runtime.cifar10 import LabelledImages, load_split
from pmc2.runtime.edge_protection import EdgeProtector
from pmc2.runtime.image_codecs import jpeg_bytes, through_phone_jpeg
from pmc2.runtime.link_codecs import NeuralBatchLink
from pmc2.runtime.model_bundle import ModelBundle
from pmc2.runtime.normalization import to_uint8_nhwc
from pmc2.runtime.protection import DEFAULT_PROTECTOR
from pmc2.runtime.sessions import SessionSettings
from pmc2.training.classifiers import load_classifier
from pmc2.training.data import as_tensors, class_mean_images, to_unit

CHUNK = NeuralBatchLink.evaluated_images_per_stream  # the edge's largest micro-batch
LINKS = ("png", "neural", "neural-batch")
VIEW = "neural"


def edge_of(folder: Path) -> EdgeProtector:
    return EdgeProtector(ModelBundle.open(folder), SessionSettings(), jpeg_quality=90, webp_quality=None)


def through_link(edge: EdgeProtector, received: np.ndarray, link: str) -> tuple[torch.Tensor, list[int]]:
    """What the cloud decodes from ``link`` for the edge's received images ([0, 1] NCHW), and each chunk's
    payload sizes (one per image, or one per chunk for a one-stream link)."""
    decoded, sizes = [], []
    for start in range(0, len(received), CHUNK):
        chunk = received[start : start + CHUNK]
        payloads = edge.protect(chunk, link, DEFAULT_PROTECTOR).batch.payloads
        sizes += [len(payload) for payload in payloads]
        decoded.append(torch.from_numpy(edge.link(link, DEFAULT_PROTECTOR).decode(payloads, len(chunk))))
    return torch.cat(decoded), sizes


def _accuracy(access: TargetAccess, images_uint8: np.ndarray, labels: np.ndarray) -> float:
    return 100.0 * float(np.mean(access.labels(images_uint8) == labels))


def bundle_row(folder: Path, access: TargetAccess, evaluation: LabelledImages, phone_quality: int) -> dict:
    """Table 3's row of the bundle in ``folder``: S1, then each link's bytes per image and accuracy."""
    edge = edge_of(folder)
    received = through_phone_jpeg(evaluation.images, phone_quality)
    row = {"images": len(evaluation), "phone_quality": phone_quality,
           "s1": {"bytes_mean": float(np.mean([len(jpeg_bytes(image, phone_quality)) for image in evaluation.images])),
                  "accuracy": _accuracy(access, received, evaluation.labels)}}
    for link in LINKS:
        decoded, sizes = through_link(edge, received, link)
        seen = to_uint8_nhwc(decoded.numpy())
        row[link] = {"bytes_mean": sum(sizes) / len(evaluation), "accuracy": _accuracy(access, seen, evaluation.labels),
                     "distinct_decoded_images": len(np.unique(seen.reshape(len(seen), -1), axis=0))}
    return row


def bundle_attacks(folder: Path, access: TargetAccess, evaluation: LabelledImages, settings, cache: Path) -> dict:
    """The report's attacks on the neural view of the bundle in ``folder``; ``settings``: the run's FitSettings
    (data, aux, attacker_images, attack_epochs, phone_quality, seed; the inverse network trains with the
    end-to-end training's bf16 choice)."""
    edge = edge_of(folder)
    public_all = load_split(settings.data, "train")
    order = np.random.default_rng(settings.seed).permutation(len(public_all))[: settings.attacker_images]
    public = public_all.subset(order)
    views = {name: through_link(edge, through_phone_jpeg(images.images, settings.phone_quality), VIEW)[0]
             for name, images in (("evaluation", evaluation), ("public", public))}
    config = PrivacyConfig(attacker_images=settings.attacker_images, phone_quality=settings.phone_quality,
                           inverse=InverseAttackConfig(epochs=settings.attack_epochs, bf16=settings.end_to_end.bf16),
                           seed=settings.seed, cache=cache)
    images, labels = as_tensors(evaluation)
    public_images, public_labels = as_tensors(public)
    context = {
        "originals": to_unit(images), "labels": labels, "public_originals": to_unit(public_images),
        "public_labels": public_labels, "judges": load_judges(JUDGES), "aux": load_classifier(settings.aux),
        "config": config, "cache": cache, "class_means": class_mean_images(*as_tensors(public_all)),
        "cloud_labels": lambda view: torch.from_numpy(access.labels(to_uint8_nhwc(view.numpy()))),
        "key": {"bundle_sha256": ModelBundle.open(folder).sha256, "public_images_sha256": public.sha256(),
                "phone_quality": settings.phone_quality},
        "view": VIEW,
    }
    result = attack_view(views["evaluation"], views["public"], context)
    rows = {"original": context["originals"][:GRID_IMAGES], "what the cloud decodes": views["evaluation"][:GRID_IMAGES],
            "inverse attack": result.pop("_reconstructed"), "label-only baseline": result.pop("_label_only")}
    cache.mkdir(parents=True, exist_ok=True)
    plots.image_grid({title: to_uint8_nhwc(images.numpy()) for title, images in rows.items()}, cache / "attack_grid.png")
    result["goals_met"] = verdicts(result, Goals())
    return result
