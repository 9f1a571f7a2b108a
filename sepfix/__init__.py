"""sepfix: find and repair mangled depthwise-separable convolutions in ONNX models.

    import sepfix
    findings = sepfix.check("model.onnx")          # or a ModelProto
    for f in findings:
        print(f.code, f.name, f.location, f.message, f.fixable)
    repaired, report = sepfix.repair(model)       # in memory, validated, nothing written
"""

from sepfix.errors import SepfixError
from sepfix.findings import Finding

__version__ = "0.2.0"  # the one place the version is written (pyproject reads it)
__all__ = ["check", "repair", "Finding", "SepfixError", "__version__"]


def check(model, select=None, ignore=None, advice=False):
    """Findings for a model path or ModelProto; see `sepfix.checker.check`."""
    from sepfix.checker import check as _check

    return _check(model, select=select, ignore=ignore, advice=advice)


def repair(model, select=None, ignore=None, validate=True, rtol=None, atol=None, input_shapes=None, inputs=None,
           unsafe_fixes=False):
    """Repair a model path or ModelProto in memory and prove it; returns (ModelProto, report).

    The model comes back unchanged (the same object) when nothing needed fixing;
    `report.validation.passed` says whether onnxruntime (or the numpy reference, for an invalid
    original) found the outputs equal within rtol/atol (defaults 1e-4 / 1e-5). Nothing is written.
    With `validate=False` only safe (bit-exact) fixes apply, unless `unsafe_fixes=True`.
    """
    from sepfix.repairer import RepairOptions, repair as _repair

    options = RepairOptions(select=select, ignore=ignore, validate=validate, rtol=rtol, atol=atol,
                            input_shapes=input_shapes, inputs=inputs, unsafe_fixes=unsafe_fixes)
    return _repair(model, options)
