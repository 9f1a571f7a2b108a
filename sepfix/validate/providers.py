"""Choose an onnxruntime execution provider and report, honestly, which one actually ran.

onnxruntime treats the provider list as a wish: a provider missing from the build is skipped
with a warning, and onnxruntime-gpu lists ``TensorrtExecutionProvider`` even where TensorRT is
not installed, prints an error while creating the session and then runs on CUDA or the CPU
without raising. So nothing here trusts the request. The providers that ran are read back
from ``session.get_providers()``, compared with what was asked, and the difference is
reported as a `ProviderOutcome` with the error onnxruntime printed (captured from the native
stderr, then passed on).

With ``capture_trt_log`` the TensorRT EP builds its engines with ``trt_detailed_build_log`` and
verbose logging, and everything it wrote (stdout and stderr, at the file-descriptor level) is kept
in ``ProviderOutcome.log`` for `sepfix.validate.trt_log.layer_info_from_ep_log`; only the
warnings and errors of that log are passed on to stderr.
"""

from __future__ import annotations

import contextlib
import io
import ctypes
import ctypes.util
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import onnx

from sepfix.errors import SepfixError

__all__ = [
    "CHOICES",
    "PROVIDERS",
    "ProviderOutcome",
    "ModelDoesNotRun",
    "available_providers",
    "onnxruntime_package",
    "tensorrt_ep_usable",
    "resolve",
    "open_session",
]

TENSORRT = "TensorrtExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
PROVIDERS = {"tensorrt": TENSORRT, "cuda": CUDA, "cpu": CPU}
CHOICES = ("auto", "tensorrt", "cuda", "cpu")

_preloaded = False


class ModelDoesNotRun(SepfixError):
    """onnxruntime cannot load the model on any provider, CPU included."""


@dataclass
class ProviderOutcome:
    """What was asked for and what ran.

    ``requested`` is the user's word (auto, tensorrt, cuda, cpu); ``wanted`` the provider that
    request means here (for auto: the first of `resolve`'s list); ``listed`` whether this
    onnxruntime build lists it; ``active`` what ``session.get_providers()`` returned;
    ``fell_back`` True when ``wanted`` is not among them.
    """

    requested: str
    wanted: str
    listed: bool
    active: list[str]
    fell_back: bool
    reason: str
    available: list[str] = field(default_factory=list)
    onnxruntime: str = ""
    log: str = field(default="", repr=False)  # what onnxruntime wrote while the session was created

    @property
    def ran(self) -> bool:
        return not self.fell_back

    @property
    def primary(self) -> str:
        """The provider that takes the nodes it supports first (the others only get the rest)."""
        return self.active[0] if self.active else ""

    def to_dict(self) -> dict:
        out = asdict(self)
        out.pop("log", None)
        return out


def available_providers() -> list[str]:
    """Providers this onnxruntime build lists (listed is not the same as usable)."""
    from sepfix.runtime import onnxruntime

    ort = onnxruntime()

    return list(ort.get_available_providers())


def onnxruntime_package() -> str:
    """Which onnxruntime distribution is installed, e.g. ``onnxruntime-gpu 1.22.0``."""
    from sepfix.runtime import onnxruntime

    ort = onnxruntime()

    for name in ("onnxruntime-gpu", "onnxruntime", "onnxruntime-directml", "onnxruntime-openvino"):
        try:
            return f"{name} {metadata.version(name)}"
        except metadata.PackageNotFoundError:
            continue
    return f"onnxruntime {ort.__version__}"


def _is_gpu_build() -> bool:
    return bool({TENSORRT, CUDA} & set(available_providers()))


def _preload_dlls() -> None:
    """onnxruntime-gpu ≥ 1.21 finds the CUDA/cuDNN of the nvidia-* wheels only after this."""
    global _preloaded
    if _preloaded:
        return
    _preloaded = True
    from sepfix.runtime import onnxruntime

    ort = onnxruntime()

    if _is_gpu_build() and hasattr(ort, "preload_dlls"):
        try:
            ort.preload_dlls()
        except Exception as exc:  # missing wheels: the session will say what failed
            print(f"sepfix: onnxruntime.preload_dlls() failed: {exc}", file=sys.stderr)


