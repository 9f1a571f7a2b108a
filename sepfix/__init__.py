"""sepfix: find and repair mangled depthwise-separable convolutions in ONNX models.

    import sepfix
    findings = sepfix.check("model.onnx")          # or a ModelProto
    for f in findings:
        print(f.code, f.name, f.location, f.message, f.fixable)
"""

from sepfix.errors import SepfixError
from sepfix.findings import Finding

__version__ = "0.1.0"
__all__ = ["check", "Finding", "SepfixError", "__version__"]


def check(model, select=None, ignore=None, advice=False):
    """Findings for a model path or ModelProto; see `sepfix.checker.check`."""
    from sepfix.checker import check as _check

    return _check(model, select=select, ignore=ignore, advice=advice)
