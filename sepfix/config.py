"""Configuration files, found and combined the way ruff finds and combines its own.

Where: for each model, the nearest folder at or above it that holds `.sepfix.toml`,
`sepfix.toml`, or a `pyproject.toml` with a `[tool.sepfix]` table (in that order of preference
within one folder; a `pyproject.toml` without the table is passed over). `--config FILE` uses
FILE for every model instead. Globs in a configuration are relative to the folder of the file
that holds them.

What (`sepfix.toml` spells the keys at the top level, `pyproject.toml` under `[tool.sepfix]`):

    select = ["SEP"]                    # codes, prefixes or rule names, as on the command line
    ignore = ["SEP007"]
    advice = false                      # also run info-level rules (ADV...), as --advice does
    exclude = ["legacy/", "*.tmp.onnx"] # gitignore-style: skipped when walking folders
    extend-exclude = []                 # added to the default excludes (.git, .venv, ...)

    [per-file-ignores]                  # gitignore-style glob -> codes or prefixes
    "exports/quantized/*.onnx" = ["SEP004"]

    [per-node-ignores]                  # glob -> {code: [node names or fnmatch patterns]}
    "model.onnx" = { "SEP004" = ["/backbone/conv1/Conv"] }

    [levels]                            # code or prefix -> error | warning | info
    SEP007 = "info"                     # info: shown only with --advice, never fails a check
    ADV001 = "warning"

    [repair]
    rtol = 1e-4
    atol = 1e-5
    input-shape = { input = [1, 3, 224, 224] }   # or ["input:1,3,224,224"]

Combining with the command line, as ruff does: rule selection is built in layers, the
configuration first and the command line last. A layer with `select` starts again from exactly
those rules; within a layer the more specific selector wins (`SEP004` over `SEP`), and at equal
specificity `ignore` wins over `select`. So `--select` replaces the configured selection and
`--ignore` removes rules from it. Per-file and per-node ignores apply whatever the selection.
`--rtol`, `--atol`, `--input-shape` and `--advice/--no-advice` win over the file.

An unknown key, a wrong type or an unknown rule code is a one-line error naming the file and
the key (exit 2).
"""

from __future__ import annotations

import fnmatch
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from sepfix.errors import SepfixError

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package
    import tomli as tomllib

CONFIG_FILES = (".sepfix.toml", "sepfix.toml", "pyproject.toml")
LEVELS = ("error", "warning", "info")
# Folders never walked into unless `exclude` replaces this list (ruff's idea, ONNX's usual suspects).
DEFAULT_EXCLUDE = (
    ".git", ".hg", ".svn", ".bzr", ".venv", "venv", ".tox", ".nox", "node_modules", "__pycache__",
    "site-packages", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".ipynb_checkpoints",
)
_KEYS = {
    "select": "list of rule codes, prefixes or names",
    "ignore": "list of rule codes, prefixes or names",
    "advice": "true or false",
    "exclude": "list of gitignore-style globs",
    "extend-exclude": "list of gitignore-style globs",
    "per-file-ignores": "table of glob = [codes]",
    "per-node-ignores": "table of glob = {code = [node names]}",
    "levels": "table of code = \"error\" | \"warning\" | \"info\"",
    "repair": "table with rtol, atol, input-shape",
}
_REPAIR_KEYS = ("rtol", "atol", "input-shape")


# --------------------------------------------------------------------------------------------
# gitignore-style globs


