"""Our own small MLflow tracker: one parent run per study, one nested child run per trial.

Everything goes through :class:`mlflow.tracking.MlflowClient` with explicit run ids (no
``mlflow.start_run`` / active-run globals), so trials finishing on worker threads can log at the
same time. mlflow is imported lazily (it takes seconds), never at module import.

Secrets never reach MLflow: every config/param mapping goes through :func:`redact` first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAX_PARAM_LEN = 6000  # MLflow's param value limit
MAX_TAG_LEN = 5000  # below MLflow's 8000 limit
MAX_CELL_LEN = 2000  # long text in the predictions table
_MAX_KEY_LEN = 250
_BATCH = 100  # MLflow accepts at most 100 params/tags per log_batch

# Secret-like config keys: api_key, apikey, key, *_key, *secret*, *password*, authorization,
# token / *_token (but not max_tokens or tokens_per_question).
_SECRET_KEY = re.compile(
    r"secret|password|passwd|authorization|credential|(^|[_\-.])(api_?key|key|token)$|^apikey$",
    re.IGNORECASE,
)
_BAD_KEY_CHARS = re.compile(r"[^\w\-./ ]")
_STATUS = {"COMPLETE": "FINISHED", "PRUNED": "FINISHED", "FAIL": "FAILED"}
#: The metrics every trial run carries under the same names (the runs table's columns). ``test_score`` is
#: logged on the trials tested on the held-out split (the best agent, the baselines) when the study ends.
KEY_METRICS = ("val_score", "test_score", "tokens_per_question", "calls", "errors")
#: Tags the runs table shows beside them: the best trial, the Pareto trials, the state (PRUNED, FAIL, ...).
KEY_TAGS = ("agentsearch.best", "agentsearch.pareto", "agentsearch.state", "agentsearch.origin")
_PREDICTION_COLUMNS = (
    "id", "question", "gold", "prediction", "extracted", "correct", "no_answer", "reasoning", "calls", "tokens",
    "latency_s", "error", "detail",
)

# pyplot is process-global and not thread-safe: render one graph at a time.
_RENDER_LOCK = threading.Lock()


def default_tracking_uri(run_dir: Path) -> str:
    """``sqlite:////abs/run_dir/mlflow.db`` (always absolute)."""
    return f"sqlite:///{(Path(run_dir).expanduser().resolve() / 'mlflow.db').as_posix()}"


def is_secret_key(key: Any) -> bool:
    return bool(_SECRET_KEY.search(str(key)))


def redact(d: Any) -> Any:
    """Copy of ``d`` without secret-like keys, recursively (also inside lists)."""

    def clean(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: clean(v) for k, v in value.items() if not is_secret_key(k)}
        if isinstance(value, list | tuple):
            return [clean(v) for v in value]
        return value

    return clean(d)


def trial_run_name(study: str, number: int) -> str:
    """``<study>/trial-<n>``: the name of a trial's run."""
    return f"{study}/trial-{number}"


def _ms(t: float | None) -> int | None:
    return None if t is None else int(t * 1000)


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _key(key: str) -> str:
    """A key MLflow accepts (alphanumerics, _ - . / space), at most 250 chars."""
    return _BAD_KEY_CHARS.sub("_", key)[:_MAX_KEY_LEN] or "_"


def flatten(d: Mapping, prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}, "l": [1, 2]}`` -> ``{"a.b": "1", "l": "[1, 2]"}`` (values truncated to 6000)."""
    out: dict[str, str] = {}
    for k, v in d.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, prefix=f"{name}."))
            continue
        if isinstance(v, Mapping):
            text = "{}"
        elif isinstance(v, list | tuple):
            text = json.dumps(list(v), default=str, ensure_ascii=False)
        else:
            text = str(v)
        out[name] = _truncate(text, MAX_PARAM_LEN)
    return out


def _as_metric(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def key_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's metrics plus the stable :data:`KEY_METRICS` names (``errors`` counts the failed examples)."""
    out = dict(metrics)
    if "errors" not in out and "n_errors" in out:
        out["errors"] = out["n_errors"]
    return out


