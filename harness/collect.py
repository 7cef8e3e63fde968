"""pytest collection: a suite file becomes one item per case × variant (× model)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness.attribution import canonical_name
from harness.engine import ImageKey, Request, case_uid
from harness.errors import HarnessError, ModelError, SpecError
from harness.evaluate import (
    RESULT_COLUMNS,
    Evaluation,
    ItemContext,
    base_row,
    evaluate,
    row_properties,
)
from harness.perturb import OriginalSettings
from harness.spec import PYTEST_MARKERS, CaseSpec, SuiteSpec, VariantSpec, load_suite
from harness.verdicts import Judgement

if TYPE_CHECKING:
    from harness.plugin import XaiState


class CaseError(Exception):
    """The case (or this variant of it) cannot be run; carries every problem found."""

    def __init__(self, errors: list[BaseException]) -> None:
        self.errors = errors
        super().__init__("\n".join(_error_text(e) for e in errors))


class VerdictFailure(Exception):
    """The oracle failed the item."""

    def __init__(self, judgement: Judgement) -> None:
        self.judgement = judgement
        super().__init__(judgement.message)


def _error_text(error: BaseException) -> str:
    return error.format() if isinstance(error, SpecError) else str(error)


def _state(config: pytest.Config) -> XaiState:
    from harness.plugin import STATE_KEY

    return config.stash[STATE_KEY]


_RESERVED_KEY = pytest.StashKey[frozenset[str]]()


def _reserved_markers(config: pytest.Config) -> frozenset[str]:
    """Marker names that mean something to pytest, a plugin or the ini file: a tag of
    that name would act (skip, xfail, time out, ...) instead of labelling. Taken once,
    before the first suite registers its own tags."""
    reserved = config.stash.get(_RESERVED_KEY, None)
    if reserved is None:
        names = {str(line).split(":")[0].split("(")[0].strip() for line in config.getini("markers")}
        reserved = frozenset(names | PYTEST_MARKERS)
        config.stash[_RESERVED_KEY] = reserved
    return reserved


def item_name(
    case_id: str,
    variant: str,
    *,
    sweep: str | None = None,
    model: str | None = None,
    explainer: str | None = None,
) -> str:
    """The item's name: ``case_id[variant-sweep-model-explainer]``.

    The one place that spells item ids (suites, the report and the results table read
    them back). A part is given only when it distinguishes items of one case: the sweep
    value of a swept variant, the model when a run has several, the explainer when a
    run has several (``/`` becomes ``_`` so that ``-k gradcam`` selects by substring and
    the id stays one path segment).
    """
    parts = [variant]
    parts += [part for part in (sweep, model) if part]
    if explainer:
        parts.append(explainer.replace("/", "_"))
    return f"{case_id}[{'-'.join(parts)}]"


class SuiteFile(pytest.File):
    """A ``*.xai.yaml`` file."""

    def collect(self) -> Iterator[pytest.Item]:
        # One broken file must not stop the session: whatever escapes becomes an error
        # item of this file, after the items already yielded.
        try:
            yield from self._collect()
        except Exception as exc:  # noqa: BLE001
            rel = _state(self.config).relative(self.path)
            yield SuiteErrorItem.from_parent(
                self,
                name=f"{self.path.name}[collection]",
                error=SpecError(rel, None, "", f"cannot collect this file: {type(exc).__name__}: {exc}"),
            )

    def _collect(self) -> Iterator[pytest.Item]:
        state = _state(self.config)
        rel = state.relative(self.path)
        suite = load_suite(self.path)
        if suite.error is not None:
            yield SuiteErrorItem.from_parent(self, name=self.path.name, error=_relocated(suite.error, rel))
            return
        models = state.model_override or suite.models
        if not models:
            yield SuiteErrorItem.from_parent(
                self,
                name=self.path.name,
                error=SpecError(rel, 1, "model", "no model under test: give 'model' in the suite or --xai-model NAME"),
            )
            return
        try:
            explainers = explainer_keys(state.explainer_override, suite)
        except HarnessError as exc:
            field_name, line = (
                ("--xai-explainer", None) if state.explainer_override else ("explainer", suite.explainer_line or 1)
            )
            yield SuiteErrorItem.from_parent(
                self, name=self.path.name, error=SpecError(rel, line, field_name, str(exc))
            )
            return
        classes: dict[str, list[str] | None] = {}
        registry_error: ModelError | None = None
        try:
            registry = state.registry()
            for model in models:
                # An unknown name errors only its own items (the engine cannot load it).
                if model in registry.models:
                    classes[model] = registry.get(model).classes
        except ModelError as exc:
            registry_error = exc
        for case in suite.cases:
            try:
                items = list(self._case_items(case, suite, models, explainers, rel, classes, registry_error))
            except Exception as exc:  # noqa: BLE001 - one case must not take the file down
                items = [
                    SuiteErrorItem.from_parent(
                        self,
                        name=case.case_id,
                        case_id=case.case_id,
                        error=SpecError(
                            rel,
                            case.line,
                            f"cases[{case.index}]",
                            f"cannot collect this case: {type(exc).__name__}: {exc}",
                        ),
                    )
                ]
            yield from items

    def _case_items(
        self,
        case: CaseSpec,
        suite: SuiteSpec,
        models: list[str],
        explainers: list[str],
        rel: str,
        classes: dict[str, list[str] | None],
        registry_error: ModelError | None,
    ) -> Iterator[pytest.Item]:
        tag_errors = self._tag_errors(case, rel)
        if not case.variants:
            # Nothing to run, which must not look like nothing to report (spec.py says why).
            errors = [_relocated(e, rel) for e in case.errors + tag_errors] or [
                SpecError(rel, case.line, f"cases[{case.index}].variants", "no variants to run")
            ]
            yield SuiteErrorItem.from_parent(self, name=case.case_id, case_id=case.case_id, errors=errors)
            return
        for variant in case.variants:
            for model, explainer in itertools.product(models, explainers):
                name = item_name(
                    case.case_id,
                    variant.name,
                    sweep=variant.sweep,
                    model=model if len(models) > 1 else None,
                    explainer=explainer if len(explainers) > 1 else None,
                )
                item = XaiItem.from_parent(
                    self,
                    name=name,
                    suite=suite,
                    case=case,
                    variant=variant,
                    model=model,
                    explainer=explainer,
                    suite_rel=rel,
                    classes=classes.get(model),
                    registry_error=registry_error,
                    several_explainers=len(explainers) > 1,
                )
                item.problems += tag_errors
                if case.skip:
                    item.add_marker(
                        pytest.mark.skip(reason=case.skip if isinstance(case.skip, str) else "skip: true in the suite")
                    )
                if case.xfail:
                    # Only the oracle's verdict is expected to fail: an input error or a
                    # crash of the harness still shows as an error.
                    item.add_marker(
                        pytest.mark.xfail(
                            reason=case.xfail if isinstance(case.xfail, str) else "xfail: true in the suite",
                            raises=VerdictFailure,
                            # no strict=: pytest's xfail_strict ini decides whether an xpass fails
                        )
                    )
                if not tag_errors:
                    for tag in case.tags:
                        # Registered, so --strict-markers accepts them and `-m tag` selects them.
                        self.config.addinivalue_line("markers", f"{tag}: tag from {rel}")
                        item.add_marker(getattr(pytest.mark, tag))
                yield item

    def _tag_errors(self, case: CaseSpec, rel: str) -> list[SpecError]:
        """Tags named like a marker that pytest or a plugin acts on are refused: a tag
        is a label for selection and must never change an outcome."""
        reserved = _reserved_markers(self.config)
        return [
            SpecError(
                rel,
                case.tags_line or case.line,
                f"cases[{case.index}].tags",
                f"tag {tag!r} is the name of a pytest marker that changes how tests run; choose another "
                f"word (use the case's own 'skip:' / 'xfail:' keys for those)",
            )
            for tag in case.tags
            if tag in reserved
        ]


def _structured_nodeid(kwargs: dict[str, Any]) -> None:
    """Give the item the node id its own string parses to.

    pytest 9 compares ids structurally (path, names, ``[params]``) when it matches
    ``--lf``/``--ff``/``--sw`` records and command-line ids; an id built by appending
    the name ``case[variant]`` as a plain name never equals the stored string parsed
    back. Passing the string lets every pytest version derive the structure itself.
    """
    if kwargs.get("nodeid") is None:
        kwargs["nodeid"] = f"{kwargs['parent'].nodeid}::{kwargs['name']}"


def _domain(name: str, suite_rel: str) -> str:
    """The test name for reports: pytest's terminal turns dots before ``[`` into ``::``
    when the name ends the node id (Python's ``Class.test``), which would print a
    case id such as ``img.001`` as an id that cannot be pasted back; a name that
    does not end the id is left alone, so a dotted one carries its suite."""
    if "." in name.partition("[")[0]:
        return f"{name} ({suite_rel})"
    return name


def explainer_keys(override: str | None, suite: SuiteSpec) -> list[str]:
    """The run's explainers for ``suite``: ``--xai-explainer`` (comma-separated) over the
    suite's ``explainer`` (a name or a list), as registry keys, each once."""
    names = [n.strip() for n in override.split(",") if n.strip()] if override else suite.explainers or [suite.explainer]
    if not names:
        raise HarnessError("no explainer given")
    keys = [canonical_name(name) for name in names]
    if len(set(keys)) != len(keys):
        raise HarnessError(f"an explainer is named twice ({', '.join(names)} are {', '.join(keys)})")
    return keys


def _relocated(error: SpecError, rel: str) -> SpecError:
    return SpecError(rel, error.line, error.field, error.message)


class SuiteErrorItem(pytest.Item):
    """Stands in for a suite that could not be split into cases (syntax or header error),
    or for a case that has no variant to run, so the problem is reported (as an error,
    with its row in the results) without stopping the other suites."""

    def __init__(
        self, *, error: SpecError | None = None, errors: list[SpecError] | None = None, case_id: str = "", **kwargs: Any
    ) -> None:
        _structured_nodeid(kwargs)
        super().__init__(**kwargs)
        self.errors = list(errors or []) + ([error] if error is not None else [])
        self.error = self.errors[0]
        self.case_id = case_id
        row: dict[str, Any] = {column: None for column in RESULT_COLUMNS}
        # A whole-file problem without a line (an unreadable file) is filed under line 1.
        row.update(
            suite=self.error.path,
            line=self.error.line or 1,
            case_id=case_id,
            variant="",
            model="",
            explainer="",
            label="",
            description="",
            verdict="error",
            passed=False,
            message=f"error: {'; '.join(e.format() for e in self.errors)}",
            nodeid=self.nodeid,
            checks=[],
            images={},
            heatmap_scale=None,
            thresholds={},
        )
        self.user_properties.extend(row_properties(row))

    def _text(self) -> str:
        what = "invalid case" if self.case_id else "invalid suite"
        return "\n".join(f"{what}: {e.format()}" for e in self.errors)

    def setup(self) -> None:
        pytest.fail(self._text(), pytrace=False)

    def runtest(self) -> None:  # pragma: no cover - setup always raises
        raise CaseError(list(self.errors))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, CaseError):
            return self._text()
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, (self.error.line or 1) - 1, _domain(self.name, self.error.path)


