"""pytest plugin entry point (``pytest11``): options, collection hook, planning, results.

The hooks only wire things together; the work lives in the modules they call.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from harness.errors import ModelError
from harness.spec import SUITE_SUFFIX

if TYPE_CHECKING:
    from harness.baseline import Baseline
    from harness.engine import Engine, ImageKey
    from harness.models import Registry

# torch (about a second to import) is imported only once a session needs the engine:
# not by the xdist controller, nor by runs that collect no suites.

# name: (help, default); every option has an ini twin without the leading dashes.
OPTIONS: dict[str, tuple[str, str | None]] = {
    "xai_model": ("model(s) under test, overriding the suites' 'model' (comma-separated or repeated)", None),
    "xai_models": ("model registry YAML", "fixtures/models.yaml"),
    "xai_explainer": (
        "explainer(s) for every suite, e.g. lrp/epsilon_gamma_box or lrp,cam/gradcam (comma-separated)",
        None,
    ),
    "xai_device": ("torch device: auto (CUDA when present), cpu, cuda, cuda:1", "auto"),
    "xai_batch_size": ("images per model/LRP batch", "32"),
    "xai_lrp_backend": ("LRP implementation: auto (fast engine, zennit fallback), fast, zennit", "auto"),
    "xai_results": ("results table (CSV; a .parquet twin is written when pyarrow is installed)", "reports/results.csv"),
    "xai_assets": ("folder for each item's variant image and heatmap PNGs ('' to skip)", "reports/assets"),
    "xai_report": ("write the HTML report to this path", None),
    "xai_conservation": (
        "LRP health band LO,HI for every item, over the suites' thresholds.conservation; "
        "'off' switches the check off (docs/reliability.md)",
        None,
    ),
    "xai_baseline": (
        "compare every item with this baseline table of an earlier run; a pass that now fails, or a drop of "
        "relevance on the object beyond max_mass_drop, is a 'regression' (docs/regression.md)",
        None,
    ),
    "xai_baseline_save": ("write this run's results as a baseline table (.parquet, or .csv)", None),
}

STATE_KEY = pytest.StashKey["XaiState"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xai", "explanation-based classifier tests (xai-harness)")
    for name, (help_text, default) in OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        kwargs: dict[str, Any] = {"dest": name, "default": None, "help": f"{help_text} [ini: {name}]"}
        if name == "xai_model":
            kwargs["action"] = "append"
        group.addoption(flag, **kwargs)
        parser.addini(name, help_text, default=default)
    group.addoption(
        "--xai-report-self-contained",
        dest="xai_report_self_contained",
        action="store_true",
        default=None,
        help="inline the report's images instead of an assets folder [ini: xai_report_self_contained]",
    )
    parser.addini("xai_report_self_contained", "inline the report's images", type="bool", default=False)
    group.addoption(
        "--xai-threshold",
        dest="xai_threshold",
        action="append",
        default=None,
        metavar="NAME=VALUE",
        help="set a threshold for every item, over the suites' (repeatable), e.g. min_object_lift=1.5 "
        "[ini: xai_threshold, one NAME=VALUE a line]",
    )
    parser.addini("xai_threshold", "thresholds for every item, NAME=VALUE one a line", type="linelist", default=[])
    group.addoption(
        "--xai-sanity",
        dest="xai_sanity",
        action="store_true",
        default=None,
        help="add sanity[model-explainer] items: does the explanation change when the model's weights "
        "are re-initialised (docs/explainers.md) [ini: xai_sanity]",
    )
    parser.addini("xai_sanity", "add the model-randomisation sanity items", type="bool", default=False)


def option(config: pytest.Config, name: str) -> tuple[Any, Path]:
    """Value of an option (command line over ini) and the folder relative paths start from."""
    value = config.getoption(name, None)
    if value is not None:
        return value, Path(config.invocation_params.dir)
    return config.getini(name), Path(config.rootpath)


@dataclass
class XaiState:
    """Session state kept on ``config.stash``."""

    config: pytest.Config
    registry_path: Path
    model_override: list[str]
    explainer_override: str | None
    device_name: str
    batch_size: int
    backend: str
    results_path: Path | None
    assets_dir: Path | None
    is_worker: bool
    conservation: tuple[float, float] | str | None = None  # --xai-conservation: a band, "off", or not given
    threshold_overrides: dict[str, Any] = field(default_factory=dict)  # --xai-threshold NAME=VALUE
    workers: int = 0  # xdist workers in the session, 0 outside xdist
    announced: bool = False  # the backends were shown in the header
    worker_engines: list[dict[str, Any]] = field(default_factory=list)  # xdist controller
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    output_errors: list[str] = field(default_factory=list)  # one line per output that could not be written
    baseline: Baseline | None = None  # --xai-baseline, loaded and checked at configure time
    baseline_save: Path | None = None  # --xai-baseline-save
    _registry: Registry | ModelError | None = None
    _engine: Engine | None = None
    _pictures: PictureQueue | None = None

    def picture_writer(self) -> PictureQueue:
        """One background thread renders and writes the items' PNGs, so the items
        (and the next LRP batch) do not wait for image encoding."""
        if self._pictures is None:
            self._pictures = PictureQueue()
        return self._pictures

    def finish_pictures(self) -> list[BaseException]:
        """Wait for every picture; return the errors (written files are read after this)."""
        if self._pictures is None:
            return []
        pictures, self._pictures = self._pictures, None
        return pictures.close()

    @property
    def engine(self) -> Engine:
        """The session's engine, built on first use (this is what imports torch)."""
        if self._engine is None:
            from harness.engine import Engine
            from harness.models import resolve_device

            if self.workers:
                import torch

                # Workers share the cores: without this each would start a full set of threads.
                torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.workers))

            self._engine = Engine(self.registry, resolve_device(self.device_name), self.batch_size, self.backend)
            # Under xdist each worker runs whole chunks of cases (harness.distribute).
            self._engine.confine_to_chunk = self.is_worker
            self._engine.conservation_override = self.conservation
        return self._engine

    @property
    def device(self) -> Any:
        return self.engine.device

    def registry(self) -> Registry:
        if self._registry is None:
            from harness.models import load_registry

            try:
                self._registry = load_registry(self.registry_path)
            except ModelError as exc:
                self._registry = exc
        if isinstance(self._registry, ModelError):
            raise self._registry
        return self._registry

    def relative(self, path: Path) -> str:
        try:
            return Path(path).resolve().relative_to(Path(self.config.rootpath).resolve()).as_posix()
        except ValueError:
            return str(path)


