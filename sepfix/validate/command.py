"""`sepfix validate`: does the model compute the right numbers on the provider it will run on,
and what does TensorRT do with its depthwise-separable blocks?

The answer is only as strong as the evidence, and the verdict says which evidence there was:

* ``fusion-observed``: a TensorRT engine was read (built here with the ``tensorrt`` package,
  cached by onnxruntime's TensorRT EP, or given with ``--engine-info``) and every block is
  reported from its layers.
* ``fusion-predicted``: no engine could be had here; each block's row comes from TensorRT's
  documented fusions and is labelled ``predicted`` wherever it appears.
* ``numeric-only``: the model has no depthwise-separable block, so only the numbers were checked.
* ``failed``: the numbers differ, or the model does not run.

Exit codes: 0 when the numbers pass and the verdict is the best this machine allows
(observed; or predicted where TensorRT is absent and ``--provider`` was auto, cpu or cuda; or
numeric-only); 1 when the numbers fail, an explicitly requested provider (tensorrt, cuda) did
not actually run, an observed engine shows a block not fused as it should be, or TensorRT is
here but no engine could be read; 2 on errors (unreadable files, bad options).

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
_AFTER_LIMIT = 4


# --------------------------------------------------------------------------------------------
# Blocks as TensorRT names them


def _trt_name(node: Any) -> str:
    """TensorRT's name for an ONNX node: its name, or ``node_of_<first output>`` when unnamed."""
    proto = node.node
    return proto.name or (f"node_of_{proto.output[0]}" if proto.output else node.label)


def _after(index: Any, scope: Any, pointwise: Any) -> tuple[list[Any], list[str]]:
    """Nodes right after the pointwise conv that TensorRT may fuse into it: bias/residual Add,
    activations (gated ones as Sigmoid + Mul), Q/DQ."""
    from sepfix.validate.tensorrt import ACTIVATION_OPS, ADD_OPS, QUANT_OPS

    fusable = ACTIVATION_OPS | ADD_OPS | QUANT_OPS
    nodes: list[Any] = []
    tensor = pointwise.node.output[0] if pointwise.node.output else ""
    while tensor and len(nodes) < _AFTER_LIMIT:
        users = index.consumers(scope, tensor)
        if len(users) == 1 and users[0].op in fusable:
            nodes.append(users[0])
            tensor = users[0].node.output[0]
            continue
        gates = [u for u in users if u.op in ("Sigmoid", "HardSigmoid")]
        muls = [u for u in users if u.op == "Mul"]
        if len(users) == 2 and len(gates) == 1 and len(muls) == 1 and gates[0].node.output[0] in muls[0].node.input:
            nodes.extend([gates[0], muls[0]])
            tensor = muls[0].node.output[0]
            continue
        break
    return nodes, [n.op for n in nodes]


def model_blocks(loaded: model_io.LoadedModel) -> list:
    """The model's depthwise-separable blocks as `OnnxBlock`s, under the names TensorRT gives
    their nodes, with the nodes after each pointwise conv that TensorRT may fuse into it."""
    from sepfix.graph import GraphIndex
    from sepfix.patterns import find_blocks
    from sepfix.validate.tensorrt import OnnxBlock

    index = GraphIndex(loaded)
    scopes = {scope.path: scope for scope in index.scopes}
    blocks = []
    for block in find_blocks(index):
        scope = scopes.get(block.scope)
        by_label = {node.label: node for node in scope.nodes} if scope is not None else {}

        def name(label: str) -> str:
            node = by_label.get(label)
            return _trt_name(node) if node is not None else label

        after, after_ops = ([], [])
        pointwise = by_label.get(block.pointwise)
        if pointwise is not None:
            after, after_ops = _after(index, scope, pointwise)
        blocks.append(OnnxBlock(
            depthwise=name(block.depthwise),
            pointwise=name(block.pointwise),
            between=tuple(name(label) for label in block.between),
            channels=int(block.channels),
            between_ops=tuple(block.between_ops),
            after=tuple(_trt_name(n) for n in after),
            after_ops=tuple(after_ops),
        ))
    return blocks


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
            "blocks": [block.to_dict() for block in self.blocks],
            "tensorrt": dict(self.tensorrt),
            "latency": self.latency,
            "problems": list(self.problems),
            "notes": list(self.notes),
            "seconds": round(self.seconds, 3),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def to_text(self) -> str:
        lines = [f"{self.model}:" + (f" against {self.reference}" if self.reference else " against its own CPU run")]
        if self.provider is not None:
            p = self.provider
            state = "ran" if p.ran else "NOT AVAILABLE" if not p.listed else "FELL BACK"
            lines.append(f"  provider: --provider {p.requested} -> {p.wanted} {state}; active: "
                         f"{', '.join(p.active)} ({p.reason})")
        trt = self.tensorrt
        lines.append(f"  tensorrt: {'available' if trt.get('available') else 'not available'} ({trt.get('reason', '')})")
        if self.numeric is not None:
            lines.append("  numeric: " + _numeric_text(self.numeric))
        if self.blocks:
            if self.evidence == "predicted":
                lines.append(f"  blocks ({len(self.blocks)}, predicted from TensorRT's documented fusions, "
                             "not observed):")
            else:
                lines.append(f"  blocks ({len(self.blocks)}, observed in {self.evidence_source}):")
            lines.extend("    " + _block_text(block) for block in self.blocks)
        if self.latency:
            lines.append("  " + _latency_text(self.latency))
        lines.extend(f"  note: {note}" for note in self.notes)
        lines.extend(f"  problem: {problem}" for problem in self.problems)
        state = "PASSED" if self.passed else "FAILED"
        detail = f": {self.problems[0]}" if self.problems and not self.passed else ""
        lines.append(f"{state}: {self.verdict}{detail} ({self.seconds:.2f} s)")
        return "\n".join(lines)


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
    tag = "predicted" if block.evidence == "predicted" else "observed"
    head = f"[{tag}] {block.depthwise_node} -> {block.pointwise_node} (C={block.channels}): {block.status}"
    if block.evidence == "predicted":
        detail = (f"depthwise {_fused_text(block.depthwise_node, block.depthwise_fused)}; "
                  f"pointwise {_fused_text(block.pointwise_node, block.pointwise_fused)}")
        if block.depsep:
            detail += "; DepSepConvolution possible"
    else:
        detail = block.message
        if block.depthwise_layer:
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