def _numeric_leaves(d: Mapping, prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(_numeric_leaves(v, f"{prefix}{k}."))
        elif (x := _as_metric(v)) is not None:
            out[f"{prefix}{k}"] = x
    return out


def _predictions_table(records: list[dict]) -> dict[str, list]:
    def text(value: Any) -> str:
        return "" if value is None else _truncate(str(value), MAX_CELL_LEN)

    cols: dict[str, list] = {c: [] for c in _PREDICTION_COLUMNS}
    for r in records:
        tokens = r.get(
            "tokens",
            (r.get("prompt_tokens") or 0) + (r.get("completion_tokens") or 0) + (r.get("cached_tokens") or 0),
        )
        for c in ("id", "question", "gold", "prediction", "extracted", "reasoning", "error", "detail"):
            cols[c].append(text(r.get(c)))
        cols["correct"].append(bool(r.get("correct", False)))
        cols["no_answer"].append(bool(r.get("no_answer", False)))
        cols["calls"].append(int(r.get("calls") or 0))
        cols["tokens"].append(int(tokens or 0))
        cols["latency_s"].append(float(r.get("latency_s") or 0.0))
    return cols


class MlflowTracker:
    """Logs studies (parent runs) and trials (nested child runs) to one MLflow backend store.

    Library users working offline set ``MLFLOW_DISABLE_TELEMETRY=true`` and ``LITELLM_LOCAL_MODEL_COST_MAP=True``
    in their process's environment first (the CLI and the Makefile do); the tracker changes no global state.
    """

    def __init__(self, tracking_uri: str, experiment: str = "agentsearch", artifact_root: Path | None = None):
        from mlflow.tracking import MlflowClient

        db_path = None
        if tracking_uri.startswith("sqlite:///"):
            db_path = Path(tracking_uri.removeprefix("sqlite:///")).expanduser().resolve()
            db_path.parent.mkdir(parents=True, exist_ok=True)
            tracking_uri = f"sqlite:///{db_path.as_posix()}"
        if artifact_root is None and db_path is not None:
            artifact_root = db_path.parent / "mlartifacts"
        self.tracking_uri = tracking_uri
        self.artifact_root = Path(artifact_root).expanduser().resolve() if artifact_root else None
        self.experiment_name = experiment
        if db_path is not None:  # several workers starting on one new mlflow.db would race on MLflow's schema
            from filelock import FileLock  # migrations (alembic): the first creates it, the others wait

            with FileLock(str(db_path) + ".lock", timeout=300):
                self.client = MlflowClient(tracking_uri=tracking_uri)
                self.experiment_id = self._ensure_experiment(experiment)
        else:
            self.client = MlflowClient(tracking_uri=tracking_uri)
            self.experiment_id = self._ensure_experiment(experiment)
        # SQLite allows one writer at a time: serialize our writes instead of hitting "database is locked".
        self._lock = threading.RLock()
        self._studies: dict[str, str] = {}  # parent run id -> study name

    def _ensure_experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        exp = self.client.get_experiment_by_name(name)
        if exp is None:
            location = self.artifact_root.as_uri() if self.artifact_root else None
            try:
                return self.client.create_experiment(name, artifact_location=location)
            except MlflowException:  # created concurrently by another process
                exp = self.client.get_experiment_by_name(name)
                if exp is None:
                    raise
        if exp.lifecycle_stage == "deleted":
            self.client.restore_experiment(exp.experiment_id)
        return exp.experiment_id

    # -- low-level helpers --------------------------------------------------------------------

    def _log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        """Log params in batches. On resume a key already logged keeps its first value (MLflow refuses a
        changed param, e.g. a larger ``trials``); the session's value goes quietly to a tag
        ``agentsearch.param.<key>``, which MLflow lets change."""
        from mlflow.entities import Param, RunTag

        with self._lock:
            existing = self.client.get_run(run_id).data.params
            todo, changed = {}, {}
            for k, v in params.items():
                k = _key(k)
                if k not in existing:
                    todo[k] = v
                elif existing[k] != v:
                    log.debug("param %r was logged as %r; this session's %r goes to a tag", k, existing[k], v)
                    changed[f"agentsearch.param.{k}"] = str(v)[:5000]
            items = [Param(k, v) for k, v in todo.items()]
            for i in range(0, len(items), _BATCH):
                self.client.log_batch(run_id, params=items[i : i + _BATCH], synchronous=True)
            tags = [RunTag(k, v) for k, v in changed.items()]
            for i in range(0, len(tags), _BATCH):
                self.client.log_batch(run_id, tags=tags[i : i + _BATCH], synchronous=True)

    def log_metrics(self, run_id: str, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log numeric metrics; None, NaN, inf and non-numbers are skipped."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [
            Metric(_key(k), x, now, step or 0) for k, v in metrics.items() if (x := _as_metric(v)) is not None
        ]
        with self._lock:
            for i in range(0, len(items), 1000):
                self.client.log_batch(run_id, metrics=items[i : i + 1000], synchronous=True)

    def log_artifact_text(self, run_id: str, text: str, artifact_file: str) -> None:
        with self._lock:
            self.client.log_text(run_id, text, artifact_file)

    def log_artifact_file(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        with self._lock:
            self.client.log_artifact(run_id, str(path), artifact_path)

    # -- studies ------------------------------------------------------------------------------

    def start_study(
        self,
        study_name: str,
        config: Mapping,
        space: Mapping | list,
        budget: Mapping,
        resume_run_id: str | None = None,
    ) -> str:
        """Create (or, with ``resume_run_id``, reopen) the study's parent run; returns its run id."""
        tags = {"agentsearch.study": study_name, "agentsearch.kind": "study"}
        with self._lock:
            if resume_run_id:
                run_id = resume_run_id
                self.client.update_run(run_id, status="RUNNING")
                for k, v in tags.items():
                    self.client.set_tag(run_id, k, v)
            else:
                run = self.client.create_run(self.experiment_id, tags=tags, run_name=study_name)
                run_id = run.info.run_id
            self._studies[run_id] = study_name
        params = flatten(redact(config))
        params.update(flatten(redact(budget), prefix="budget."))
        self._log_params(run_id, params)
        space_json = json.dumps(redact(space), indent=2, default=str)
        self.log_artifact_text(run_id, space_json, "search_space.json")
        return run_id

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Set tags on a run (long values truncated)."""
        with self._lock:
            for key, value in tags.items():
                self.client.set_tag(run_id, key, _truncate(str(value), MAX_TAG_LEN))

    def log_best(self, parent_run_id: str, value: float, step: int, key: str = "best_val_score") -> None:
        self.log_metrics(parent_run_id, {key: value}, step=step)

    def finish_study(
        self, parent_run_id: str, status: str = "FINISHED", summary: Mapping | None = None
    ) -> None:
        """Numeric summary values become ``final.*`` metrics, the whole summary ``summary.json``."""
        if summary:
            clean = redact(summary)
            self.log_metrics(parent_run_id, {f"final.{k}": v for k, v in _numeric_leaves(clean).items()})
            self.log_artifact_text(parent_run_id, json.dumps(clean, indent=2, default=str), "summary.json")
        with self._lock:
            self.client.set_terminated(parent_run_id, status=status)

    # -- trials -------------------------------------------------------------------------------

    def log_trial(
        self,
        parent_run_id: str,
        trial_number: int,
        *,
        graph: Any,
        params: Mapping,
        state: str,
        metrics: Mapping[str, float],
        records: list[dict] | None = None,
        reason: str | None = None,
        origin: str = "",
        extra_tags: Mapping[str, str] | None = None,
        start_time: float | None = None,
        end_time: float | None = None,
        trace_ids: Sequence[str] = (),
    ) -> str:
        """Log one finished trial as a nested child run (thread-safe); returns the child run id.

        ``start_time``/``end_time`` (seconds since the epoch) are when the trial really ran, so the run's
        duration is the trial's, not the time spent logging it; ``trace_ids`` are linked to the run."""
        study = self._study_name(parent_run_id)
        tags = {
            "mlflow.parentRunId": parent_run_id,
            "agentsearch.kind": "trial",
            "agentsearch.study": study,
            "agentsearch.trial": str(trial_number),
            "agentsearch.state": state,
            "agentsearch.origin": origin,
        }
        if reason:
            tags["agentsearch.reason"] = _truncate(str(reason), MAX_TAG_LEN)
        tags.update({k: _truncate(str(v), MAX_TAG_LEN) for k, v in (extra_tags or {}).items()})
        trial_params = flatten(redact(params))
        if graph is not None:
            tags["agentsearch.config_hash"] = graph.config_hash
            tags["agentsearch.graph"] = _truncate(graph.summary(), MAX_TAG_LEN)
            trial_params.update({
                "graph.name": graph.name,
                "graph.hash": graph.config_hash,
                "graph.nodes": str(len(graph.nodes)),
                "graph.formats": ",".join(sorted(graph.formats())) or "-",
            })
        with self._lock:
            run = self.client.create_run(
                self.experiment_id, start_time=_ms(start_time), tags=tags, run_name=trial_run_name(study, trial_number)
            )
        run_id = run.info.run_id
        try:
            self._log_params(run_id, trial_params)
            self.log_metrics(run_id, key_metrics(metrics))
            if trace_ids:
                self.link_traces(run_id, trace_ids)
            if graph is not None:
                self.log_artifact_text(run_id, graph.to_yaml(), "graph.yaml")
                self._log_graph_png(run_id, graph)
            if records:
                table = _predictions_table(records)
                with self._lock:
                    self.client.log_table(run_id, data=table, artifact_file="predictions.json")
        finally:
            with self._lock:
                self.client.set_terminated(run_id, status=_STATUS.get(state, "FAILED"), end_time=_ms(end_time))
        return run_id

    def _study_name(self, parent_run_id: str) -> str:
        name = self._studies.get(parent_run_id)
        if name is None:
            with self._lock:
                tags = self.client.get_run(parent_run_id).data.tags
            name = self._studies[parent_run_id] = tags.get("agentsearch.study", "study")
        return name

    def _log_graph_png(self, run_id: str, graph: Any) -> None:
        with tempfile.TemporaryDirectory(prefix="agentsearch-png-") as tmp:
            try:
                with _RENDER_LOCK:
                    png = graph.render_png(Path(tmp) / "graph.png")
            except Exception as exc:  # drawing is a nicety: never fail the trial for it
                log.warning("could not render graph %s: %s", getattr(graph, "name", "?"), exc)
                return
            self.log_artifact_file(run_id, png)

    def child_runs(self, parent_run_id: str) -> list:
        """The study's trial runs (MLflow ``Run`` objects), ordered by trial number."""
        runs, token = [], None
        while True:
            page = self.client.search_runs(
                [self.experiment_id],
                filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
                max_results=1000,
                page_token=token,
            )
            runs.extend(page)
            token = page.token
            if not token:
                break
        return sorted(runs, key=lambda r: int(r.data.tags.get("agentsearch.trial", "0")))

    def reconcile(self, parent_run_id: str, trials: Sequence[Any]) -> dict[str, int]:
        """After a crash: every finished trial gets exactly one terminated child run with its metrics (a run
        left RUNNING by a kill is finished; a missing one is logged; a duplicate is deleted), and children
        of trials that never finished are marked KILLED. Returns what was repaired."""
        done = {t.number: t for t in trials if t.state in _STATUS}
        by_trial: dict[int, list] = {}
        for run in self.child_runs(parent_run_id):
            by_trial.setdefault(int(run.data.tags.get("agentsearch.trial", "-1")), []).append(run)
        fixed = {"terminated": 0, "logged": 0, "removed": 0, "killed": 0}
        for number, trial in done.items():
            runs = sorted(by_trial.get(number, []), key=lambda r: r.info.status == "RUNNING")
            if not runs:
                self.log_trial(
                    parent_run_id, number, graph=trial.graph, params=trial.params, state=trial.state,
                    metrics=trial.metrics, reason=trial.reason, origin=trial.origin,
                )
                fixed["logged"] += 1
                continue
            keep, extras = runs[0], runs[1:]
            with self._lock:
                for extra in extras:
                    self.client.delete_run(extra.info.run_id)
                    fixed["removed"] += 1
            if keep.info.status == "RUNNING":
                self.log_metrics(keep.info.run_id, trial.metrics)
                with self._lock:
                    self.client.set_tag(keep.info.run_id, "agentsearch.state", trial.state)
                    self.client.set_terminated(keep.info.run_id, status=_STATUS[trial.state])
                fixed["terminated"] += 1
        for number, runs in by_trial.items():
            if number in done:
                continue
            for run in runs:
                if run.info.status == "RUNNING":
                    with self._lock:
                        self.client.set_terminated(run.info.run_id, status="KILLED")
                    fixed["killed"] += 1
        return fixed

    # -- the study's outcome: tags, test scores, plots -------------------------------------------

    def mark_trials(
        self,
        parent_run_id: str,
        best: Sequence[int] = (),
        pareto: Sequence[int] = (),
        test_scores: Mapping[str, float] | None = None,
    ) -> None:
        """Tag the best trial (``agentsearch.best``) and the Pareto trials (``agentsearch.pareto``), untag trials
        that no longer are, and log ``test_score`` on the trial runs whose design was tested on the held-out
        split (``test_scores`` by config hash). Also the parent gets the best trial's number as a tag."""
        best_set, pareto_set = set(best), set(pareto)
        tests = dict(test_scores or {})
        for run in self.child_runs(parent_run_id):
            number = int(run.data.tags.get("agentsearch.trial", "-1"))
            for tag, on in (("agentsearch.best", number in best_set), ("agentsearch.pareto", number in pareto_set)):
                with self._lock:
                    if on and run.data.tags.get(tag) != "true":
                        self.client.set_tag(run.info.run_id, tag, "true")
                    elif not on and tag in run.data.tags:
                        self.client.delete_tag(run.info.run_id, tag)
            score = tests.get(run.data.tags.get("agentsearch.config_hash", ""))
            if score is not None and run.data.tags.get("agentsearch.state") == "COMPLETE":
                self.log_metrics(run.info.run_id, {"test_score": score})
        if best:
            self.set_tags(parent_run_id, {"agentsearch.best_trial": str(best[0])})

    def log_study_plots(self, parent_run_id: str, study: Any) -> list[str]:
        """Optuna's plots of ``study`` as ``plots/*.png`` in the parent run (replacing earlier ones): optimization
        history, Pareto front (2 objectives), parameter importances and intermediate values. A plot the study
        cannot have yet (e.g. importances before 2 complete trials) is skipped with a log line. Returns the
        artifact paths logged."""
        import warnings

        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        import optuna
        from optuna.visualization import matplotlib as vis

        names = study.metric_names or [f"objective {i}" for i in range(len(study.directions))]
        multi = len(study.directions) > 1

        def first(t: Any) -> float:
            return t.values[0]

        complete = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)))
        reported = any(t.intermediate_values for t in study.get_trials(deepcopy=False))
        # name -> (why it cannot be drawn yet, or None; how to draw it)
        plots: dict[str, tuple[str | None, Callable[[], Any]]] = {
            "optimization_history": (
                None if complete else "no complete trial",
                lambda: vis.plot_optimization_history(study, target=first if multi else None, target_name=names[0]),
            ),
            "param_importances": (
                None if complete >= 2 else f"{complete} complete trial(s); importances need 2",
                lambda: vis.plot_param_importances(study, target=first if multi else None, target_name=names[0]),
            ),
        }
        if len(study.directions) == 2:
            plots["pareto_front"] = (
                None if complete else "no complete trial",
                lambda: vis.plot_pareto_front(study, target_names=names),
            )
        if not multi:
            plots["intermediate_values"] = (
                None if reported else "no trial reported intermediate values",
                lambda: vis.plot_intermediate_values(study),
            )
        logged = []
        for name, (missing, draw) in plots.items():
            if missing:
                log.info("MLflow: no %s plot yet (%s)", name.replace("_", " "), missing)
                continue
            with _RENDER_LOCK, warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                warnings.simplefilter("ignore", UserWarning)
                try:
                    ax = draw()
                    fig = (ax.flat[0] if hasattr(ax, "flat") else ax).figure
                except Exception as exc:  # noqa: BLE001 - e.g. too few complete trials for this plot
                    log.info("MLflow: no %s plot yet (%s)", name.replace("_", " "), str(exc).splitlines()[0][:200])
                    plt.close("all")
                    continue
                try:
                    with self._lock:
                        self.client.log_figure(parent_run_id, fig, f"plots/{name}.png")
                    logged.append(f"plots/{name}.png")
                finally:
                    plt.close(fig)
        return logged

    # -- traces -------------------------------------------------------------------------------

    def link_traces(self, run_id: str, trace_ids: Sequence[str]) -> None:
        """Link logged traces to a run (its Traces tab); waits for traces still being exported."""
        import mlflow

        mlflow.flush_trace_async_logging()
        with self._lock:
            for i in range(0, len(trace_ids), 100):
                try:
                    self.client.link_traces_to_run(list(trace_ids[i : i + 100]), run_id)
                except Exception as exc:  # noqa: BLE001 - a trace is a nicety: never fail a trial for it
                    log.warning("MLflow: could not link %d traces to run %s: %s", len(trace_ids), run_id, exc)

    def tracer(self, per_trial: int) -> Tracer:
        """A :class:`Tracer` logging to this store's experiment."""
        return Tracer(self, per_trial)

    # -- UI -----------------------------------------------------------------------------------

    def runs_view_url(self, base_url: str, study: str | None = None) -> str:
        """URL of the experiment's runs table showing ``study``'s trials (default: the latest study) side by side,
        with the :data:`KEY_METRICS` and :data:`KEY_TAGS` as columns, best validation score first.

        The view is an MLflow shared view state (an experiment tag ``mlflow.sharedViewState.<key>`` the UI reads
        through ``viewStateShareKey``), so it needs no browser state and survives a restart."""
        if study is None:
            study = self.latest_study()
        kind = "tags.`agentsearch.kind` = 'trial'"
        state = {
            "searchFilter": f"{kind} AND tags.`agentsearch.study` = '{study}'" if study else kind,
            "orderByKey": "metrics.`val_score`",
            "orderByAsc": False,
            "selectedColumns": [f"metrics.`{m}`" for m in KEY_METRICS] + [f"tags.`{t}`" for t in KEY_TAGS],
        }
        text = json.dumps(state, sort_keys=True)
        key = hashlib.sha256(text.encode()).hexdigest()[:16]
        with self._lock:
            self.client.set_experiment_tag(self.experiment_id, f"mlflow.sharedViewState.{key}", text)
        base = base_url.rstrip("/")
        return f"{base}/#/experiments/{self.experiment_id}/runs?workflowType=machine_learning&viewStateShareKey={key}"

    def study_run_url(self, base_url: str, parent_run_id: str) -> str:
        """URL of the study's own run, opened on its optimization history plot (the other plots, the summary and
        the export are beside it under Artifacts)."""
        base = base_url.rstrip("/")
        return (
            f"{base}/#/experiments/{self.experiment_id}/runs/{parent_run_id}/artifacts/plots/optimization_history.png"
            "?workflowType=machine_learning"
        )

    def run_traces_url(self, base_url: str, run_id: str) -> str:
        """URL of a run's traces (a trial's sampled examples; the study run's final test)."""
        base = base_url.rstrip("/")
        return f"{base}/#/experiments/{self.experiment_id}/runs/{run_id}/traces?workflowType=machine_learning"

    def best_trial_run(self, parent_run_id: str) -> Any:
        """The run of the study's best trial (tagged when the study finished), or None."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' AND tags.`agentsearch.best` = 'true'",
            max_results=1,
        )
        return runs[0] if runs else None

    def latest_study(self) -> str | None:
        runs = self.client.search_runs(
            [self.experiment_id], filter_string="tags.`agentsearch.kind` = 'study'", max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        return runs[0].data.tags.get("agentsearch.study") if runs else None

    def study_names(self) -> list[str]:
        """The studies logged to this store, oldest first."""
        runs = self.client.search_runs(
            [self.experiment_id], filter_string="tags.`agentsearch.kind` = 'study'", max_results=1000,
            order_by=["attributes.start_time ASC"],
        )
        return [r.data.tags.get("agentsearch.study", r.info.run_name) for r in runs]

    def study_run(self, study: str) -> str | None:
        """The parent run id of ``study`` (None if it has none)."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`agentsearch.kind` = 'study' AND tags.`agentsearch.study` = '{study}'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        return runs[0].info.run_id if runs else None

    # -- UI -----------------------------------------------------------------------------------

    def ui_command(self, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
        """argv for ``mlflow server`` on this backend store (artifacts served from our artifact root)."""
        if self.tracking_uri.startswith(("http://", "https://", "databricks")):
            raise ValueError(f"{self.tracking_uri} is already a tracking server")
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.tracking_uri]
        if self.artifact_root is not None:
            cmd += ["--artifacts-destination", self.artifact_root.as_uri()]
        return cmd + ["--host", host, "--port", str(port), "--workers", "1"]