class PictureQueue:
    """A one-thread executor for picture jobs that keeps their errors and bounds the
    backlog: each waiting job holds an image and a relevance map, so when writing
    falls behind (a fast GPU, large inputs) the items wait instead of memory growing."""

    MAX_WAITING = 256

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xai-pictures")
        self._waiting: deque[Future[None]] = deque()
        self._errors: list[BaseException] = []

    def submit(self, fn: Any, *args: Any) -> None:
        self._waiting.append(self._executor.submit(fn, *args))
        while self._waiting and (self._waiting[0].done() or len(self._waiting) > self.MAX_WAITING):
            self._settle(self._waiting.popleft())

    def _settle(self, future: Future[None]) -> None:
        error = future.exception()  # waits if still running
        if error is not None:
            self._errors.append(error)

    def close(self) -> list[BaseException]:
        """Wait for every job; return the errors of all jobs."""
        while self._waiting:
            self._settle(self._waiting.popleft())
        self._executor.shutdown(wait=True)
        return self._errors


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Any:
    try:
        return (yield)
    finally:
        state = session.config.stash.get(STATE_KEY, None)
        if state is not None:
            errors = state.finish_pictures()
            if errors:
                first = (str(errors[0]).strip().splitlines() or [""])[0]
                state.output_errors.append(
                    f"pictures not written under {state.assets_dir}: {len(errors)} item(s) "
                    f"failed, first: {type(errors[0]).__name__}: {first}"
                )


def _path(config: pytest.Config, name: str) -> Path | None:
    value, base = option(config, name)
    if value in (None, ""):
        return None
    return (base / str(value)).resolve()