class XaiItem(pytest.Item):
    """One case × variant: setup computes (batched, cached), call judges."""

    def __init__(
        self,
        *,
        suite: SuiteSpec,
        case: CaseSpec,
        variant: VariantSpec,
        model: str,
        explainer: str,
        suite_rel: str,
        classes: list[str] | None,
        registry_error: ModelError | None,
        several_explainers: bool = False,
        **kwargs: Any,
    ) -> None:
        _structured_nodeid(kwargs)
        super().__init__(**kwargs)
        self.suite = suite
        self.case = case
        self.variant = variant
        self.model = model
        self.explainer = explainer
        # With several explainers each keeps its pictures in its own folder (same file names).
        self.assets_part = explainer.replace("/", "_") if several_explainers else ""
        self.suite_rel = suite_rel
        self.evaluation: Evaluation | None = None
        self.problems: list[BaseException] = [_relocated(e, suite_rel) for e in case.errors + variant.errors]
        if registry_error is not None:
            self.problems.append(registry_error)
        elif classes is not None and case.label is not None and case.label not in classes:
            self.problems.append(
                SpecError(
                    suite_rel,
                    case.label_line or case.line,
                    f"cases[{case.index}].label",
                    f"unknown class {case.label!r} for model {model!r}; allowed values: {', '.join(classes)}",
                )
            )
        self.key = ImageKey(model, explainer, case_uid(case), variant.name, sweep=variant.sweep or "")
        self.original_key = (
            ImageKey(model, explainer, case_uid(case), "original") if variant.rule == "sticker_added" else None
        )
        # --xai-threshold values are the highest level, over built-in, suite, case and variant.
        overrides = _state(self.config).threshold_overrides
        self.context = ItemContext(
            suite=suite_rel,
            line=variant.line or case.line,
            case_id=case.case_id,
            description=case.description,
            variant=variant.name,
            judge=variant.rule,
            sweep=variant.sweep,
            model=model,
            explainer=explainer,
            label=case.label or "",
            thresholds={**variant.thresholds, **overrides},
            threshold_sources={**variant.threshold_sources, **dict.fromkeys(overrides, "command line")},
            key=self.key,
            original_key=self.original_key,
            nodeid=self.nodeid,
        )
        row = base_row(self.context, "")
        row["verdict"] = "not run"
        self._set_row(row)

    # ---------------------------------------------------------------- planning

    def requests(self) -> list[Request]:
        """Images this item reads (none when the case is already known to be broken)."""
        if self.problems:
            return []
        out = []
        if self.original_key is not None:
            original = VariantSpec(name="original", line=self.case.line, settings=OriginalSettings())
            out.append(Request(self.original_key, self.case, original, self.case.label or ""))
        out.append(
            Request(
                self.key,
                self.case,
                self.variant,
                self.case.label or "",
                # Sticker rows judge the predicted class's relevance; the rules that expect
                # the label show it where the prediction differs from the label.
                predicted_relevance=self.variant.rule != "instance_removed",
            )
        )
        return out

    # ---------------------------------------------------------------- running

    def _set_row(self, row: dict[str, Any]) -> None:
        """Attach the row under "xai" (report, results table, JUnit XML), replacing an earlier one."""
        self.user_properties[:] = [(k, v) for k, v in self.user_properties if k != "xai"]
        self.user_properties.extend(row_properties(row))

    def setup(self) -> None:
        state = _state(self.config)
        problems = list(self.problems)
        if not problems:
            try:
                assets = state.assets_dir
                if assets is not None and self.assets_part:
                    assets = assets / self.assets_part
                self.evaluation = evaluate(self.context, state.engine, assets, state.picture_writer())
                self.evaluation.row.update(state.engine.agreement(self.key))
            except HarnessError as exc:
                problems.append(HarnessError(f"{self.context.location}: {exc}"))
                self._measured = dict(getattr(exc, "columns", {}))  # e.g. an unhealthy explanation's values
            finally:
                state.engine.release(self.key)
                if self.original_key is not None:
                    state.engine.release(self.original_key)
        if problems:
            self._error_row(problems)
            # pytest.fail with pytrace=False: the user sees the located message, not our stack.
            pytest.fail(self._problem_text(problems), pytrace=False)
        assert self.evaluation is not None
        self._set_row(self.evaluation.row)

    def _problem_text(self, problems: list[BaseException]) -> str:
        return "\n".join([f"cannot run {self.name}:", *(f"  {_error_text(e)}" for e in problems), "", self._excerpt()])

    def _error_row(self, problems: list[BaseException]) -> None:
        row = base_row(self.context, str(_state(self.config).device))
        row.update(verdict="error", passed=False, message=f"error: {'; '.join(_error_text(p) for p in problems)}")
        row.update(getattr(self, "_measured", {}))
        self._set_row(row)

    def runtest(self) -> None:
        assert self.evaluation is not None
        if not self.evaluation.judgement.passed:
            raise VerdictFailure(self.evaluation.judgement)

    # ---------------------------------------------------------------- reporting

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        error = excinfo.value
        if isinstance(error, VerdictFailure):
            lines = [error.judgement.message, ""]
            for check in error.judgement.checks:
                mark = "ok  " if check.passed else "FAIL"
                lines.append(
                    f"  {mark} {check.name}: {check.metric} = {_fmt(check.value)} "
                    f"(required {check.op} {_fmt(check.threshold)})"
                )
            return "\n".join(lines + ["", self._excerpt()])
        if isinstance(error, CaseError):
            return self._problem_text(error.errors)
        return str(super().repr_failure(excinfo, style=style))

    def _excerpt(self) -> str:
        """The case's YAML lines, with the line this item comes from marked."""
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return ""
        start = max(self.case.line - 1, 0)
        end = start + 1
        indent = len(lines[start]) - len(lines[start].lstrip(" -")) if start < len(lines) else 0
        while end < len(lines) and end - start < 14:
            text = lines[end]
            stripped = text.lstrip(" ")
            depth = len(text) - len(stripped)
            if stripped and (depth < indent or (stripped.startswith("- ") and depth <= indent - 2)):
                break
            end += 1
        marked = self.context.line
        return "\n".join(f"{'>' if n + 1 == marked else ' '} {n + 1:4d} | {lines[n]}" for n in range(start, end))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, self.context.line - 1, _domain(self.name, self.suite_rel)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
