"""`sepfix validate`: does the model compute the right numbers on the provider it will run on,
and what does TensorRT do with its depthwise-separable blocks?

The answer is only as strong as the evidence, and the verdict says which evidence there was:

* ``fusion-observed``: TensorRT's layer information was read (given with ``--engine-info`` as
  JSON or as text: a ``trtexec --verbose`` build log, ``--dumpLayerInfo`` output; printed by
  onnxruntime's TensorRT EP in its verbose log; or from an engine the ``tensorrt`` package
  built or loaded here) and every block it covers is reported from its layers. A block whose
  nodes no layer names is ``not-covered``, never observed; layer information that names no node
  of the model is refused (another model's).
* ``fusion-predicted``: no engine could be had here; each block's row comes from TensorRT's
  documented fusions and is labelled ``predicted`` wherever it appears.
* ``numeric-only``: the model has no depthwise-separable block, so only the numbers were checked.
* ``failed``: the numbers differ, or the model does not run.

The model is checked too: a model ``sepfix check`` flags is reported with its findings (and how
many blocks ``sepfix repair`` would restore), an invalid one (SEP002/SEP003, or onnxruntime
refuses it) as "the model is invalid: <why>", not as numbers that differ.

Exit codes: 0 when the numbers pass, ``sepfix check`` finds nothing, and the verdict is the best
this machine allows (observed; or predicted where TensorRT is absent and ``--provider`` was
auto, cpu or cuda; or numeric-only); 1 when the numbers fail, the model is invalid or mangled,
an explicitly requested provider (tensorrt, cuda) did not actually run, an observed engine
shows a block not fused as it should be, or TensorRT is here but no engine could be read; 2 on
errors (unreadable files, bad options, layer information of another model).

Numbers: the model runs on the chosen provider and is compared with ``--reference`` (or with
the model itself) run on the CPU, which is the trusted baseline. Default tolerances follow the
precision that actually ran: 1e-4/1e-5 (rtol/atol) on the CPU, 1e-3/1e-3 on a GPU in fp32
(TF32 convolutions are onnxruntime's and TensorRT's default there), 1e-2/1e-2 with ``--fp16``
and 5e-2/5e-2 with ``--int8`` when TensorRT ran; ``--rtol``/``--atol`` override them.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from sepfix import model_io
from sepfix.errors import SepfixError
from sepfix.validate import numeric
from sepfix.validate.providers import CHOICES, CPU, TENSORRT, ModelDoesNotRun, ProviderOutcome

__all__ = ["VERDICTS", "ValidateReport", "model_blocks", "run_validate", "validate_command"]

VERDICTS = ("fusion-observed", "fusion-predicted", "numeric-only", "failed")

_GPU_PROVIDERS = {TENSORRT, "CUDAExecutionProvider"}
# (rtol, atol) when --rtol/--atol are not given, by what actually ran.
_TOLERANCES = {
    "cpu": (numeric.DEFAULT_RTOL, numeric.DEFAULT_ATOL),
    "gpu-fp32": (1e-3, 1e-3),
    "tensorrt-fp16": (1e-2, 1e-2),
    "tensorrt-int8": (5e-2, 5e-2),
}


# --------------------------------------------------------------------------------------------
# Blocks as TensorRT names them


def model_blocks(loaded: model_io.LoadedModel) -> list:
    """The model's depthwise-separable blocks under the names TensorRT gives their nodes."""
    from sepfix.graph import GraphIndex
    from sepfix.patterns import find_blocks

    return find_blocks(GraphIndex(loaded).inlined(), tensorrt_names=True)


# --------------------------------------------------------------------------------------------
# Report