def pytest_configure(config: pytest.Config) -> None:
    is_worker = hasattr(config, "workerinput")
    models_opt = config.getoption("xai_model", None)
    if models_opt:
        overrides = [m.strip() for value in models_opt for m in value.split(",") if m.strip()]
    else:
        ini = config.getini("xai_model")
        overrides = [m.strip() for m in str(ini or "").split(",") if m.strip()]
    device_name = str(option(config, "xai_device")[0] or "auto")
    if device_name not in ("auto", "cpu"):
        # Only a named accelerator can be unavailable: check it before anything runs.
        from harness.models import resolve_device

        try:
            resolve_device(device_name)
        except (ModelError, RuntimeError) as exc:
            raise pytest.UsageError(f"--xai-device: {exc}") from None
    batch_value, _ = option(config, "xai_batch_size")
    try:
        batch_size = int(batch_value)
        assert batch_size >= 1
    except (TypeError, ValueError, AssertionError):
        raise pytest.UsageError(f"--xai-batch-size must be a positive integer, got {batch_value!r}") from None
    backend, _ = option(config, "xai_lrp_backend")
    if backend not in ("auto", "fast", "zennit"):
        raise pytest.UsageError(f"--xai-lrp-backend must be auto, fast or zennit, got {backend!r}")
    workers = int(config.workerinput.get("workercount", 1)) if is_worker else 0  # type: ignore[attr-defined]
    conservation = _conservation(option(config, "xai_conservation")[0])
    threshold_lines = config.getoption("xai_threshold", None) or config.getini("xai_threshold")
    threshold_overrides = parse_thresholds(list(threshold_lines or []))
    registry_path = _path(config, "xai_models")
    assert registry_path is not None
    state = XaiState(
        config=config,
        registry_path=registry_path,
        model_override=overrides,
        explainer_override=option(config, "xai_explainer")[0] or None,
        device_name=device_name,
        batch_size=batch_size,
        backend=str(backend),
        results_path=_path(config, "xai_results"),
        assets_dir=_path(config, "xai_assets"),
        is_worker=is_worker,
        workers=workers,
        conservation=conservation,
        threshold_overrides=threshold_overrides,
    )
    state.baseline = _baseline(config)
    state.baseline_save = _path(config, "xai_baseline_save")
    config.stash[STATE_KEY] = state
    if not is_worker:
        config.pluginmanager.register(ResultsRecorder(state), "xai-results")
        config.pluginmanager.register(ExitStatus(), "xai-exit-status")
        if getattr(config.option, "xmlpath", None):
            from harness.junit import JunitProperties

            config.pluginmanager.register(JunitProperties(), "xai-junit")
    report_path = _path(config, "xai_report")
    if report_path is not None and not is_worker:
        from harness.report.plugin import ReportPlugin

        self_contained = config.getoption("xai_report_self_contained", None)
        if self_contained is None:
            self_contained = bool(config.getini("xai_report_self_contained"))
        config.pluginmanager.register(ReportPlugin(config, report_path, self_contained=self_contained), "xai-report")


def _baseline(config: pytest.Config) -> Baseline | None:
    """``--xai-baseline``: read and checked once per process (controller and each xdist
    worker); a table that cannot serve is a usage error before anything runs."""
    path = _path(config, "xai_baseline")
    if path is None:
        return None
    from harness.baseline import BaselineError, load_baseline

    try:
        return load_baseline(path)
    except BaselineError as exc:
        raise pytest.UsageError(f"--xai-baseline: {exc}") from None


def _conservation(value: Any) -> tuple[float, float] | str | None:
    """``--xai-conservation``: ``LO,HI`` (finite, LO < HI), ``off``, or not given."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    if text.lower() in ("off", "none", "null"):
        return "off"
    try:
        lo, hi = (float(part) for part in text.split(","))
    except ValueError:
        raise pytest.UsageError(f"--xai-conservation must be LO,HI or off, got {text!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise pytest.UsageError(f"--xai-conservation needs finite LO < HI, got {text!r}")
    return lo, hi


def parse_thresholds(lines: list[str]) -> dict[str, Any]:
    """``--xai-threshold NAME=VALUE`` (values read as YAML: ``0.3``, ``null``, ``[0.5, 3]``),
    validated like a suite's thresholds; the last of a name wins."""
    if not lines:
        return {}
    import yaml
    from pydantic import ValidationError

    from harness.spec import Thresholds

    out: dict[str, Any] = {}
    for line in lines:
        name, sep, text = str(line).partition("=")
        name = name.strip()
        if not sep or not name:
            raise pytest.UsageError(f"--xai-threshold must be NAME=VALUE, got {line!r}")
        if name not in Thresholds.model_fields:
            raise pytest.UsageError(
                f"--xai-threshold: unknown threshold {name!r}; allowed names: {', '.join(Thresholds.model_fields)}"
            )
        try:
            value = yaml.safe_load(text.strip()) if text.strip() else None
            value = getattr(Thresholds.model_validate({name: value}), name)
        except (yaml.YAMLError, ValidationError) as exc:
            detail = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc).splitlines()[0]
            raise pytest.UsageError(f"--xai-threshold {name}: bad value {text.strip()!r}: {detail}") from None
        out[name] = value
    return out


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name.endswith(SUITE_SUFFIX):
        from harness.collect import SuiteFile

        return SuiteFile.from_parent(parent, path=file_path)
    return None