@dataclass(frozen=True)
class Glob:
    """One gitignore-style pattern, relative to `root`.

    A pattern with a slash other than a trailing one is anchored at `root`; one without matches
    a name at any depth. `*` and `?` stay within one path segment, `**` crosses segments, a
    trailing `/` matches folders only, and `!` in front re-includes what an earlier pattern
    matched. A file matches when it or any folder above it (below `root`) matches.
    """

    text: str
    root: Path
    regex: re.Pattern = field(compare=False, repr=False)
    negated: bool = False
    dir_only: bool = False

    @classmethod
    def compile(cls, text: str, root: Path) -> "Glob":
        pattern = text.strip()
        negated = pattern.startswith("!")
        if negated:
            pattern = pattern[1:]
        dir_only = pattern.endswith("/")
        pattern = pattern.rstrip("/")
        if not pattern:
            raise ValueError(f"empty pattern {text!r}")
        anchored = "/" in pattern
        pattern = pattern.lstrip("/")
        body = _translate(pattern)
        regex = re.compile(("" if anchored else "(?:.*/)?") + body + r"\Z", re.S)
        return cls(text, root, regex, negated, dir_only)

    def matches_here(self, relative: str, is_dir: bool) -> bool:
        return (is_dir or not self.dir_only) and self.regex.match(relative) is not None


