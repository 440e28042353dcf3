"""diffpy-cbldm: nanostructure solution from PDF data.

Public names are imported lazily so that ``import diffpy_cbldm`` stays
light (no torch, no srfit) until they are used.
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "CbLDMGenerator": "diffpy_cbldm.generator",
    "LibraryGenerator": "diffpy_cbldm.library",
    "PDFSettings": "diffpy_cbldm.pdf.settings",
    "DebyePDFCalculator": "diffpy_cbldm.pdf.debye",
    "load_pdf": "diffpy_cbldm.pdf.datafile",
    "PDFData": "diffpy_cbldm.pdf.datafile",
    "rw": "diffpy_cbldm.pdf.rw",
    "refine_cluster": "diffpy_cbldm.refine",
    "RefinementResult": "diffpy_cbldm.refine",
    "laplacian": "diffpy_cbldm.clusters.laplacian",
    "positions_from_laplacian": "diffpy_cbldm.clusters.laplacian",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'diffpy_cbldm' has no attribute {name!r}")


def __dir__():
    return __all__
