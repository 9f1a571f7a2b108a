"""`sepfix repair`: detect, rewrite, re-check, prove, and only then write.

The two promises: the repaired model computes the same thing (onnxruntime compares it with the
original, or with an independent numpy reference when the original is invalid), and the user's
file is never damaged (a temporary file beside the output, fsync, atomic rename; the input is
replaced only with --in-place, and only after validation passed). External weights go to a new
data file with a name no other file has, so no existing data file is ever appended to or
overwritten (onnx issue 6655), and a crash at any point leaves the old model and its data intact.

Near the cost of a copy: the rewrite works on the structure `model_io.load_for_check` reads,
weights left in the input's files; the save copies the weights no fix touched from file to file
(`model_save`); the proof gives onnxruntime files it can map, one session after the other.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from sepfix import model_io, model_save
from sepfix.atomic import atomic_path
from sepfix.errors import SepfixError
from sepfix.findings import Finding
from sepfix.rewrite import AppliedFix, Rewrite, run_passes
from sepfix.rules import Applicability, select_rules

PROOF_MAPPED_ABOVE = 16 * 2**20
"""Inline models larger than this (bytes) go to the proof in external-data form, so that
onnxruntime maps their weights instead of parsing a second copy out of the protobuf (writing a
view costs a few milliseconds; the crash tests' 30 MB model takes this path)."""
_RULES = {rule.code: rule for rule in select_rules(advice=True)}


@dataclass
class RepairOptions:
    select: list[str] | None = None
    ignore: list[str] | None = None
    validate: bool = True
    rtol: float | None = None
    atol: float | None = None
    input_shapes: dict[str, list[int]] | None = None
    inputs: str | None = None  # an .npz of user inputs
    seed: int = 0
    keep_stages: bool = False  # keep the model after each fix pass (for the HTML report)
    rules: list | None = None  # the rules to apply, as resolved from a configuration (wins over select/ignore)
    unsafe_fixes: bool = False  # without validation, apply validated fixes too

    @property
    def safe_only(self) -> bool:
        """Without the proof only bit-exact fixes apply, unless the user asked otherwise."""
        return not self.validate and not self.unsafe_fixes


@dataclass
class RepairReport:
    """What a repair did, for the text/JSON report and the exit code."""

    input: str
    output: str | None = None
    fixes: list[AppliedFix] = field(default_factory=list)
    remaining: list[Finding] = field(default_factory=list)
    found: list[Finding] = field(default_factory=list)  # what the repair found in the input
    validation: object | None = None  # sepfix.validate.numeric.Validation
    written: bool = False
    dry_run: bool = False
    in_place: bool = False
    message: str = ""
    seconds: float = 0.0
    # For `--report` (sepfix.html_report): the models before and after, and the options used.
    # Not part of to_dict.
    original_model: onnx.ModelProto | None = field(default=None, repr=False, compare=False)
    repaired_model: onnx.ModelProto | None = field(default=None, repr=False, compare=False)
    stages: list = field(default_factory=list, repr=False, compare=False)  # see rewrite.Rewrite
    options: RepairOptions | None = field(default=None, repr=False, compare=False)
    weights: model_io.LoadedModel | None = field(default=None, repr=False, compare=False)
    """Reads the weights the models above keep in the input's files (`repair_file` only)."""

    @property
    def changed(self) -> bool:
        return bool(self.fixes)

    @property
    def left(self) -> list[Finding]:
        """Findings still in the model that fail a check (info-level ones do not)."""
        return [f for f in self.remaining if f.counts]

    @property
    def held_back(self) -> list[Finding]:
        """Fixable findings left because they need the proof and it was skipped."""
        options = self.options
        return [f for f in self.left if f.fixable and options is not None and options.safe_only]

    @property
    def exit_code(self) -> int:
        if self.validation is not None and not self.validation.passed:
            return 1
        return 1 if self.left else 0

    @property
    def verdict(self) -> str:
        if self.exit_code and (self.validation is not None and not self.validation.passed or not self.fixes):
            return "FAILED"
        if self.left:
            return "PARTIAL"
        if self.fixes and self.validation is None:
            return "UNVALIDATED"
        return "PASSED"

    def to_dict(self) -> dict:
        return {
            "input": self.input,
            "output": self.output,
            "written": self.written,
            "dry_run": self.dry_run,
            "changed": self.changed,
            "fixes": [f.to_dict() for f in self.fixes],
            "remaining": [f.to_dict() for f in self.remaining],
            "held_back": [f.to_dict() for f in self.held_back],
            "validation": self.validation.to_dict() if self.validation is not None else None,
            "verdict": self.verdict,
            "message": self.message,
            "seconds": round(self.seconds, 4),
            "exit_code": self.exit_code,
        }

    def to_text(self) -> str:
        """Every line names the model; the last one is the verdict, with what was written."""
        name = self.input
        lines = [f"{name}: {f.code} {f.name} at {f.node if f.graph == 'main' else f.graph + '/' + f.node}: "
                 f"{f.description}" for f in self.fixes]
        held = {id(f) for f in self.held_back}
        for f in self.left:
            why = ("needs the numerical proof: drop --no-validate, or add --unsafe-fixes" if id(f) in held
                   else f.message)
            lines.append(f"{name}: {f.location}: {f.code} {f.name} not repaired: {why}")
        if self.validation is not None:
            lines += [f"{name}: {line}" for line in _validation_lines(self.validation)]
        elif self.fixes:
            lines.append(f"{name}: not validated (--no-validate): no proof that the repaired model computes the same")
        lines.append(f"{self.verdict}: {name}: {self._outcome()} ({self.seconds:.2f} s)")
        return "\n".join(lines)

    def _outcome(self) -> str:
        count = len(self.fixes)
        fixes = f"{count} fix{'es' if count != 1 else ''}" if count else "nothing to repair"
        if not count and self.left:
            fixes = f"nothing sepfix can apply ({len(self.left)} finding{'s' if len(self.left) != 1 else ''} left)"
        if self.dry_run:
            if self.in_place:
                target = f"would replace {self.input}" if count else "would leave it as it is"
            elif self.output:
                target = f"would write {self.output}" if count else f"would copy it unchanged to {self.output}"
            else:
                target = "nothing would be written (no -o OUT or --in-place given)"
            if count and self.validation is not None and not self.validation.passed:
                target = "validation refused it: nothing would be written"
            return f"{fixes}; dry run: {target}"
        if self.written:
            if self.in_place:
                target = f"replaced {self.input} in place"
            elif count:
                target = f"wrote {self.output}"
            else:
                target = f"copied it unchanged to {self.output}"
        elif self.in_place and not count:
            target = "left it as it was"
        elif count and self.validation is not None and not self.validation.passed:
            target = "validation refused it: nothing written"
        else:
            target = "nothing written"
        extra = f"; {self.message}" if self.message.startswith("removed") else ""
        return f"{fixes}; {target}{extra}"


def _validation_lines(validation) -> list[str]:
    """The proof: what ran each model and the verdict, then one labelled line per output."""
    state = "passed" if validation.passed else "FAILED"
    sets = f"{validation.input_sets} input set{'s' if validation.input_sets != 1 else ''}"
    lines = [f"validation {state}: {validation.runners()}, {sets}, rtol {validation.rtol:g}, atol {validation.atol:g}"]
    if validation.input_shapes:
        shapes = ", ".join(f"{name} {'x'.join(map(str, dims))}" for name, dims in validation.input_shapes.items())
        lines.append(f"inputs: {shapes}" + (f" ({validation.shapes_note})" if validation.shapes_note else ""))
    lines += validation.output_lines()
    if getattr(validation, "fallback_reason", ""):
        lines.append(f"note: onnxruntime refused the original as invalid ({validation.fallback_reason}), so the "
                     "numpy reference ran it (onnx.reference with an independent numpy Conv that takes the only "
                     "group and kernel consistent with the weight)")
    if not validation.outputs and validation.message:
        lines.append(validation.message)
    return lines


def repair_proto(model: onnx.ModelProto, options: RepairOptions, weights: model_io.LoadedModel | None = None) -> Rewrite:
    """Rewrite in memory: the repaired model, the fixes, and the findings left after them.
    `weights` reads what `model` keeps in files (see `rewrite.fix_pass`)."""
    rules = options.rules if options.rules is not None else select_rules(options.select, options.ignore)
    applies = _safe_fix if options.safe_only else None
    return run_passes(model, rules, keep_stages=options.keep_stages, applies=applies, weights=weights)


def blocks_after_repair(path: str | os.PathLike, rules: list) -> int:
    """How many canonical depthwise-separable blocks the model at `path` holds once every fix
    of `rules` is applied: the fix passes in memory, weights left in the files, nothing proven
    or written (what `check` and `validate` say `repair` would restore)."""
    from sepfix.patterns import find_blocks

    loaded = model_io.load_for_check(path)
    return len(find_blocks(repair_proto(loaded.model, RepairOptions(rules=rules), loaded).view.inlined()))


def _safe_fix(finding: Finding) -> bool:
    return finding.match is not None and _RULES[finding.code].applicability is Applicability.SAFE


def _validate(original, candidate, options: RepairOptions):
    from sepfix.runtime import onnxruntime
    from sepfix.validate import numeric

    onnxruntime("the repair's numerical proof (--no-validate skips it, not recommended)")
    user_inputs = numeric.load_npz_inputs(options.inputs) if options.inputs else None
    return numeric.compare_models(
        original, candidate,
        rtol=numeric.DEFAULT_RTOL if options.rtol is None else options.rtol,
        atol=numeric.DEFAULT_ATOL if options.atol is None else options.atol,
        shapes=options.input_shapes, seed=options.seed, user_inputs=user_inputs,
    )


def repair(model, options: RepairOptions | None = None, **kwargs) -> tuple[onnx.ModelProto, RepairReport]:
    """Python API: repair a path or ModelProto in memory and validate it; writes nothing.

    Returns the repaired model (the same object when nothing needed fixing) and the report;
    `report.validation.passed` says whether the proof held.
    """
    options = options or RepairOptions(**kwargs)
    start = time.perf_counter()
    if isinstance(model, onnx.ModelProto):
        name, original = "<model>", model
    else:
        name, original = str(model), model_io.load_full(model).model
    result = repair_proto(original, options)
    repaired, fixes = result.model, result.fixes
    report = RepairReport(input=name, fixes=fixes, remaining=result.remaining, found=result.found,
                          original_model=original, repaired_model=repaired, options=options,
                          stages=result.stages)
    if fixes and options.validate:
        report.validation = _validate(original, repaired, options)
    report.seconds = time.perf_counter() - start
    return repaired, report


def repair_file(
    path: str,
    output: str | None = None,
    in_place: bool = False,
    backup: bool = False,
    dry_run: bool = False,
    options: RepairOptions | None = None,
    force: bool = False,
) -> RepairReport:
    """The CLI's repair: everything `repair` does, then the safe write. An existing `output`
    is replaced only with `force`."""
    options = options or RepairOptions()
    start = time.perf_counter()
    source = Path(path)
    target = _target(source, output, in_place, dry_run, force)
    original = model_io.load_for_check(path)  # the weights stay in the files
    external = original.keeps_external_data
    result = repair_proto(original.model, options, original)
    repaired, fixes = original.view(result.model), result.fixes
    report = RepairReport(input=path, output=str(target) if target else None, fixes=fixes,
                          remaining=result.remaining, found=result.found, dry_run=dry_run, in_place=in_place,
                          original_model=original.model, repaired_model=result.model, options=options,
                          stages=result.stages, weights=original)
    if not fixes and report.left:
        report.message = "nothing sepfix can apply: nothing written"
        report.seconds = time.perf_counter() - start
        return report
    if not fixes:
        report.message = "nothing to repair"
        if not dry_run and target is not None and not in_place:
            _write_unchanged(source, original, target, external)
            report.written = True
        elif in_place:
            report.message += "; input left as it was"
        report.seconds = time.perf_counter() - start
        return report
    if dry_run:
        if options.validate:
            report.validation = _dry_run_proof(source, original, repaired, external, options)
        report.seconds = time.perf_counter() - start
        return report
    replaced_data = _data_files(target) if target.exists() else set()
    report.validation, report.written = _write_validated(source, original, repaired, target, external, options,
                                                         backup and in_place)
    if not report.written:
        report.message = "validation refused the repair: nothing written"
    elif replaced_data:
        removed = _remove_stale_data(target, replaced_data)
        if removed:
            report.message = "removed the replaced model's old data file " + ", ".join(p.name for p in removed)
    report.seconds = time.perf_counter() - start
    return report


def _data_files(model: Path) -> set[Path]:
    """External data files a model file names; empty when it cannot be read (then nothing of it
    is ever removed)."""
    return model_io.referenced_data_files(model) or set()


def _remove_stale_data(target: Path, replaced: set[Path]) -> list[Path]:
    """Delete the data files the model at `target` used before it was replaced, when neither the
    new model nor any other model in that folder uses them. Runs only after the atomic replace:
    a crash before it leaves an unused file, never a model without its data."""
    stale = replaced - _data_files(target)
    for sibling in target.parent.glob("*.onnx"):
        if stale and sibling.resolve() != target.resolve():
            stale -= _data_files(sibling)
    backup = target.with_name(target.name + ".bak")
    if backup.exists():
        stale -= _data_files(backup)
    removed = []
    for path in sorted(stale):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def _target(source: Path, output: str | None, in_place: bool, dry_run: bool, force: bool = False) -> Path | None:
    if in_place and output:
        raise SepfixError("give either -o OUT or --in-place, not both")
    if in_place:
        return source
    if output is None:
        if dry_run:
            return None
        raise SepfixError("repair needs -o OUT (or --in-place to replace the input after validation)")
    target = Path(output)
    if target.exists() and source.exists() and target.resolve() == source.resolve():
        raise SepfixError(f"-o {output} is the input file: use --in-place to replace it")
    if target.exists() and source.exists() and target.resolve() in _data_files(source):
        raise SepfixError(f"-o {output} is a data file the input reads its weights from: choose another name")
    if target.is_dir():
        raise SepfixError(f"-o {output} is a directory")
    if (target.exists() or target.is_symlink()) and not force:
        raise SepfixError(f"-o {output} exists: pass --force to replace it")
    if not (target.parent if str(target.parent) else Path(".")).is_dir():
        raise SepfixError(f"cannot write {output}: folder {target.parent} does not exist")
    return target


def _write_unchanged(source: Path, original: model_io.LoadedModel, target: Path, external: bool) -> None:
    """A faithful copy: the same bytes, or for external data the same model with fresh data."""
    with atomic_path(target) as temporary:
        if external:
            _save(original, temporary, target, external=True)
        else:
            shutil.copyfile(source, temporary)


def _fresh_data_name(target: Path) -> str:
    """A data-file name nobody uses yet, created empty here (O_EXCL) so that a repair running
    beside this one cannot pick it too: never append to or overwrite an existing file."""
    names = [f"{target.name}.data"] + [f"{target.name}.{uuid.uuid4().hex[:8]}.data" for _ in range(4)]
    for name in names:
        try:
            os.close(os.open(target.parent / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        except OSError as error:
            raise SepfixError(f"cannot write {target.parent / name}: {error.strerror or error}") from None
        return name
    raise SepfixError(f"cannot find a free data-file name beside {target}")


def _save(model: model_io.LoadedModel, temporary: Path, target: Path, external: bool) -> Path | None:
    """Write to `temporary`; external weights go to a fresh file beside `target`.
    Returns the data file written, if any."""
    if not external and model_save.fits_inline(model):
        model_save.save_inline(model, temporary)
        return None
    data = target.parent / _fresh_data_name(target)
    try:
        model_save.save_external(model, temporary, data)
    except BaseException:
        data.unlink(missing_ok=True)  # the name was reserved above: nothing else wrote it
        raise
    return data


def _write_validated(source: Path, original: model_io.LoadedModel, repaired: model_io.LoadedModel, target: Path,
                     external: bool, options, backup: bool):
    """Write to a temporary file beside `target`, prove that file, then move it into place."""
    validation = None
    data_file = None
    try:
        with atomic_path(target) as temporary:
            data_file = _save(repaired, temporary, target, external)
            if options.validate:
                validation = _prove(source, original, temporary, data_file is not None, options)
                if not validation.passed:
                    raise _Refused()
            if backup:
                _backup(source)
    except _Refused:
        if data_file is not None:
            with contextlib.suppress(FileNotFoundError):
                data_file.unlink()
        return validation, False
    except BaseException:
        if data_file is not None:
            with contextlib.suppress(FileNotFoundError):
                data_file.unlink()
        raise
    return validation, True


def _prove(source: Path, original: model_io.LoadedModel, candidate: Path, candidate_external: bool, options):
    """Prove the written candidate against the input, both as files onnxruntime can map: an
    inline file over PROOF_MAPPED_ABOVE goes as an external-data view of itself (the candidate,
    beside it) or as a temporary external-data copy (the input: its folder is not ours)."""
    with contextlib.ExitStack() as cleanup:
        original_path, candidate_path = source, candidate
        if not original.keeps_external_data and source.stat().st_size > PROOF_MAPPED_ABOVE:
            folder = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix=".sepfix-proof-",
                                                                            dir=candidate.parent)))
            original_path = folder / "original.onnx"
            (folder / "original.onnx.data").touch()
            model_save.save_external(original, original_path, folder / "original.onnx.data", durable=False)
        if not candidate_external and candidate.stat().st_size > PROOF_MAPPED_ABOVE:
            candidate_path = candidate.with_name(candidate.name + ".view.onnx")
            cleanup.callback(candidate_path.unlink, missing_ok=True)
            model_save.external_view(candidate, candidate_path)
        return _validate(original_path, candidate_path, options)


def _dry_run_proof(source: Path, original: model_io.LoadedModel, repaired: model_io.LoadedModel, external: bool,
                   options):
    """The proof of a dry run: the candidate is written to a temporary folder, proven, removed."""
    with tempfile.TemporaryDirectory(prefix="sepfix-dry-run-") as folder:
        candidate = Path(folder) / "repaired.onnx"
        data_file = _save(repaired, candidate, candidate, external)
        return _prove(source, original, candidate, data_file is not None, options)


def _backup(source: Path) -> None:
    backup = source.with_name(source.name + ".bak")
    with atomic_path(backup) as temporary:
        shutil.copyfile(source, temporary)


class _Refused(Exception):
    """Validation failed: unwind the temporary write without touching the target."""