def _translate(pattern: str) -> str:
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i) and (i == 0 or pattern[i - 1] == "/"):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i) and (i == 0 or pattern[i - 1] == "/") and i + 2 == n:
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1:i + 2] in ("!", "]") else i + 1)
            if end == -1:
                out.append(re.escape(c))
                i += 1
                continue
            inner = pattern[i + 1:end]
            if inner.startswith("!"):
                inner = "^" + inner[1:]
            out.append("[" + inner.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def relative_to(path: Path, root: Path) -> str | None:
    """`path` relative to `root` in POSIX form, or None when it is not below `root`."""
    try:
        return Path(os.path.abspath(path)).relative_to(Path(os.path.abspath(root))).as_posix()
    except ValueError:
        return None


def glob_match(globs: Iterable[Glob], path: Path, is_dir: bool = False) -> bool:
    """Whether gitignore-style `globs` (all with the same root) match `path` or a folder above it."""
    globs = list(globs)
    if not globs:
        return False
    relative = relative_to(path, globs[0].root)
    if relative is None or relative == ".":
        return False
    parts = relative.split("/")
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        here_is_dir = is_dir if depth == len(parts) else True
        verdict = None
        for glob in globs:
            if glob.matches_here(prefix, here_is_dir):
                verdict = not glob.negated
        if verdict:
            return True  # a folder that is excluded cannot have its files re-included (as in git)
    return False


# --------------------------------------------------------------------------------------------
# Rule tokens


def _rules():
    from sepfix.rules import all_rules

    return all_rules()


def rule_code(rule) -> str:
    return rule.code


def rule_name(rule) -> str:
    return rule.name


def default_level(rule) -> str:
    return rule.level.value


def normalize_level(level: str) -> str:
    return {"note": "info", "notice": "info"}.get(level, level)


def token_matches(code: str, name: str, token: str) -> bool:
    token = token.strip()
    return code.startswith(token.upper()) or name == token.lower()


def _specificity(token: str) -> int:
    """How narrow a selector is: a full code or a rule name beats a prefix, longer beats shorter."""
    token = token.strip()
    if any(token.lower() == rule_name(r) or token.upper() == rule_code(r) for r in _rules()):
        return 100
    return len(token)


def check_tokens(tokens: Iterable[str], where: str) -> list[str]:
    """The tokens, stripped; a SepfixError for one that names no rule."""
    checked = []
    for token in tokens:
        token = str(token).strip()
        if not token:
            continue
        if not any(token_matches(rule_code(r), rule_name(r), token) for r in _rules()):
            raise SepfixError(f"unknown rule or prefix {token!r} in {where}: `sepfix rules` lists them")
        checked.append(token)
    return checked


def split_codes(values: Iterable[str]) -> list[str]:
    """`--select A,B --select C` -> [A, B, C]."""
    return [code.strip() for value in values for code in str(value).split(",") if code.strip()]


# --------------------------------------------------------------------------------------------
# Files


@dataclass
class Config:
    """One configuration file's settings (None: not set there), or the defaults (`path` None)."""

    path: Path | None
    root: Path
    select: list[str] | None = None
    ignore: list[str] = field(default_factory=list)
    advice: bool | None = None
    exclude: list[Glob] = field(default_factory=list)
    exclude_set: bool = False  # `exclude` given: it replaces DEFAULT_EXCLUDE
    extend_exclude: list[Glob] = field(default_factory=list)
    per_file_ignores: list[tuple[list[Glob], list[str]]] = field(default_factory=list)
    per_node_ignores: list[tuple[list[Glob], dict[str, list[str]]]] = field(default_factory=list)
    levels: dict[str, str] = field(default_factory=dict)
    rtol: float | None = None
    atol: float | None = None
    input_shapes: dict[str, list[int]] = field(default_factory=dict)

    @property
    def excludes(self) -> list[Glob]:
        defaults = [] if self.exclude_set else [Glob.compile(name + "/", self.root) for name in DEFAULT_EXCLUDE]
        return defaults + self.exclude + self.extend_exclude

    def excluded(self, path: Path, is_dir: bool = False) -> bool:
        return glob_match(self.excludes, path, is_dir)


def default_config(root: Path | None = None) -> Config:
    return Config(path=None, root=Path(os.path.abspath(root or ".")))


def _table_of(path: Path) -> dict[str, Any] | None:
    """The sepfix table of a configuration file; None for a pyproject.toml without one."""
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise SepfixError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise SepfixError(f"{path}: cannot read the configuration ({exc.strerror or exc})") from None
    if path.name == "pyproject.toml":
        tool = document.get("tool", {})
        table = tool.get("sepfix") if isinstance(tool, dict) else None
        return table if isinstance(table, dict) else None
    return document


def load(path: str | os.PathLike, required: bool = True) -> Config | None:
    """Parse and check one configuration file. A `pyproject.toml` without `[tool.sepfix]` gives
    None (or the defaults when `required`, as for `--config`)."""
    path = Path(os.path.abspath(path))
    if not path.is_file():
        raise SepfixError(f"{path}: no such configuration file")
    table = _table_of(path)
    root = path.parent
    if table is None:
        return default_config(root) if required else None
    section = "[tool.sepfix]" if path.name == "pyproject.toml" else path.name
    prefix = "tool.sepfix." if path.name == "pyproject.toml" else ""
    config = Config(path=path, root=root)

    def bad(key: str, expected: str) -> SepfixError:
        return SepfixError(f"{path}: {prefix}{key} must be {expected}")

    def strings(key: str, value: Any) -> list[str]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad(key, "a list of strings")
        return value

    def globs(key: str, values: list[str]) -> list[Glob]:
        try:
            return [Glob.compile(v, root) for v in values]
        except ValueError as exc:
            raise SepfixError(f"{path}: {prefix}{key}: {exc}") from None

    for key, value in table.items():
        if key not in _KEYS:
            raise SepfixError(f"{path}: unknown key {key!r} in {section} (known: {', '.join(sorted(_KEYS))})")
        where = f"{path.name} {prefix}{key}"
        if key == "select":
            config.select = check_tokens(strings(key, value), where)
        elif key == "ignore":
            config.ignore = check_tokens(strings(key, value), where)
        elif key == "advice":
            if not isinstance(value, bool):
                raise bad(key, "true or false")
            config.advice = value
        elif key == "exclude":
            config.exclude, config.exclude_set = globs(key, strings(key, value)), True
        elif key == "extend-exclude":
            config.extend_exclude = globs(key, strings(key, value))
        elif key == "per-file-ignores":
            if not isinstance(value, dict):
                raise bad(key, "a table of \"glob\" = [codes]")
            for pattern, codes in value.items():
                entry = f"{key}.{pattern!r}"
                config.per_file_ignores.append((globs(entry, [pattern]),
                                                check_tokens(strings(entry, codes), f"{path.name} {prefix}{entry}")))
        elif key == "per-node-ignores":
            if not isinstance(value, dict):
                raise bad(key, "a table of \"glob\" = {code = [node names]}")
            for pattern, by_code in value.items():
                entry = f"{key}.{pattern!r}"
                if not isinstance(by_code, dict):
                    raise bad(entry, "a table of code = [node names]")
                nodes = {}
                for code, names in by_code.items():
                    check_tokens([code], f"{path.name} {prefix}{entry}")
                    nodes[code.strip()] = strings(f"{entry}.{code}", names)
                config.per_node_ignores.append((globs(entry, [pattern]), nodes))
        elif key == "levels":
            if not isinstance(value, dict):
                raise bad(key, 'a table of code = "error" | "warning" | "info"')
            for code, level in value.items():
                check_tokens([code], f"{path.name} {prefix}{key}")
                if level not in LEVELS:
                    raise bad(f"{key}.{code}", '"error", "warning" or "info"')
                config.levels[code.strip()] = level
        elif key == "repair":
            _load_repair(config, value, bad, prefix, path)
    return config


def _load_repair(config: Config, value: Any, bad, prefix: str, path: Path) -> None:
    if not isinstance(value, dict):
        raise bad("repair", "a table")
    for key, item in value.items():
        if key not in _REPAIR_KEYS:
            raise SepfixError(f"{path}: unknown key {key!r} in [{prefix}repair] (known: {', '.join(_REPAIR_KEYS)})")
        if key in ("rtol", "atol"):
            if isinstance(item, bool) or not isinstance(item, (int, float)) or item < 0:
                raise bad(f"repair.{key}", "a number >= 0")
            setattr(config, key, float(item))
        else:
            config.input_shapes = _input_shapes(item, lambda: bad("repair.input-shape",
                                                                  '{name = [dims]} or ["name:d1,d2,..."]'))


def _input_shapes(value: Any, bad) -> dict[str, list[int]]:
    if isinstance(value, dict):
        shapes = {}
        for name, dims in value.items():
            if not isinstance(dims, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                     for d in dims):
                raise bad()
            shapes[name] = list(dims)
        return shapes
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        from sepfix.validate.numeric import parse_input_shapes

        return parse_input_shapes(value)
    raise bad()


def find(start: Path) -> Path | None:
    """The nearest configuration file in `start` (a folder) or a folder above it."""
    folder = Path(os.path.abspath(start))
    for candidate in (folder, *folder.parents):
        for name in CONFIG_FILES:
            path = candidate / name
            if path.is_file() and (name != "pyproject.toml" or _table_of(path) is not None):
                return path
    return None


class Resolver:
    """Finds the configuration that governs each file or folder, once per folder."""

    def __init__(self, config_file: str | os.PathLike | None = None, isolated: bool = False):
        self._fixed = load(config_file) if config_file is not None else None
        self._isolated = isolated
        self._by_folder: dict[Path, Config] = {}
        self._by_file: dict[Path, Config] = {}

    def for_folder(self, folder: Path) -> Config:
        if self._fixed is not None:
            return self._fixed
        folder = Path(os.path.abspath(folder))
        if self._isolated:
            return default_config(Path.cwd())
        if folder not in self._by_folder:
            found = find(folder)
            if found is None:
                config = default_config(Path.cwd())
            else:
                config = self._by_file.get(found) or load(found)
                self._by_file[found] = config
            self._by_folder[folder] = config
        return self._by_folder[folder]

    def for_path(self, path: Path) -> Config:
        path = Path(os.path.abspath(path))
        return self.for_folder(path if path.is_dir() else path.parent)


# --------------------------------------------------------------------------------------------
# Settings for one model


@dataclass
class CommandLine:
    """What the command line says about settings (None / empty: not given)."""

    select: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    advice: bool | None = None
    rtol: float | None = None
    atol: float | None = None
    input_shapes: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class FileSettings:
    """Everything that decides what sepfix does with one model; plain data, so it can go to a
    worker process."""

    path: str
    config: str | None
    codes: list[str]  # rules to run, in catalogue order
    levels: dict[str, str]  # code -> level, for every rule in `codes`
    advice: bool
    shown_info: list[str]  # codes whose info findings show although advice is off (selected by name)
    ignored_codes: list[str]  # per-file ignores that apply to this model (codes)
    node_ignores: dict[str, list[str]]  # code -> node patterns, per-node ignores for this model
    configured_levels: list[str] = field(default_factory=list)  # codes whose level the configuration sets
    rtol: float | None = None
    atol: float | None = None
    input_shapes: dict[str, list[int]] = field(default_factory=dict)

    def suppressed(self, finding) -> bool:
        """Whether a per-file or per-node ignore of the configuration silences this finding."""
        if finding.code in self.ignored_codes:
            return True
        patterns = self.node_ignores.get(finding.code, ())
        return any(fnmatch.fnmatchcase(name, pattern)
                   for pattern in patterns for name in (finding.node, finding.location))

    def shows(self, finding) -> bool:
        """Info findings show only with advice (or when their rule was selected by its code)."""
        return finding.severity != "info" or self.advice or finding.code in self.shown_info

    def rules(self) -> list:
        wanted = set(self.codes)
        return [r for r in _rules() if rule_code(r) in wanted]


def _layer(enabled: set[str], select: list[str] | None, ignore: list[str]) -> set[str]:
    """One ruff-style layer of rule selection over rule codes."""
    rules = _rules()
    if select:
        enabled = set()
    steps = sorted([(_specificity(t), 0, t) for t in (select or [])] + [(_specificity(t), 1, t) for t in ignore])
    for _, is_ignore, token in steps:
        matched = {rule_code(r) for r in rules if token_matches(rule_code(r), rule_name(r), token)}
        enabled = enabled - matched if is_ignore else enabled | matched
    return enabled


def _level_for(code: str, name: str, base: str, overrides: dict[str, str]) -> str:
    best, level = -1, base
    for token, value in overrides.items():
        if token_matches(code, name, token) and _specificity(token) > best:
            best, level = _specificity(token), value
    return level


def settings_for(path: str | os.PathLike, config: Config, cli: CommandLine) -> FileSettings:
    """The settings for one model: the configuration that governs it, then the command line."""
    check_tokens(cli.select, "--select")
    check_tokens(cli.ignore, "--ignore")
    rules = _rules()
    enabled = {rule_code(r) for r in rules}
    enabled = _layer(enabled, config.select, config.ignore)
    enabled = _layer(enabled, cli.select or None, cli.ignore)
    advice = cli.advice if cli.advice is not None else bool(config.advice)
    exact = {t.strip().upper() for t in (cli.select or config.select or [])} | {
        t.strip().lower() for t in (cli.select or config.select or [])}
    levels, codes, shown, configured = {}, [], [], []
    for rule in rules:
        code, name = rule_code(rule), rule_name(rule)
        if code not in enabled:
            continue
        level = _level_for(code, name, normalize_level(default_level(rule)), config.levels)
        if any(token_matches(code, name, token) for token in config.levels):
            configured.append(code)
        named = code in exact or name in exact
        if rule.is_advice and level == "info" and not advice and not named:
            continue  # advice rules run only with --advice (or when selected by code, or raised
            # to a higher level); a rule's info findings are filtered by `shows`, since one
            # occurrence may be a warning
        codes.append(code)
        levels[code] = level
        if named:
            shown.append(code)
    target = Path(path)
    ignored: list[str] = []
    for globs, tokens in config.per_file_ignores:
        if glob_match(globs, target):
            ignored += [rule_code(r) for r in rules
                        if any(token_matches(rule_code(r), rule_name(r), t) for t in tokens)]
    node_ignores: dict[str, list[str]] = {}
    for globs, by_token in config.per_node_ignores:
        if glob_match(globs, target):
            for token, names in by_token.items():
                for rule in rules:
                    if token_matches(rule_code(rule), rule_name(rule), token):
                        node_ignores.setdefault(rule_code(rule), []).extend(names)
    shapes = dict(config.input_shapes)
    shapes.update(cli.input_shapes)
    return FileSettings(
        path=os.fspath(path), config=os.fspath(config.path) if config.path else None,
        codes=codes, levels=levels, advice=advice, shown_info=shown,
        ignored_codes=sorted(set(ignored)), node_ignores=node_ignores, configured_levels=configured,
        rtol=cli.rtol if cli.rtol is not None else config.rtol,
        atol=cli.atol if cli.atol is not None else config.atol,
        input_shapes=shapes,
    )


def apply(settings: FileSettings, findings: list) -> tuple[list, int]:
    """Levels, per-file and per-node ignores, and advice applied to one model's findings:
    (what is reported, how many were suppressed by the configuration)."""
    kept, suppressed = [], 0
    for finding in findings:
        base = normalize_level(finding.severity)
        rule_level = settings.levels.get(finding.code)
        # A level set in the configuration wins; otherwise the finding's own (which may differ
        # from its rule's for one occurrence).
        if rule_level is not None and finding.code in settings.configured_levels:
            finding.severity = rule_level
        else:
            finding.severity = base if base in LEVELS else (rule_level or "warning")
        if settings.suppressed(finding):
            suppressed += 1
        elif settings.shows(finding):
            kept.append(finding)
    return kept, suppressed


class FilteredRule:
    """A rule whose findings pass through the configuration's ignores, so a repair leaves a
    suppressed node alone. Everything but detection is the rule's own."""

    def __init__(self, rule, settings: FileSettings):
        self._rule = rule
        self._settings = settings

    def __getattr__(self, name):
        if name.startswith("__") or name in ("_rule", "_settings"):  # copy/pickle probes: not delegated
            raise AttributeError(name)
        return getattr(self._rule, name)

    def __repr__(self) -> str:
        return f"FilteredRule({rule_code(self._rule)})"

    def _keep(self, findings) -> list:
        return [f for f in findings if not self._settings.suppressed(f)]

    def findings(self, view):
        return self._keep(self._rule.findings(view))


def filtered_rules(settings: FileSettings) -> list:
    rules = settings.rules()
    if not settings.ignored_codes and not settings.node_ignores:
        return rules
    return [FilteredRule(r, settings) for r in rules]


# --------------------------------------------------------------------------------------------
# --show-settings


def show(settings: FileSettings, config: Config) -> str:
    """The resolved settings for one model, as `sepfix check --show-settings` prints them."""
    lines = [
        f"file: {settings.path}",
        f"config: {settings.config or '(none found: defaults)'}",
        f"excluded when walking folders: {'yes' if config.excluded(Path(settings.path)) else 'no'}",
        f"advice: {str(settings.advice).lower()}",
        "rules:",
    ]
    lines += [f"  {code} {settings.levels[code]}" for code in settings.codes]
    if not settings.codes:
        lines.append("  (none)")
    lines.append("exclude: " + (", ".join(g.text for g in config.excludes) or "(none)"))
    lines.append("per-file ignores here: " + (", ".join(settings.ignored_codes) or "(none)"))
    if settings.node_ignores:
        lines.append("per-node ignores here:")
        lines += [f"  {code}: {', '.join(nodes)}" for code, nodes in sorted(settings.node_ignores.items())]
    else:
        lines.append("per-node ignores here: (none)")
    shapes = ", ".join(f"{name}:{','.join(map(str, dims))}" for name, dims in settings.input_shapes.items())
    lines.append(f"repair: rtol {_or_default(settings.rtol, '1e-4')}, atol {_or_default(settings.atol, '1e-5')}, "
                 f"input-shape {shapes or '(default)'}")
    return "\n".join(lines)


def _or_default(value: float | None, default: str) -> str:
    return f"{value:g}" if value is not None else f"{default} (default)"
