"""Can what the cloud received be tied to one picture among others of the same class?

Two attackers, both nearest-candidate rules in a space of their choice:
  "inverse"  compares the inverse network's reconstruction with each candidate original;
  "view"     runs each candidate through the known models itself and compares the views.
Two-choice game: the received view of image a, candidates a and b, where b is a random image for which the
cloud returns the same label as for a (the cloud learns the label by design, so a pair it labels alike is
what knowing the label cannot split); 50 % is no leakage beyond the label. Rank-1 re-identification: the true original among it and 999 same-class distractors;
0.1 % is no leakage.
"""

from __future__ import annotations

import torch


def _squared_distances(queries: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """[Q, K] squared L2 distances between flattened queries [Q, ...] and candidates [K, ...], computed
    directly: cdist's matrix-product shortcut leaves identical vectors a small non-zero distance apart, which
    would let exact ties (two images with the same view) look like a match."""
    return torch.cdist(queries.flatten(1).float(), candidates.flatten(1).float(),
                       compute_mode="donot_use_mm_for_euclid_dist").pow(2)


def two_choice_success(queries: torch.Tensor, true: torch.Tensor, other: torch.Tensor) -> float:
    """% of rows where the query is nearer its true candidate than the other one (ties count half)."""
    to_true = (queries - true).flatten(1).pow(2).sum(1)
    to_other = (queries - other).flatten(1).pow(2).sum(1)
    return 100.0 * float(((to_true < to_other).float() + 0.5 * (to_true == to_other).float()).mean())


def same_class_partners(labels: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each index, a random other index with the same label (itself when it is its label's only one)."""
    partners = torch.arange(len(labels))
    for label in labels.unique():
        members = (labels == label).nonzero().flatten()
        if len(members) < 2:
            continue
        shift = torch.randint(1, len(members), (len(members),), generator=generator)
        partners[members] = members[(torch.arange(len(members)) + shift) % len(members)]
    return partners


def rank1_reidentification(queries: torch.Tensor, true: torch.Tensor, query_labels: torch.Tensor,
                           distractors: torch.Tensor, distractor_labels: torch.Tensor, count: int = 999,
                           generator: torch.Generator | None = None) -> float:
    """% of queries whose true candidate is nearer than all ``count`` same-class distractors (ties fail)."""
    hits = 0
    for label in query_labels.unique():
        rows = (query_labels == label).nonzero().flatten()
        pool = (distractor_labels == label).nonzero().flatten()
        chosen = pool[torch.randperm(len(pool), generator=generator)[:count]]
        to_distractors = _squared_distances(queries[rows], distractors[chosen])
        to_true = (queries[rows] - true[rows]).flatten(1).pow(2).sum(1)
        hits += int((to_true < to_distractors.min(1).values).sum())
    return 100.0 * hits / len(queries)