def tensorrt_ep_usable() -> tuple[bool, str]:
    """Whether onnxruntime's TensorRT EP can load here: listed, and libnvinfer loadable.

    The EP dlopens libnvinfer when a session is created; the ``tensorrt`` wheel ships it
    outside the library path, and importing ``tensorrt`` loads it into the process.
    """
    if TENSORRT not in available_providers():
        return False, f"{TENSORRT} is not in this onnxruntime build ({onnxruntime_package()})"
    for soname in ("libnvinfer.so.10", "libnvinfer.so.8", "libnvinfer.so", "nvinfer_10.dll", "nvinfer.dll"):
        try:
            ctypes.CDLL(soname)
            return True, f"{TENSORRT} listed and {soname} loads"
        except OSError:
            continue
    from sepfix.validate.tensorrt import tensorrt_available

    ok, reason = tensorrt_available()
    if ok:
        return True, f"{TENSORRT} listed and libnvinfer loaded through the Python package ({reason})"
    found = ctypes.util.find_library("nvinfer")
    return False, (f"{TENSORRT} is listed but libnvinfer does not load"
                   f"{f' ({found} found but not loadable)' if found else ''}: {reason}")


def resolve(requested: str) -> list[str]:
    """The provider list for a request, CPU last, limited to providers this build lists.

    auto: TensorRT (with CUDA and CPU behind it) when its EP is usable, else CUDA, else CPU.
    tensorrt: TensorRT, CUDA, CPU. cuda: CUDA, CPU. cpu: CPU. TensorRT keeps CUDA behind it
    because nodes TensorRT rejects then run on the GPU rather than the CPU.
    """
    if requested not in CHOICES:
        raise SepfixError(f"unknown provider {requested!r}; choose one of {', '.join(CHOICES)}")
    listed = set(available_providers())
    if requested == "auto":
        if tensorrt_ep_usable()[0]:
            chain = [TENSORRT, CUDA, CPU]
        elif CUDA in listed:
            chain = [CUDA, CPU]
        else:
            chain = [CPU]
    else:
        chain = {"tensorrt": [TENSORRT, CUDA, CPU], "cuda": [CUDA, CPU], "cpu": [CPU]}[requested]
    return [p for p in chain if p in listed or p == CPU]


@contextlib.contextmanager
def _native_stderr(fds: Sequence[int] = (2,), passthrough: Any = None) -> Iterator[list[str]]:
    """Capture what onnxruntime says while a session is created, then pass it on to stderr.

    Native code writes its EP load errors (and, verbose, the TensorRT EP's build log) to fd 2
    (``fds=(1, 2)`` takes native stdout too); onnxruntime's Python layer *prints* its "EP Error
    ... Falling back" banner to stdout, which would corrupt `--format json` output. All of it is
    captured. ``passthrough`` filters what is passed on to stderr (default: everything). Yields a
    list that holds the captured text once the block ends.
    """
    captured: list[str] = []
    printed = io.StringIO()
    saved: dict[int, int] = {}
    for fd in fds:
        try:
            saved[fd] = os.dup(fd)
        except OSError:  # no such fd: capture the rest
            continue
    if not saved:
        with contextlib.redirect_stdout(printed):
            yield captured
        captured.append(printed.getvalue())
        return
    with tempfile.TemporaryFile(mode="w+b") as sink:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd in saved:
            os.dup2(sink.fileno(), fd)
        try:
            with contextlib.redirect_stdout(printed):
                yield captured
        finally:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            native = sink.read().decode("utf-8", "replace")
            text = native + printed.getvalue()
            captured.append(text)
            # Python-level prints never continue a native log message: filter them apart.
            shown = (passthrough(native) + passthrough(printed.getvalue())) if passthrough is not None else text
            if shown:
                sys.stderr.write(shown)


def _error_line(text: str, provider: str) -> str:
    """The line of onnxruntime's log that explains why ``provider`` did not load."""
    keys = {TENSORRT: ("tensorrt", "nvinfer", "trt"), CUDA: ("cuda", "cudnn", "cublas")}.get(provider, ())
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)  # onnxruntime colours its log on a terminal
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    for line in lines:
        lower = line.lower()
        if any(key in lower for key in keys) and ("error" in lower or "fail" in lower or "[e:" in lower):
            return line[:400]
    errors = [line for line in lines if "error" in line.lower() or "[e:" in line.lower()]
    return errors[0][:400] if errors else ""