@pytest.hookimpl(tryfirst=True)  # before -k / -m deselect, so that they select sanity items too
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """--xai-sanity: one ``sanity[model-explainer]`` item per pair of the run, after the suite items."""
    state = config.stash.get(STATE_KEY, None)
    if state is None or "harness.collect" not in sys.modules or not option(config, "xai_sanity")[0]:
        return
    from harness.sanity import sanity_items

    extra = sanity_items(session, items)
    if extra:
        state.engine.keep_original_maps = True
        items.extend(extra)


@pytest.hookimpl(tryfirst=True)  # before the terminal reporter asks for the header lines
def pytest_collection_finish(session: pytest.Session) -> None:
    """Plan every image the selected items need, in the order they will run."""
    state = session.config.stash.get(STATE_KEY, None)
    if state is None or "harness.collect" not in sys.modules:
        return  # no suite file was collected (importing collect would import torch)
    from harness.collect import XaiItem
    from harness.distribute import chunk_map

    items = [item for item in session.items if isinstance(item, XaiItem)]
    if not items:
        return
    from harness.baseline import attach

    attach(items, state.model_override, state.baseline)
    chunks = chunk_map((item.nodeid for item in items), state.batch_size)
    requests = []
    consumers: Counter[ImageKey] = Counter()
    for item in items:
        for request in item.requests():
            request.chunk = chunks.get(item.nodeid, "")
            requests.append(request)
            consumers[request.key] += 1
    state.engine.plan(requests, dict(consumers))


def batch_size_of(config: pytest.Config) -> int:
    value, _ = option(config, "xai_batch_size")
    return int(value)


# The hook is firstresult: tryfirst so that no other plugin's scheduler is asked before
# ours (xdist's own is trylast).
@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """With plain ``-n`` (dist=load), hand out whole chunks of cases (harness.distribute)."""
    if config.getvalue("dist") != "load":
        return None
    from harness.distribute import make_scheduler_class

    return make_scheduler_class()(config, log)


def pytest_report_header(config: pytest.Config) -> list[str]:
    state = config.stash.get(STATE_KEY, None)
    if state is None:
        return []
    lines = [
        f"xai: models from {state.registry_path}, device {state.device_name}, batch size {state.batch_size}, "
        f"LRP backend {state.backend}"
    ]
    if state.baseline is not None:
        lines.append(f"xai: {state.baseline.describe()}")
    return lines