@dataclass
class ValidateReport:
    """Everything `sepfix validate` found; `to_dict` is the JSON document, `to_text` the text."""

    model: str
    reference: str | None
    verdict: str
    exit_code: int
    provider: ProviderOutcome | None
    numeric: numeric.Validation | None
    blocks: list = field(default_factory=list)  # BlockResult
    evidence: str = "none"  # observed | predicted | none
    evidence_source: str = ""
    tensorrt: dict = field(default_factory=dict)
    check: dict | None = None
    latency: dict | None = None
    precision: str = "fp32"
    tolerance_source: str = ""
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.exit_code == 0

    def to_dict(self) -> dict:
        from sepfix import __version__

        return {
            "tool": "sepfix",
            "version": __version__,
            "command": "validate",
            "model": self.model,
            "reference": self.reference,
            "verdict": self.verdict,
            "passed": self.passed,
            "exit_code": self.exit_code,
            "precision": self.precision,
            "provider": None if self.provider is None else self.provider.to_dict(),
            "numeric": None if self.numeric is None else self.numeric.to_dict(),
            "tolerance_source": self.tolerance_source,
            "evidence": self.evidence,
            "evidence_source": self.evidence_source,
            "coverage": self.coverage,
            "blocks": [block.to_dict() for block in self.blocks],
            "check": self.check,
            "tensorrt": dict(self.tensorrt),
            "latency": self.latency,
            "problems": list(self.problems),
            "notes": list(self.notes),
            "seconds": round(self.seconds, 3),
        }

    @property
    def coverage(self) -> dict[str, int]:
        from sepfix.validate.tensorrt import coverage

        return coverage(self.blocks)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def to_text(self) -> str:
        lines = [f"{self.model}:" + (f" against {self.reference}" if self.reference else " against its own CPU run")]
        if self.provider is not None:
            lines.append("  provider: " + _provider_text(self.provider))
        trt = self.tensorrt
        lines.append(f"  tensorrt: {'available' if trt.get('available') else 'not available'} ({trt.get('reason', '')})")
        if self.check is not None:
            lines.append("  check: " + _check_text(self.check))
        if self.numeric is not None:
            lines.append("  numeric: " + _numeric_text(self.numeric))
        if self.blocks:
            c = self.coverage
            counts = ", ".join(f"{c[key]} {label}" for key, label in
                               (("observed", "observed"), ("predicted", "predicted"), ("not_covered", "not covered"))
                               if c[key])
            lines.append(f"  blocks: {counts} (evidence: {self.evidence_source}):")
            lines.extend("    " + _block_text(block) for block in self.blocks)
        if self.latency:
            lines.append("  " + _latency_text(self.latency))
        lines.extend(f"  note: {note}" for note in self.notes)
        lines.extend(f"  problem: {problem}" for problem in self.problems)
        state = "PASSED" if self.passed else "FAILED"
        detail = f": {self.problems[0]}" if self.problems and not self.passed else ""
        lines.append(f"{state}: {self.verdict}{detail} ({self.seconds:.2f} s)")
        return "\n".join(lines)


def _provider_text(p: ProviderOutcome) -> str:
    """One line: what ran, and why not what was asked, each said once."""
    if p.ran:
        detail = p.reason.removeprefix(f"{p.wanted} ran").strip(" ;")
        behind = f" (then {', '.join(p.active[1:])} for the nodes it does not take)" if len(p.active) > 1 else ""
        return f"{p.active[0]} ran{behind} (--provider {p.requested})" + (f"; {detail}" if detail else "")
    state = "NOT AVAILABLE" if not p.listed else "FELL BACK"
    return f"--provider {p.requested}: {p.wanted} {state}: {p.reason}; ran on {', '.join(p.active)}"


def _check_text(check: Mapping) -> str:
    if check.get("error"):
        return f"could not run: {check['error']}"
    if not check.get("count"):
        return "no findings"
    # What they mean (invalid, or what repair would restore) is the problem line's to say.
    codes = ", ".join(f"{code} x{n}" for code, n in check["codes"].items())
    return f"{check['count']} finding{'s' if check['count'] != 1 else ''} ({codes}), {check['fixable']} fixable"


def _numeric_text(v: numeric.Validation) -> str:
    state = "passed" if v.passed else "FAILED"
    sets = f"{v.input_sets} input set{'s' if v.input_sets != 1 else ''}"
    head = f"{state} ({v.runners('reference', 'model')}, {sets}, rtol {v.rtol:g}, atol {v.atol:g})"
    lines = [head] + ["    " + line for line in v.output_lines()]
    if not v.passed and not v.outputs and v.message:
        lines.append(f"    {v.message}")
    return "\n".join(lines)


def _fused_text(conv: str | None, fused: Any) -> str:
    parts = [conv or "?"]
    for label, names in (("BN", fused.batch_norm), ("act", fused.activations),
                         ("add", fused.adds), ("Q/DQ", fused.quantize)):
        if names:
            parts.append(f"{label}[{', '.join(names)}]")
    return " + ".join(parts)