def _observe_engine(doc: Any, structure: Any, blocks: list, source: str) -> tuple[list, str]:
    from sepfix.validate.tensorrt import block_report, parse_layer_info

    info = parse_layer_info(doc, structure)
    return block_report(info, blocks), source


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
        build_engine_layer_info,
        find_ort_engine_files,
        layer_info_from_engine_file,
        load_layer_info,
        parse_layer_info,
        predict_block_report,
        block_report,
        tensorrt_available,
    )

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

    report = ValidateReport(model=str(model_path), reference=None if reference is None else str(reference),
                            verdict="failed", exit_code=1, provider=None, numeric=None, precision=precision)
    notes, problems = report.notes, report.problems
    if int8 and not fp16:
        notes.append("--int8 means something only for explicitly quantized (Q/DQ) models or with a calibration table")

    with tempfile.TemporaryDirectory(prefix="sepfix-trt-cache-") as cache_dir:
        use_cache = TENSORRT in resolve(provider)
        session = None
        try:
            session, outcome = open_session(model_path, provider, fp16=fp16, int8=int8,
                                            trt_cache_dir=cache_dir if use_cache else None)
            report.provider = outcome
        except ModelDoesNotRun as exc:
            problems.append(f"onnxruntime cannot load the model on any provider: {exc}")
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
            )
            if not report.numeric.passed:
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

        # Fusions: observed from an engine when one can be had, else predicted.
        observed: list | None = None
        source = ""
        attempts: list[str] = []
        if engine_info is not None:
            observed, source = block_report(load_layer_info(engine_info, structure), blocks), f"--engine-info {engine_info}"
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
                    observed = block_report(layers, blocks)
                    source = ("the engine(s) onnxruntime's TensorRT EP built: "
                              + ", ".join(engine.name for engine in engines))
                except SepfixError as exc:
                    attempts.append(f"the TensorRT EP's cached engine: {exc}")
        if observed is None and trt_ok:
            try:
                observed, source = _observe_engine(
                    build_engine_layer_info(model_path, fp16=fp16, int8=int8), structure, blocks,
                    f"an engine built here with {trt_reason}")
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

    if report.numeric is None or not report.numeric.passed:
        report.verdict = "failed"
    elif not blocks:
        report.verdict = "numeric-only"
        notes.append("the model has no depthwise-separable block: only the numbers were checked")
    elif report.evidence == "observed":
        report.verdict = "fusion-observed"
    else:
        report.verdict = "fusion-predicted"

    if report.evidence == "observed":
        if report.blocks and all(b.depthwise_layer is None and b.status == "depthwise-dense-or-missing"
                                 for b in report.blocks):
            notes.append("no block's depthwise node is named in any engine layer: is the layer "
                         "information from this model (same node names)?")
        for block in report.blocks:
            if block.status != "fused":
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
@click.option("--engine-info", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="TensorRT layer-information JSON made elsewhere (trtexec --exportLayerInfo); one model only.")
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