class ResultsRecorder:
    """Keeps one results row per item and writes the table at the end of the session.

    Registered only outside xdist workers: the controller receives every worker's
    reports, each carrying its row in ``user_properties``.
    """

    def __init__(self, state: XaiState) -> None:
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        row = next((value for key, value in report.user_properties if key == "xai"), None)
        if not isinstance(row, dict):
            return
        if report.when == "teardown" and report.nodeid in self.state.rows:
            return
        row = dict(row)
        if report.skipped and row.get("verdict") == "not run":
            reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else "skipped"
            row.update(verdict="skipped", passed=None, message=str(reason))
        self.state.rows[report.nodeid] = row

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.state.rows and self.state.results_path is not None:
            from harness.results import output_failure, write_results

            try:
                write_results(list(self.state.rows.values()), self.state.results_path, self.state.output_errors)
            except Exception as exc:  # noqa: BLE001 - e.g. pandas missing: still a one-line failure
                self.state.output_errors.append(output_failure("results table", self.state.results_path, exc))
        if self.state.baseline_save is not None:
            from harness.baseline import save_baseline
            from harness.results import output_failure

            try:
                save_baseline(list(self.state.rows.values()), self.state.baseline_save)
            except Exception as exc:  # noqa: BLE001 - like every output, it fails alone with one line
                self.state.output_errors.append(output_failure("baseline", self.state.baseline_save, exc))


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    """One header line per model and explainer: which LRP backend runs it, and why.

    This loads the models the run needs (it would on the first item anyway), so a
    fallback to zennit or a model that cannot load shows before the items run.
    """
    state = config.stash.get(STATE_KEY, None)
    if state is None or state._engine is None or config.option.collectonly:
        return []
    from harness.engine import backend_note
    from harness.errors import HarnessError

    lines = []
    for model, name in state.engine.groups():
        try:
            explainer = state.engine.explainer(model, name)
        except HarnessError as exc:
            lines.append(f"xai: {model} / {name}: cannot be used, its items will error: {exc}")
        else:
            lines.append(f"xai: {backend_note(model, explainer)}")
    state.announced = True
    return lines


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: gather what the workers' engines noted and counted."""
    state = node.config.stash.get(STATE_KEY, None)
    output = getattr(node, "workeroutput", None) or {}
    if state is not None and "xai_engine" in output:
        state.worker_engines.append(output["xai_engine"])


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(STATE_KEY, None)
    if state is not None and state.is_worker and (state._engine is not None or state.output_errors):
        summary = state._engine.summary() if state._engine is not None else {"notes": [], "health": {}}
        summary["output_errors"] = list(state.output_errors)
        session.config.workeroutput["xai_engine"] = summary  # type: ignore[attr-defined]


class ExitStatus:
    """Runs around every other session-finish hook (the results table, the report): an
    output that could not be written makes the exit status non-zero."""

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Any:
        result = yield
        if output_failed(session.config) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        return result


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(STATE_KEY, None)
    if state is None:
        return
    engines = list(state.worker_engines)
    errors = [error for engine in engines for error in engine.get("output_errors", [])] + state.output_errors
    tr = terminalreporter
    if state.rows:
        # An item the suite marks xfail counts under its pytest outcome, apart from the
        # verdicts: it is neither a new model failure nor a pass.
        expected = expected_outcomes(tr.stats)
        counts = Counter(expected.get(nodeid) or str(row.get("verdict")) for nodeid, row in state.rows.items())
        tr.section("xai verdicts")
        tr.write_line(", ".join(f"{verdict}: {n}" for verdict, n in sorted(counts.items())))
        aside = {"passed", "error", "skipped", "not run", "xfailed", "xpassed"}
        failures = sum(n for verdict, n in counts.items() if verdict not in aside)
        tr.write_line(
            f"xai: {failures} model failure(s); {counts['error']} item(s) could not be evaluated "
            f"(input or authoring errors, not model failures); "
            f"{counts['xfailed'] + counts['xpassed']} marked xfail"
        )
        unreliable = sum("explanation unreliable" in str(row.get("message")) for row in state.rows.values())
        if unreliable:
            tr.write_line(
                f"xai: {unreliable} item(s) errored because their explanation is unreliable (docs/reliability.md)"
            )
        from harness.agreement import verdict_disagreements

        split = verdict_disagreements(list(state.rows.values()))
        if split:
            first = split[0]
            tr.write_line(
                f"xai: the explainers disagree on the verdict of {len(split)} image(s), e.g. "
                f"{first['case_id']} {first['variant']}: "
                + ", ".join(f"{name} {verdict}" for name, verdict in first["verdicts"].items())
            )
        if state._engine is not None:
            own = state._engine.summary()
            if state.announced:
                own["notes"] = []  # already in the header
            engines.append(own)
        for note in dict.fromkeys(note for engine in engines for note in engine["notes"]):
            tr.write_line(f"note: {note}")
        for line in health_lines(engines):
            tr.write_line(line)
        counters = ("images", "batches", "lrp_rows", "seconds_variants", "seconds_model")
        total = {key: sum(engine.get(key, 0) for engine in engines) for key in counters}
        if total.get("images"):
            workers = f" on {len(state.worker_engines)} workers" if state.worker_engines else ""
            tr.write_line(
                f"{total['images']} images in {total['batches']} batches ({total['lrp_rows']} LRP rows)"
                f"{workers}: variants {total['seconds_variants']:.1f}s, model+LRP "
                f"{total['seconds_model']:.1f}s"
            )
        if state.results_path is not None and not any(e.startswith("results table") for e in errors):
            tr.write_line(f"results: {state.results_path}")
        if state.baseline is not None:
            from harness.baseline import terminal_lines

            for line in terminal_lines(state.baseline, list(state.rows.values()), state.relative(state.baseline.path)):
                tr.write_line(line)
        if state.baseline_save is not None and not any(e.startswith("baseline") for e in errors):
            tr.write_line(f"baseline saved: {state.baseline_save}")
    for error in errors:
        tr.write_line(f"xai: {error}", red=True)