def _block_text(block: Any) -> str:
    from sepfix.validate.tensorrt import NOT_COVERED

    tag = ("predicted" if block.evidence == "predicted" else "not covered" if block.status == "not-covered"
           else "partly covered" if block.status in NOT_COVERED else "observed")
    head = f"[{tag}] {block.depthwise_node} -> {block.pointwise_node} (C={block.channels}): {block.status}"
    if block.evidence == "predicted":
        detail = (f"depthwise {_fused_text(block.depthwise_node, block.depthwise_fused)}; "
                  f"pointwise {_fused_text(block.pointwise_node, block.pointwise_fused)}")
        if block.depsep:
            detail += "; DepSepConvolution possible"
    elif block.status == "fused" and block.depthwise_layer:
        detail = (f"depthwise layer {block.depthwise_layer!r} ({block.depthwise_layer_type}): "
                  f"{_fused_text(block.depthwise_node, block.depthwise_fused)}")
        if block.depsep:
            detail += "; one DepSepConvolution layer with the pointwise conv"
        else:
            detail += (f"; pointwise layer {block.pointwise_layer!r} ({block.pointwise_layer_type}): "
                       f"{_fused_text(block.pointwise_node, block.pointwise_fused)}")
    else:
        detail = block.message
        if block.depthwise_layer and block.depthwise_layer not in detail:
            detail += f"; depthwise layer {block.depthwise_layer!r} ({block.depthwise_layer_type})"
    notes = f" [{'; '.join(block.notes)}]" if block.notes else ""
    return f"{head}: {detail}{notes}"


def _latency_text(latency: Mapping) -> str:
    parts = []
    for role in ("model", "reference"):
        entry = latency.get(role)
        if entry is None:
            continue
        if "error" in entry:
            parts.append(f"{role}: {entry['error']}")
        else:
            parts.append(f"{role} median {entry['median_ms']:.3f} ms, p90 {entry['p90_ms']:.3f} ms")
    return f"latency ({latency.get('provider', '?')}, {latency.get('runs')} runs): " + "; ".join(parts)


# --------------------------------------------------------------------------------------------
# The command


def _tolerances(outcome: ProviderOutcome | None, fp16: bool, int8: bool) -> tuple[str, tuple[float, float]]:
    primary = outcome.primary if outcome is not None else CPU
    if primary == TENSORRT and int8:
        key = "tensorrt-int8"
    elif primary == TENSORRT and fp16:
        key = "tensorrt-fp16"
    elif primary in _GPU_PROVIDERS:
        key = "gpu-fp32"
    else:
        key = "cpu"
    return key, _TOLERANCES[key]


def _shapes(input_shapes: Sequence[str] | Mapping[str, Sequence[int]] | None) -> dict[str, list[int]]:
    if not input_shapes:
        return {}
    if isinstance(input_shapes, Mapping):
        return {name: list(dims) for name, dims in input_shapes.items()}
    return numeric.parse_input_shapes(list(input_shapes))


def _observe_engine(doc: Any, structure: Any, blocks: list, source: str, notes: list[str]) -> tuple[list, str]:
    from sepfix.validate.tensorrt import parse_layer_info

    return _observe_info(parse_layer_info(doc, structure), structure, blocks, source, notes), source


def _observe_info(info: Any, structure: Any, blocks: list, source: str, notes: list[str]) -> list:
    """The per-block report from parsed layer information, after making sure it is this
    model's (SepfixError otherwise)."""
    from sepfix.validate.tensorrt import block_report, require_same_model

    require_same_model(info, structure, source)
    if info.layers and all(layer.groups is None for layer in info.layers):
        notes.append("this layer information records no Groups or kernel sizes (text): depthwise is read from "
                     "the layer type (CudaDepthwiseConvolution), pointwise from the model")
    return block_report(info, blocks)


