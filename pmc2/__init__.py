"""PMC²: privacy-preserving mobile-cloud image recognition.

The repository's top-level folders are installed as sub-packages of this namespace (see ``setup.cfg``); each
imports only the ones below it in the layer order of README.md ("Layers", checked by tests/test_source_rules.py).
The namespace itself holds what every layer may use: ``value_ranges`` and ``machine``.
"""

__version__ = "0.1.0"