class Tracer:
    """MLflow traces of the LM calls (DSPy's MLflow callback) for chosen examples: the first ``per_trial``
    validation examples of each trial, and every example of the final test. Use as a context manager around
    the study (it points MLflow's tracing at this store and restores the tracking URI after).

    Tracing is per example (``dspy.context`` callbacks), so examples not sampled cost nothing. Keys never reach
    a trace: DSPy's callback drops ``api_key``/``api_base`` from the LM's settings, and we add no settings."""

    def __init__(self, tracker: MlflowTracker, per_trial: int):
        self.tracker = tracker
        self.per_trial = max(0, per_trial)
        self._ids: dict[str, list[str]] = {}
        self._lock = threading.Lock()
        self._previous_uri: str | None = None
        self._callback: type | None = None

    def _callback_class(self) -> type:
        """MLflow's DSPy callback (``mlflow.dspy.MlflowCallback``) without its wait for ``mlflow.dspy.autolog``:
        autolog would trace every DSPy call of the process; this one traces only where it is put (the sampled
        examples, through ``dspy.context``). Its hooks are MLflow's own (``__wrapped__`` by its on/off check);
        the traced-study test fails if an MLflow upgrade changes that."""
        if self._callback is None:
            from mlflow.dspy.callback import MlflowCallback

            hooks = {
                name: fn.__wrapped__
                for name, fn in vars(MlflowCallback).items()
                if name.startswith("on_") and hasattr(fn, "__wrapped__")
            }
            self._callback = type("SampledMlflowCallback", (MlflowCallback,), hooks)
        return self._callback

    def __enter__(self) -> Tracer:
        import mlflow

        self._previous_uri = mlflow.get_tracking_uri()
        mlflow.set_tracking_uri(self.tracker.tracking_uri)
        return self

    def __exit__(self, *exc: Any) -> None:
        import mlflow

        try:
            mlflow.flush_trace_async_logging()
        finally:
            mlflow.set_tracking_uri(self._previous_uri)

    def sampled(self, index: int) -> bool:
        """Whether the ``index``-th validation example of a trial is traced."""
        return index < self.per_trial

    @contextmanager
    def example(
        self, group: str, name: str, inputs: Mapping[str, Any], tags: Mapping[str, str]
    ) -> Iterator[Callable[[Any], None] | None]:
        """Trace the LM calls made inside as one MLflow trace named ``name`` (kept under ``group``, e.g. a trial).
        Yields a function that records the example's outcome (an ``ExampleRecord``) as the trace's outputs."""
        import dspy
        import mlflow
        from mlflow.entities.trace_location import MlflowExperimentLocation

        try:
            span_cm = mlflow.start_span(
                name=name,
                span_type="AGENT",
                trace_destination=MlflowExperimentLocation(experiment_id=self.tracker.experiment_id),
            )
            span = span_cm.__enter__()
        except Exception as exc:  # noqa: BLE001 - tracing is a nicety: the example runs untraced
            log.warning("MLflow: could not start a trace for %s: %s", name, exc)
            yield None
            return
        error: BaseException | None = None
        try:
            span.set_inputs(dict(inputs))
            mlflow.update_current_trace(tags={k: _truncate(str(v), MAX_TAG_LEN) for k, v in tags.items()})
            with self._lock:
                self._ids.setdefault(group, []).append(span.trace_id)

            def outcome(record: Any) -> None:
                try:
                    span.set_outputs({
                        k: getattr(record, k, None)
                        for k in ("prediction", "extracted", "correct", "no_answer", "error", "calls", "tokens")
                    })
                except Exception as exc:  # noqa: BLE001
                    log.warning("MLflow: could not record the outcome of %s: %s", name, exc)

            with dspy.context(callbacks=[*(dspy.settings.get("callbacks") or []), self._callback_class()()]):
                yield outcome
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:  # a failure to end or export the trace never fails the example
                span_cm.__exit__(type(error) if error else None, error, error.__traceback__ if error else None)
            except Exception as exc:  # noqa: BLE001
                if exc is not error:
                    log.warning("MLflow: could not end the trace of %s: %s", name, exc)

    def take_prefix(self, prefix: str) -> dict[str, list[str]]:
        """The trace ids of every group named ``prefix<rest>``, by ``<rest>`` (forgotten here)."""
        with self._lock:
            groups = [g for g in self._ids if g.startswith(prefix)]
            return {g.removeprefix(prefix): self._ids.pop(g) for g in groups}

    def take(self, group: str) -> list[str]:
        """The trace ids logged under ``group`` (forgotten here)."""
        with self._lock:
            return self._ids.pop(group, [])