def _check_model(model_path: Path, blocks: list) -> dict:
    """What `sepfix check` finds in the model, and how many blocks `sepfix repair` would restore."""
    import sepfix

    try:
        findings = [f for f in sepfix.check(str(model_path)) if f.counts]
    except Exception as exc:  # the validation goes on without it; say why
        return {"count": 0, "codes": {}, "fixable": 0, "invalid": [], "restorable_blocks": None,
                "error": f"{type(exc).__name__}: {exc}"}
    codes: dict[str, int] = {}
    for finding in findings:
        codes[finding.code] = codes.get(finding.code, 0) + 1
    result = {
        "count": len(findings),
        "codes": dict(sorted(codes.items())),
        "fixable": sum(1 for f in findings if f.fixable),
        "invalid": [f"{f.code} {f.name} at {f.location}: {f.message}" for f in findings if f.severity == "error"],
        "restorable_blocks": None,
        "error": None,
    }
    if result["fixable"]:
        try:
            from sepfix.repairer import blocks_after_repair
            from sepfix.rules import select_rules

            result["restorable_blocks"] = max(blocks_after_repair(model_path, select_rules()) - len(blocks), 0)
        except Exception:  # counting is a courtesy; the findings stand without it
            pass
    return result


def run_validate(
    model_path: str | Path,
    reference: str | Path | None = None,
    provider: str = "auto",
    fp16: bool = False,
    int8: bool = False,
    bench: int = 0,
    engine_info: str | Path | None = None,
    input_shapes: Sequence[str] | Mapping[str, Sequence[int]] | None = None,
    inputs: str | Path | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    seed: int = 0,
) -> ValidateReport:
    """Validate ``model_path``: numbers on the chosen provider, fusions per block, latency.

    Raises SepfixError for problems with the request (unreadable model or files, bad shapes);
    everything the validation itself finds goes into the report and its exit code.
    """
    from sepfix.validate import bench as bench_module
    from sepfix.validate.providers import open_session, resolve
    from sepfix.validate.tensorrt import (
        NOT_COVERED,
        build_engine_layer_info,
        find_ort_engine_files,
        layer_info_from_engine_file,
        parse_layer_info,
        predict_block_report,
        tensorrt_available,
    )
    from sepfix.validate.tensorrt import EngineInfo
    from sepfix.validate.trt_log import EP_LOG_SOURCE, layer_info_from_ep_log, load_engine_info

    start = time.perf_counter()
    if provider not in CHOICES:
        raise SepfixError(f"unknown provider {provider!r}; choose one of {', '.join(CHOICES)}")
    if bench < 0:
        raise SepfixError(f"--bench needs a number of runs >= 0, not {bench}")
    model_path = Path(model_path)
    loaded = model_io.load_for_check(model_path)
    structure = loaded.model
    if reference is not None:
        model_io.load_for_check(reference)  # a bad reference is a one-line error before any work
    shapes = _shapes(input_shapes)
    user_inputs = numeric.load_npz_inputs(inputs) if inputs else None
    precision = "int8" if int8 else "fp16" if fp16 else "fp32"
    blocks = model_blocks(loaded)
    trt_ok, trt_reason = tensorrt_available()
    # Layer information given by the user is read (and refused below if it is another
    # model's) before any work.
    given_info = given_what = None
    if engine_info is not None:
        given_info, given_what = load_engine_info(engine_info, structure)

    report = ValidateReport(model=str(model_path), reference=None if reference is None else str(reference),
                            verdict="failed", exit_code=1, provider=None, numeric=None, precision=precision)
    notes, problems = report.notes, report.problems
    observed: list | None = None
    source = ""
    attempts: list[str] = []
    if given_info is not None:
        source = f"--engine-info {engine_info} ({given_what})"
        observed = _observe_info(given_info, structure, blocks, f"--engine-info {engine_info}", notes)
    report.check = _check_model(model_path, blocks)
    invalid = report.check["invalid"]
    if invalid:
        problems.append(f"the model is invalid: {invalid[0]}")
    if int8 and not fp16:
        notes.append("--int8 means something only for explicitly quantized (Q/DQ) models or with a calibration table")

    with tempfile.TemporaryDirectory(prefix="sepfix-trt-cache-") as cache_dir:
        use_cache = TENSORRT in resolve(provider)
        session = None
        try:
            session, outcome = open_session(model_path, provider, fp16=fp16, int8=int8,
                                            trt_cache_dir=cache_dir if use_cache else None,
                                            capture_trt_log=use_cache)
            report.provider = outcome
        except ModelDoesNotRun as exc:
            if not invalid:
                problems.append(f"the model is invalid: onnxruntime refuses it on every provider: {exc}")
            outcome = None

        # Numbers: the model on the chosen provider against the reference (or itself) on the CPU.
        key, (default_rtol, default_atol) = _tolerances(outcome, fp16, int8)
        use_rtol = default_rtol if rtol is None else rtol
        use_atol = default_atol if atol is None else atol
        report.tolerance_source = ("given" if rtol is not None and atol is not None
                                   else f"default for {key}" if rtol is None and atol is None
                                   else f"given, the other the default for {key}")
        if session is not None:
            report.numeric = numeric.compare_models(
                reference if reference is not None else model_path, model_path,
                rtol=use_rtol, atol=use_atol, shapes=shapes, seed=seed, user_inputs=user_inputs,
                providers=outcome.active, original_providers=[CPU], candidate_session=session,
                deployment_optimizations=True,
            )
            if not report.numeric.passed:
                runs = report.numeric.message.startswith("onnxruntime could not run the candidate")
                if invalid:
                    pass  # said once, with the finding that makes it invalid
                elif runs:
                    problems.append("the model is invalid: " + report.numeric.message.replace(
                        "onnxruntime could not run the candidate", "onnxruntime cannot run it", 1))
                else:
                    problems.append(f"numbers differ: {report.numeric.message}")

        if outcome is not None and provider in ("tensorrt", "cuda") and outcome.fell_back:
            problems.append(f"--provider {provider} did not run: {outcome.reason}")

        # Latency of both models on the provider that ran.
        if bench and session is not None:
            feeds = numeric.make_feeds(structure, shapes, seed=seed, count=1, user_inputs=user_inputs)
            report.latency = {"provider": outcome.primary, "runs": bench, "warmup": 3,
                              "model": _timed(bench_module.latency, session, feeds, bench)}
            if reference is not None:
                report.latency["reference"] = _reference_latency(
                    reference, provider, fp16, int8, feeds, bench, outcome, Path(cache_dir) / "reference")

        # Fusions: observed from layer information when it can be had, else predicted. First what
        # the user gave, then the layer information the TensorRT EP printed while it built its
        # engines, then the engines it cached, then an engine built here.
        if observed is None and outcome is not None and TENSORRT in outcome.active:
            ep_info = layer_info_from_ep_log(outcome.log, structure)
            if ep_info is None or not ep_info.layers:
                attempts.append("the TensorRT EP ran but its log held no layer information")
            else:
                try:
                    observed = _observe_info(ep_info, structure, blocks, EP_LOG_SOURCE, notes)
                    source = EP_LOG_SOURCE
                except SepfixError as exc:
                    attempts.append(f"the TensorRT EP's log: {exc}")
        if observed is None and outcome is not None and TENSORRT in outcome.active:
            engines = [p for p in find_ort_engine_files(cache_dir) if "reference" not in p.parts]
            if not engines:
                attempts.append("the TensorRT EP ran but left no engine in its cache")
            elif not trt_ok:
                attempts.append(f"the TensorRT EP cached an engine but it cannot be read here: {trt_reason}")
            else:
                try:
                    # One engine per subgraph TensorRT took; a block may span only one of them.
                    layers = tuple(layer for engine in engines for layer in
                                   parse_layer_info(layer_info_from_engine_file(engine), structure).layers)
                    observed = _observe_info(EngineInfo(layers, ()), structure, blocks,
                                             "the TensorRT EP's cached engines", notes)
                    source = ("the engine(s) onnxruntime's TensorRT EP built: "
                              + ", ".join(engine.name for engine in engines))
                except SepfixError as exc:
                    attempts.append(f"the TensorRT EP's cached engine: {exc}")
        if observed is None and trt_ok:
            try:
                observed, source = _observe_engine(
                    build_engine_layer_info(model_path, fp16=fp16, int8=int8), structure, blocks,
                    f"an engine built here with {trt_reason}", notes)
            except SepfixError as exc:
                attempts.append(f"building an engine: {exc}")
    notes.extend(attempts)

    if observed is not None:
        report.blocks, report.evidence, report.evidence_source = observed, "observed", source
    else:
        report.blocks = predict_block_report(blocks, precision)
        report.evidence = "predicted"
        report.evidence_source = "TensorRT's documented fusions (no engine here)"
    report.tensorrt = {
        "available": trt_ok,
        "reason": trt_reason,
        "ep_listed": bool(outcome is not None and TENSORRT in outcome.available),
        "ep_ran": bool(outcome is not None and TENSORRT in outcome.active),
        "evidence": report.evidence,
        "source": report.evidence_source,
    }

    covered = report.coverage
    if report.numeric is None or not report.numeric.passed or invalid:
        report.verdict = "failed"
    elif not blocks:
        report.verdict = "numeric-only"
        notes.append("the model has no depthwise-separable block" + (
            " as it stands (see check)" if report.check and report.check["count"] else "")
            + ": only the numbers were checked")
    elif report.evidence == "observed" and covered["observed"]:
        report.verdict = "fusion-observed"
    elif report.evidence == "observed":
        report.verdict = "numeric-only"
        notes.append("the layer information covers none of the model's depthwise-separable blocks")
    else:
        report.verdict = "fusion-predicted"

    if report.check and report.check["count"] and not invalid:
        c = report.check
        codes = ", ".join(f"{code} x{n}" for code, n in c["codes"].items())
        restore = (f"`sepfix repair` would restore {c['restorable_blocks']} depthwise-separable "
                   f"block{'s' if c['restorable_blocks'] != 1 else ''}" if c["restorable_blocks"]
                   else "`sepfix repair` fixes them" if c["fixable"] else "see `sepfix check`")
        problems.append(f"sepfix check finds {c['count']} mangled pattern{'s' if c['count'] != 1 else ''} "
                        f"({codes}): {restore}")
    if report.evidence == "observed":
        if covered["not_covered"]:
            notes.append(f"{covered['not_covered']} of {covered['blocks']} blocks are not in this layer "
                         "information (a log cut short, or inside a Myelin region that names only its ends)")
        for block in report.blocks:
            if block.status != "fused" and block.status not in NOT_COVERED:
                problems.append(f"block {block.depthwise_node} -> {block.pointwise_node} not fused as it "
                                f"should be ({block.status}): {block.message}")
    elif blocks and trt_ok:
        problems.append("TensorRT is here but no engine could be read, so fusions are only predicted"
                        + (f": {attempts[-1]}" if attempts else ""))
    elif blocks and provider == "tensorrt" and not any(p.startswith("--provider") for p in problems):
        problems.append("--provider tensorrt asked for observed fusions, but none could be had: "
                        + (attempts[-1] if attempts else trt_reason))

    report.exit_code = 1 if problems else 0
    report.seconds = time.perf_counter() - start
    return report


