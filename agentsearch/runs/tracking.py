"""Our own small MLflow tracker: one parent run per study, one nested child run per trial.

Everything goes through :class:`mlflow.tracking.MlflowClient` with explicit run ids (no
``mlflow.start_run`` / active-run globals), so trials finishing on worker threads can log at the
same time. mlflow is imported lazily (it takes seconds), never at module import.

Secrets never reach MLflow: every config/param mapping goes through :func:`redact` first.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
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
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.experiment_name = experiment
        self.experiment_id = self._ensure_experiment(experiment)
        # SQLite allows one writer at a time: serialize our writes instead of hitting "database is locked".
        self._lock = threading.RLock()

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
        """Log params in batches; on resume skip keys already logged (MLflow refuses changed values)."""
        from mlflow.entities import Param

        with self._lock:
            existing = self.client.get_run(run_id).data.params
            todo = {}
            for k, v in params.items():
                k = _key(k)
                if k not in existing:
                    todo[k] = v
                elif existing[k] != v:
                    log.warning("param %r already logged as %r; keeping it (new value %r)", k, existing[k], v)
            items = [Param(k, v) for k, v in todo.items()]
            for i in range(0, len(items), _BATCH):
                self.client.log_batch(run_id, params=items[i : i + _BATCH], synchronous=True)

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
    ) -> str:
        """Log one finished trial as a nested child run (thread-safe); returns the child run id."""
        tags = {
            "mlflow.parentRunId": parent_run_id,
            "agentsearch.kind": "trial",
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
            run = self.client.create_run(self.experiment_id, tags=tags, run_name=f"trial-{trial_number:04d}")
        run_id = run.info.run_id
        try:
            self._log_params(run_id, trial_params)
            self.log_metrics(run_id, metrics)
            if graph is not None:
                self.log_artifact_text(run_id, graph.to_yaml(), "graph.yaml")
                self._log_graph_png(run_id, graph)
            if records:
                table = _predictions_table(records)
                with self._lock:
                    self.client.log_table(run_id, data=table, artifact_file="predictions.json")
        finally:
            with self._lock:
                self.client.set_terminated(run_id, status=_STATUS.get(state, "FAILED"))
        return run_id

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

    # -- UI -----------------------------------------------------------------------------------

    def ui_command(self, host: str = "127.0.0.1", port: int = 5000) -> list[str]:
        """argv for ``mlflow server`` on this backend store (artifacts served from our artifact root)."""
        if self.tracking_uri.startswith(("http://", "https://", "databricks")):
            raise ValueError(f"{self.tracking_uri} is already a tracking server")
        cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.tracking_uri]
        if self.artifact_root is not None:
            cmd += ["--artifacts-destination", self.artifact_root.as_uri()]
        return cmd + ["--host", host, "--port", str(port), "--workers", "1"]
