"""The one place sepfix imports ONNX Runtime.

onnxruntime is not a base dependency: `onnxruntime` (CPU) and `onnxruntime-gpu` both install
the same `onnxruntime` package, so a base install that pulled one in would fight whichever the
user already has. `pip install "sepfix[cpu]"` or `"sepfix[gpu]"` picks one; `sepfix check`
needs neither. Everything that runs a model (the repair's proof, `sepfix validate`) gets the
module from `onnxruntime()`, which explains a missing runtime as a one-line SepfixError.
"""

from __future__ import annotations

from types import ModuleType

from sepfix.errors import SepfixError

INSTALL_HINT = ('install ONNX Runtime with `pip install "sepfix[cpu]"` (CPU) or `pip install "sepfix[gpu]"` '
                "(CUDA/TensorRT; never both: they share the `onnxruntime` package)")


def onnxruntime(purpose: str = "this command") -> ModuleType:
    """The `onnxruntime` module, or a SepfixError naming the extra to install."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        detail = "" if exc.name == "onnxruntime" else f" ({exc})"
        raise SepfixError(f"{purpose} needs ONNX Runtime, which is not installed{detail}: {INSTALL_HINT}") from None
    return ort


def pybind_state() -> ModuleType:
    """`onnxruntime.capi.onnxruntime_pybind11_state`: the exception classes of onnxruntime's C++ layer."""
    onnxruntime()
    from onnxruntime.capi import onnxruntime_pybind11_state

    return onnxruntime_pybind11_state


def available() -> bool:
    """Whether onnxruntime imports here (without raising)."""
    try:
        onnxruntime()
    except SepfixError:
        return False
    return True