def _timed(latency_fn, session, feeds, runs) -> dict:
    try:
        return latency_fn(session, feeds, runs)
    except numeric.ort_errors() as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return {"error": f"could not be timed: {type(exc).__name__}: {first}"}


def _reference_latency(reference, provider, fp16, int8, feeds, runs, outcome, cache_dir: Path) -> dict:
    """Time the reference on the provider the model ran on; an invalid original cannot be."""
    from sepfix.validate import bench as bench_module
    from sepfix.validate.providers import open_session

    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        session, ref_outcome = open_session(reference, provider, fp16=fp16, int8=int8,
                                            trt_cache_dir=cache_dir if outcome.primary == TENSORRT else None)
    except ModelDoesNotRun as exc:
        return {"error": f"onnxruntime cannot load the reference: {exc}"}
    if ref_outcome.primary != outcome.primary:
        return {"error": f"the reference ran on {ref_outcome.primary}, the model on {outcome.primary}: "
                         "not comparable"}
    return _timed(bench_module.latency, session, feeds, runs)


@click.command("validate")
@click.argument("models", nargs=-1, required=True, type=click.Path(readable=False, path_type=str))
@click.option("--reference", type=click.Path(readable=False, path_type=str), default=None,
              help="The original model to compare with (default: MODEL's own CPU run); one model only.")