def expected_outcomes(stats: dict[str, list[Any]]) -> dict[str, str]:
    """Node id -> ``xfailed`` / ``xpassed`` for the items pytest ran as expected failures
    (a strict xpass is reported as failed, with pytest's ``[XPASS(strict)]`` text)."""
    out: dict[str, str] = {}
    for key in ("xfailed", "xpassed"):
        for report in stats.get(key, []):
            out[str(getattr(report, "nodeid", ""))] = key
    for report in stats.get("failed", []):
        if str(getattr(report, "longreprtext", "")).startswith("[XPASS(strict)]"):
            out[str(report.nodeid)] = "xpassed"
    return out


def health_lines(engines: list[dict[str, Any]]) -> list[str]:
    """Per model × explainer: the backend and the median conservation of its label maps."""
    from harness.health import median

    merged: dict[str, dict[str, Any]] = {}
    for engine in engines:
        for group, data in engine.get("health", {}).items():
            entry = merged.setdefault(group, {"backend": data["backend"], "conservation": []})
            entry["conservation"].extend(data["conservation"])
    lines = []
    for group, data in merged.items():
        if not group.rpartition(" / ")[2].startswith("lrp/"):
            # Only LRP redistributes the logit; another explainer's sum / logit means nothing.
            lines.append(f"xai: {group}: backend {data['backend']} (not LRP: no conservation)")
            continue
        value = median(data["conservation"])
        text = "n/a" if value is None else f"{value:.3g}"
        lines.append(
            f"xai: {group}: backend {data['backend']}, median conservation {text} "
            f"(relevance sum / target logit over {len(data['conservation'])} maps)"
        )
    return lines


def output_failed(config: pytest.Config) -> bool:
    """Whether any output of the session (table, pictures, report) could not be written."""
    state = config.stash.get(STATE_KEY, None)
    if state is None:
        return False
    report = config.pluginmanager.get_plugin("xai-report")
    return bool(
        state.output_errors
        or any(engine.get("output_errors") for engine in state.worker_engines)
        or getattr(report, "error", None)
    )


# Under xdist every report crosses a pipe, setup, call and teardown alike, and each
# carries the item's user properties: the row under "xai". Workers send the row as one
# JSON string (execnet walks nested containers in Python, json in C); the controller
# rebuilds the same list, so JUnit XML and other readers see no difference. A passed setup report
# sends none: the call report that follows carries the same row, and nothing reads
# the row of a setup that passed (JUnit XML reads the teardown report's).
_PACKED = "xai_packed_properties"


@pytest.hookimpl(wrapper=True)
def pytest_report_to_serializable(config: pytest.Config, report: Any) -> Any:
    data = yield
    if isinstance(data, dict) and isinstance(report, pytest.TestReport):
        from harness.evaluate import row_properties

        properties = list(report.user_properties)
        row = properties[-1][1] if properties and properties[-1][0] == "xai" else None
        expected = row_properties(row) if isinstance(row, dict) else None
        if expected is not None and properties[-len(expected) :] == expected:
            try:
                packed = None if report.when == "setup" and report.passed else json.dumps(row)
            except (TypeError, ValueError):
                return data  # not plain JSON (a third-party column?): sent as it is
            data["user_properties"] = properties[: -len(expected)]
            if packed is not None:
                data[_PACKED] = packed
    return data


@pytest.hookimpl(wrapper=True)
def pytest_report_from_serializable(config: pytest.Config, data: Any) -> Any:
    report = yield
    if isinstance(data, dict) and data.get(_PACKED) and isinstance(report, pytest.TestReport):
        from harness.evaluate import row_properties

        # xdist sends tuples as lists; give every property back as a (name, value) pair.
        properties: list[tuple[str, object]] = [(str(name), value) for name, value in report.user_properties]
        report.user_properties = properties + row_properties(json.loads(data[_PACKED]))
        report.__dict__.pop(_PACKED, None)
    return report
