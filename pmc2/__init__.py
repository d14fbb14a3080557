"""PMC²: privacy-preserving mobile-cloud image recognition.

The repository's top-level folders are installed as sub-packages of this
namespace (see ``setup.cfg``): ``pmc2.export`` (torch: data, models, training,
ONNX export), ``pmc2.runtime`` (torch-free inference), ``pmc2.edge_server`` and
``pmc2.cloud_server``.
"""

__version__ = "0.1.0"
