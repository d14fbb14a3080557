"""The PMC² evaluation report: bandwidth and accuracy per edge→cloud codec, rate–accuracy curves,
batched bitstreams, privacy metrics and per-stage latency, regenerated from the shipped models.

    python -m pmc2.evaluation [--data DIR] [--limit N] [--out reports/evaluation]
"""