@click.option("--provider", type=click.Choice(CHOICES), default="auto", show_default=True,
              help="Where MODEL runs; auto = TensorRT if usable, else CUDA, else CPU.")
@click.option("--fp16", is_flag=True, help="Let TensorRT use fp16 (looser default tolerances).")
@click.option("--int8", is_flag=True, help="Let TensorRT use int8 (for Q/DQ models).")
@click.option("--bench", type=int, default=0, metavar="N", help="Time N runs of each model: median and p90.")
@click.option("--format", "fmt", type=click.Choice(("text", "json")), default="text", show_default=True)
@click.option("--engine-info", type=click.Path(dir_okay=False, allow_dash=True, path_type=str), default=None,
              help="TensorRT layer information made elsewhere: JSON (trtexec --exportLayerInfo) or text "
                   "(a trtexec --verbose build log, --dumpLayerInfo output); - reads stdin.")
@click.option("--input-shape", "input_shapes", multiple=True, metavar="NAME:D1,D2,...",
              help="Shape for a dynamic input (repeatable); default: first dim 1, other dims 16.")
@click.option("--inputs", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="An .npz of named inputs, run as one extra input set.")
@click.option("--rtol", type=float, default=None, help="Relative tolerance (default by precision).")
@click.option("--atol", type=float, default=None, help="Absolute tolerance (default by precision).")
@click.option("-q", "--quiet", is_flag=True, help="No spinner on stderr while it works.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=str),
              help="Configuration whose exclude applies to folders (default: the nearest one).")