def _provider_options(chain: Sequence[str], fp16: bool, int8: bool, trt_cache_dir: str | os.PathLike | None,
                      detailed_build_log: bool = False) -> list[dict[str, Any]]:
    from sepfix.validate.tensorrt import ort_engine_cache_options

    options = []
    for provider in chain:
        if provider == TENSORRT:
            if trt_cache_dir is not None:
                options.append(ort_engine_cache_options(trt_cache_dir, fp16=fp16, int8=int8,
                                                        detailed_build_log=detailed_build_log))
            else:
                options.append({"trt_fp16_enable": fp16, "trt_int8_enable": int8,
                                "trt_detailed_build_log": detailed_build_log})
        else:
            options.append({})
    return options


def _source(model: onnx.ModelProto | str | os.PathLike | bytes) -> str | bytes:
    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString()
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    return os.fspath(Path(model))


def open_session(
    model: onnx.ModelProto | str | os.PathLike,
    requested: str,
    fp16: bool = False,
    trt_cache_dir: str | os.PathLike | None = None,
    int8: bool = False,
    capture_trt_log: bool = False,
) -> tuple[Any, ProviderOutcome]:
    """Open an onnxruntime session for the request and report what really ran.

    A provider the build does not list is left out of the list (no exception); one that is
    listed but fails to load makes onnxruntime fall back by itself, and a session that cannot
    be created at all on the requested providers is retried on the CPU. Either way the outcome
    says so. Raises `ModelDoesNotRun` when not even the CPU can load the model.

    ``capture_trt_log``: when TensorRT is in the chain, build its engines with the documented
    TensorRT EP option ``trt_detailed_build_log`` and verbose logging (session
    ``log_severity_level = 0`` and onnxruntime's default logger at 0, put back to its default 2
    afterwards), and keep what it wrote in ``outcome.log``.
    """
    from sepfix.runtime import onnxruntime

    ort = onnxruntime()

    from sepfix.validate.numeric import ort_errors, session_options

    _preload_dlls()
    chain = resolve(requested)
    available = available_providers()
    wanted = chain[0] if requested == "auto" else PROVIDERS[requested]
    package = onnxruntime_package()
    source = _source(model)
    load_error = ""
    verbose = capture_trt_log and TENSORRT in chain
    options = session_options()
    if verbose:
        from sepfix.validate.trt_log import without_verbose

        options.log_severity_level = 0
        ort.set_default_logger_severity(0)
    with _native_stderr(fds=(1, 2) if verbose else (2,), passthrough=without_verbose if verbose else None) as log:
        try:
            session = ort.InferenceSession(
                source, options, providers=chain,
                provider_options=_provider_options(chain, fp16, int8, trt_cache_dir, detailed_build_log=verbose),
            )
        except ort_errors() as exc:
            if chain == [CPU]:
                raise ModelDoesNotRun(_first_line(exc)) from None
            load_error = _first_line(exc)
            session = None
        finally:
            if verbose:
                ort.set_default_logger_severity(2)
    if session is None:
        try:
            session = ort.InferenceSession(source, session_options(), providers=[CPU])
        except ort_errors() as exc:
            raise ModelDoesNotRun(_first_line(exc)) from None
    active = list(session.get_providers())
    listed = wanted in available
    fell_back = wanted not in active
    if not fell_back:
        reason = f"{wanted} ran"
        if wanted == TENSORRT:
            reason += " (nodes TensorRT does not take run on the providers after it)"
    elif not listed:
        reason = (f"{wanted} is not available: not in this onnxruntime build ({package}; it lists "
                  f"{', '.join(available)})")
    else:
        why = load_error or _error_line(log[0] if log else "", wanted)
        reason = (f"{wanted} is listed by {package} but did not load; onnxruntime fell back to "
                  f"{active[0]}{': ' + why if why else ''}")
    if requested == "auto" and wanted != TENSORRT and not fell_back:
        reason += f"; auto did not pick TensorRT: {tensorrt_ep_usable()[1]}"
    outcome = ProviderOutcome(requested, wanted, listed, active, fell_back, reason, available, package,
                              log=log[0] if log else "")
    return session, outcome


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
