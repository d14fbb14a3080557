"""The PMC² paper's (NOSSDAV'25) published numbers per target, keyed by our classifier registry's names.

    Table 2: target → (auxiliary model, target accuracy on the perturbed original images)
    Table 3: target → link codec (by its registry name) → (S1 bytes, S2 bytes, accuracy), 5,000 evaluation images

Used to print the paper's row beside ours for the same target; never used to compute anything of ours.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperLink:
    s1_bytes: float
    s2_bytes: float
    accuracy: float


@dataclass(frozen=True)
class PaperTarget:
    aux: str
    perturbed_accuracy: float  # Table 2: the target on the generator's output of the uncompressed image
    links: dict[str, PaperLink]


def _target(aux: str, perturbed_accuracy: float, png: PaperLink, jpeg: PaperLink, neural: PaperLink) -> PaperTarget:
    return PaperTarget(aux, perturbed_accuracy, {"png": png, "jpeg": jpeg, "neural": neural})


PAPER_TARGETS: dict[str, PaperTarget] = {
    "vgg13_bn": _target("resnet18", 91.52, PaperLink(1642.45, 2691.38, 90.30), PaperLink(1854.95, 1848.42, 90.22),
                        PaperLink(1642.45, 8.16, 90.40)),
    "vgg16_bn": _target("resnet18", 91.94, PaperLink(1509.06, 2599.11, 90.06), PaperLink(1572.23, 1984.75, 90.14),
                        PaperLink(1509.06, 8.01, 90.06)),
    "resnet18": _target("vgg13_bn", 91.62, PaperLink(1509.06, 2544.70, 90.22), PaperLink(1509.06, 1861.48, 90.24),
                        PaperLink(1509.06, 8.12, 90.20)),
    "resnet34": _target("resnet18", 91.54, PaperLink(1572.23, 2576.23, 90.04), PaperLink(1726.20, 1943.05, 90.12),
                        PaperLink(1642.45, 8.19, 90.42)),
    "densenet121": _target("resnet18", 91.38, PaperLink(1572.23, 2794.40, 90.48),
                           PaperLink(1642.45, 2042.20, 90.38), PaperLink(1572.23, 8.29, 90.42)),
    "mobilenet_v2": _target("vgg13_bn", 91.82, PaperLink(1509.06, 2636.92, 90.20),
                            PaperLink(1572.23, 2113.56, 90.26), PaperLink(1572.23, 8.35, 90.58)),
    "googlenet": _target("resnet18", 91.22, PaperLink(1572.23, 2796.73, 90.00), PaperLink(1726.20, 1891.50, 90.32),
                         PaperLink(1726.20, 8.00, 90.42)),
    "inception_v3": _target("googlenet", 91.86, PaperLink(1509.06, 3170.88, 90.32),
                            PaperLink(1509.06, 2390.50, 90.04), PaperLink(1572.23, 8.00, 90.36)),
}