@click.option("-v", "--verbose", is_flag=True, help="Print throughput (models/s) on stderr for several models.")
def validate_command(models, reference, provider, fp16, int8, bench, fmt, engine_info, input_shapes,
                     inputs, rtol, atol, quiet, config_file, verbose) -> int:
    """Check each model's numbers on a provider and what TensorRT does with its blocks.

    \b
    MODELS are files, or folders walked to *.onnx (past the configuration's exclude).
    Verdicts: fusion-observed (read from a TensorRT engine), fusion-predicted (no TensorRT
    here: every block row is labelled predicted), numeric-only (no blocks), failed.
    Exit 0 when the numbers pass and the verdict is the best this machine allows; 1 when the
    numbers fail, a requested tensorrt/cuda provider did not run, or an observed block is not
    fused; 2 on errors; the worst over models.
    """
    from sepfix import __version__
    from sepfix.batch import Timer, throughput, validate_one
    from sepfix.config import Resolver
    from sepfix.files import collect
    from sepfix.terminal import working

    timer = Timer()
    paths = collect(models, Resolver(config_file))
    if not paths:
        click.echo("sepfix: warning: no .onnx model to act on (none found, or all excluded by the configuration)", err=True)
        return 0
    for option, value in (("--reference", reference), ("--engine-info", engine_info)):
        if value is not None and len(paths) != 1:
            raise SepfixError(f"{option} belongs to one model, and {len(paths)} were given")
    kwargs = dict(reference=reference, provider=provider, fp16=fp16, int8=int8, bench=bench,
                  engine_info=engine_info, input_shapes=list(input_shapes), inputs=inputs, rtol=rtol, atol=atol)
    outcomes = []
    for path in paths:
        with working(f"validating {path}", quiet):
            outcomes.append(validate_one(path, kwargs))
        if outcomes[-1].error:
            click.echo(f"sepfix: error: {outcomes[-1].error}", err=True)
    reports = [o.report for o in outcomes if o.report is not None]
    worst = max(o.exit_code for o in outcomes)
    if fmt == "json":
        if len(paths) == 1:
            if reports:
                click.echo(reports[0].to_json())
        else:
            click.echo(json.dumps({
                "tool": "sepfix", "version": __version__, "command": "validate", "exit_code": worst,
                "reports": [r.to_dict() for r in reports],
                "errors": [{"path": o.path, "error": o.error} for o in outcomes if o.error],
            }, indent=2, allow_nan=False))
    else:
        for report in reports:
            click.echo(report.to_text())
        if len(paths) > 1:
            passed = sum(1 for r in reports if r.passed)
            errors = len(outcomes) - len(reports)
            click.echo(f"{'FAILED' if worst else 'PASSED'}: {len(paths)} models: {passed} passed, "
                       f"{len(reports) - passed} failed" + (f", {errors} unreadable" if errors else "")
                       + f" ({timer.seconds:.2f} s)")
    if verbose and len(paths) > 1:
        click.echo(throughput("validated", len(paths), timer.seconds, 1), err=True)
    return worst
