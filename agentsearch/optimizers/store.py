"""The study store: one Optuna study holding everything a search knows, whatever strategy proposes.

Stored in SQLite under the run directory by default, or any SQLAlchemy URL / journal file. Each trial
keeps its graph (YAML), origin and metrics as user attributes, so a study can be resumed after a crash,
reported and exported without re-running. The store owns storage, resume checks, the baselines, retries
of failed and interrupted trials, the workers' heartbeats, the prompt pool and best/Pareto; a strategy
(:mod:`agentsearch.optimizers.base`) only proposes. The study's Optuna sampler (TPE, random, GP, CMA-ES,
NSGA-II) samples the space whenever the strategy leaves the choice to it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import optuna

from agentsearch.defaults import MIN_BATCH
from agentsearch.errors import UserError
from agentsearch.optimizers.base import (
    OBJECTIVES,
    OVER_BUDGET,
    Archive,
    Candidate,
    FinishedTrial,
    TrialResult,
)
from agentsearch.optimizers.registry import PRUNERS, SAMPLERS
from agentsearch.search_space.graph import AgentGraph
from agentsearch.search_space.space import PromptPool, SearchSpace

log = logging.getLogger(__name__)


_COMPLETE, _PRUNED, _RUNNING = (
    optuna.trial.TrialState.COMPLETE,
    optuna.trial.TrialState.PRUNED,
    optuna.trial.TrialState.RUNNING,
)


def _counts(trial: optuna.trial.FrozenTrial) -> bool:
    """:attr:`FinishedTrial.counts` of a COMPLETE or PRUNED trial, without parsing its graph."""
    return trial.state == _COMPLETE or not str(trial.user_attrs.get("reason") or "").startswith(OVER_BUDGET)


#: A strategy's define-by-run sampler: a graph (and its origin) from the trial being asked and the prompt pool.
Design = Callable[[optuna.Trial, PromptPool], tuple[AgentGraph, str]]

_STATE = {
    optuna.trial.TrialState.COMPLETE: "COMPLETE",
    optuna.trial.TrialState.PRUNED: "PRUNED",
    optuna.trial.TrialState.FAIL: "FAIL",
}


def make_sampler(name: str, seed: int, n_objectives: int = 1, startup_trials: int = 8) -> optuna.samplers.BaseSampler:
    """The Optuna sampler for ``--sampler NAME``."""
    if name == "tpe":
        with warnings.catch_warnings():  # multivariate/group/constant_liar are flagged experimental
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=seed,
                multivariate=True,
                group=True,
                constant_liar=True,
                n_startup_trials=startup_trials,
            )
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        if importlib.util.find_spec("torch") is None:
            raise UserError("--sampler gp needs PyTorch: pip install torch==2.13.0 (the CPU wheel), or use tpe")
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup_trials)
    if name == "cmaes":
        if importlib.util.find_spec("cmaes") is None:
            raise UserError("--sampler cmaes needs the cmaes package: pip install cmaes")
        if n_objectives > 1:
            raise UserError("--sampler cmaes is single-objective; use nsga2 or tpe with several --objectives")
        return optuna.samplers.CmaEsSampler(
            seed=seed,
            n_startup_trials=startup_trials,
            warn_independent_sampling=False,
            independent_sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials),
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, startup_trials))
    raise UserError(f"--sampler: unknown sampler {name!r} (choose from {', '.join(SAMPLERS)})")


def make_pruner(name: str, min_resource: int, max_resource: int) -> optuna.pruners.BasePruner:
    """The Optuna pruner for ``--pruner NAME``; resources are validation examples evaluated."""
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=min_resource, reduction_factor=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=min_resource, max_resource=max(max_resource, min_resource), reduction_factor=2
        )
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise UserError(f"--pruner: unknown pruner {name!r} (choose from {', '.join(PRUNERS)})")


def open_storage(storage: str | None, run_dir: Path) -> optuna.storages.BaseStorage:
    """``None``: SQLite under the run dir; a path without ``://``: a journal file; else a SQLAlchemy URL."""
    try:
        if storage is None:
            run_dir.mkdir(parents=True, exist_ok=True)
            storage = f"sqlite:///{(run_dir / 'optuna.db').resolve()}"
        if "://" not in storage:
            from optuna.storages.journal import JournalFileBackend

            path = Path(storage).expanduser().resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
        kwargs: dict[str, Any] = {}
        if storage.startswith("sqlite"):
            kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
        url = storage
        if url.startswith(("postgresql://", "postgres://")):  # SQLAlchemy's default driver is psycopg2: use psycopg 3
            if importlib.util.find_spec("psycopg") is None:
                raise UserError(
                    f"--storage {storage}: PostgreSQL needs psycopg 3 (pip install 'agentsearch[postgres]')"
                )
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        for attempt in range(5):  # workers started together race to create the schema: the losers retry
            try:
                return optuna.storages.RDBStorage(url, **kwargs)
            except Exception:  # noqa: BLE001 - retried, then reported below as a bad --storage
                if attempt == 4:
                    raise
                time.sleep(0.5 * (attempt + 1))
        raise UserError(f"--storage {storage}: cannot open")
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to open storage is a bad --storage value
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"--storage {storage}: cannot open ({first})") from None


def open_existing_storage(storage: str | None, run_dir: Path) -> optuna.storages.BaseStorage:
    """:func:`open_storage` for read-only commands: never creates a store. A missing one is a one-line error
    naming the study stores that exist (``optuna.db`` files in and below the working directory)."""
    missing = None
    if storage is None:
        if not (run_dir / "optuna.db").is_file():
            missing = f"--run-dir {run_dir}: no study storage here (no optuna.db)"
    elif "://" not in storage:
        if not Path(storage).expanduser().is_file():
            missing = f"--storage {storage}: no such journal file"
    elif storage.startswith("sqlite:///"):
        path = storage[len("sqlite:///") :].split("?", 1)[0]
        if path and path != ":memory:" and not Path(path).expanduser().is_file():
            missing = f"--storage {storage}: no such SQLite file"
    if missing is not None:
        raise UserError(f"{missing}; {_study_stores_hint()}")
    return open_storage(storage, run_dir)


def _study_stores_hint(limit: int = 5) -> str:
    cwd = Path.cwd()
    found = sorted({p.parent for pattern in ("optuna.db", "*/optuna.db", "*/*/optuna.db") for p in cwd.glob(pattern)})
    if not found:
        return f"no optuna.db in or below {cwd} either (give --run-dir DIR or --storage URL)"
    shown = ", ".join(str(p.relative_to(cwd)) if p != cwd else "." for p in found[:limit])
    more = f" and {len(found) - limit} more" if len(found) > limit else ""
    return f"study stores found: --run-dir {shown}{more}"


class StudyStore:
    """The Optuna study of a search: trials in, candidates out, whatever strategy proposes.

    Created (or resumed, after checking that the study's settings agree) with the baselines queued first.
    :meth:`ask` opens the next trial: a queued design (baseline, retry, proposal) if there is one, else one
    sampled by ``design`` (a strategy's define-by-run sampler) or by the space's own sampler.
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        study_name: str,
        storage: optuna.storages.BaseStorage | str | None,
        sampler: str = "tpe",
        pruner: str = "sha",
        objectives: tuple[str, ...] = ("accuracy",),
        seed: int = 0,
        min_resource: int = MIN_BATCH,  # the pruner's first rung: the loop's first minibatch
        max_resource: int = 64,
        startup_trials: int = 8,
        baselines: Mapping[str, AgentGraph] | None = None,
        study_config: Mapping[str, Any] | None = None,
    ):
        self.space = space
        self.sampler_name = sampler  # origin of trials the study's sampler produced
        self.objectives = tuple(objectives)
        self.multi = len(self.objectives) > 1
        sampler_obj = make_sampler(sampler, seed, len(self.objectives), startup_trials)
        pruner_obj = make_pruner(pruner if not self.multi else "none", min_resource, max_resource)
        if self.multi and pruner != "none":
            log.warning("Optuna does not prune multi-objective studies: --pruner %s is ignored", pruner)
        config = dict(study_config or {})
        config.setdefault("objectives", list(self.objectives))
        config.setdefault("space", space.to_dict())
        try:
            existing = optuna.study.get_all_study_names(storage=storage) if storage is not None else []
        except Exception as exc:  # noqa: BLE001
            raise UserError(f"--storage: cannot read studies ({str(exc).splitlines()[0]})") from None
        resumed = study_name in existing
        if not resumed:
            try:
                self.study = optuna.create_study(
                    study_name=study_name,
                    storage=storage,
                    sampler=sampler_obj,
                    pruner=pruner_obj,
                    directions=[OBJECTIVES[o] for o in self.objectives],
                )
                self.study.set_user_attr("agentsearch.config", config)
            except optuna.exceptions.DuplicatedStudyError:  # another worker created it just now
                resumed = True
        if resumed:
            self.study = optuna.load_study(
                study_name=study_name, storage=storage, sampler=sampler_obj, pruner=pruner_obj
            )
            self._check_resume(study_name, config)
        #: True when the store continues a study that already has trials.
        self.resumed = resumed
        _name_objectives(self.study, self.objectives)
        #: The study's prompt pool (proposed instructions, bootstrapped demo sets): saved with the study.
        self.pool = PromptPool.from_dict(self.study.user_attrs.get("prompt_pool"))
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self._in_flight: dict[int, optuna.Trial] = {}
        self._in_flight_lock = threading.Lock()
        self._heartbeat: threading.Thread | None = None
        self._stop = threading.Event()
        self._reseeded = False
        self._parsed: dict[int, FinishedTrial] = {}
        self._requeue_interrupted()
        if not resumed:
            for bname, graph in (baselines or {}).items():
                self.enqueue(graph, origin=f"baseline:{bname}")

    # -- study bookkeeping ----------------------------------------------------------------------

    def _check_resume(self, study_name: str, config: Mapping[str, Any]) -> None:
        stored = self.study.user_attrs.get("agentsearch.config", {})
        deadline = time.monotonic() + 15.0
        while not stored and time.monotonic() < deadline:  # another worker is creating the study right now
            time.sleep(0.2)
            stored = self.study.user_attrs.get("agentsearch.config", {})
        for key in sorted(set(stored) | set(config)):
            if key in ("trials", "parallel", "concurrency", "sampler", "pruner", "optimizer", "prompt_optimizer"):
                continue  # may change between sessions of one study
            if stored.get(key) != config.get(key):
                raise UserError(
                    f"--study {study_name}: exists with a different {key} "
                    f"({stored.get(key)!r} != {config.get(key)!r}); use another --study name"
                )

    def _interrupted(self, trial: optuna.trial.FrozenTrial) -> bool:
        """Whether a RUNNING trial's worker is gone: a process of this machine that no longer exists, or a
        worker elsewhere whose heartbeat is older than :attr:`GRACE_S` (several workers may share a study)."""
        worker = str(trial.user_attrs.get("worker") or "")
        host, _, pid = worker.rpartition(":")
        if not worker or not pid.isdigit():  # being started this instant, or from before workers were recorded
            started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
            return time.time() - started > 10.0
        if host == socket.gethostname():
            if int(pid) == os.getpid():
                return True
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                return True
            except PermissionError:
                return False  # alive, another user's
            return False
        beat = float(trial.user_attrs.get("heartbeat") or 0.0)
        return time.time() - beat > self.GRACE_S

    #: Seconds between heartbeats of a running trial, and after which a silent worker elsewhere is presumed dead.
    HEARTBEAT_S = 20.0
    GRACE_S = 120.0

    def _requeue_interrupted(self) -> None:
        """Trials left RUNNING by a worker that is gone are failed (reason: interrupted) and queued again;
        trials other live workers run are left alone."""
        for t in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if not self._interrupted(t):
                continue
            try:
                reason = "interrupted (its worker stopped); re-queued"
                optuna.Trial(self.study, t._trial_id).set_user_attr("reason", reason)
                self.study.tell(t.number, state=optuna.trial.TrialState.FAIL)
            except (ValueError, RuntimeError) as exc:  # another worker recovered it first
                log.debug("trial %d: not recovered here (%s)", t.number, exc)
                continue
            text = t.user_attrs.get("graph") or t.user_attrs.get("fixed_graph")
            origin = t.user_attrs.get("origin") or self.sampler_name
            if text:
                self.enqueue(AgentGraph.from_text(text, source=f"trial {t.number}"), origin=origin, params=t.params)
            else:  # asked but never built: replay its parameters
                self.study.enqueue_trial(t.params, user_attrs={"origin": origin}, skip_if_exists=False)
            log.info("trial %d was interrupted; queued again", t.number)

    def enqueue(
        self,
        graph: AgentGraph,
        origin: str,
        params: Mapping[str, Any] | None = None,
        info: Mapping[str, Any] | None = None,
    ) -> None:
        """Queue a known graph (a baseline, a proposal, a retry) as the next trial; ``info`` says how it
        was proposed (the proposer's inputs and output) and is kept with the trial."""
        params = dict(params) if params else self.space.encode(graph)
        attrs: dict[str, Any] = {"origin": origin, "graph_name": graph.name}
        if info:
            attrs["proposal"] = _clip(dict(info))
        if params is None or not self._rebuilds(params, graph):
            params = params or {}
            attrs["fixed_graph"] = graph.to_yaml()
        self.study.enqueue_trial(params, user_attrs=attrs, skip_if_exists=False)

    def enqueue_params(self, params: Mapping[str, Any], origin: str, info: Mapping[str, Any] | None = None) -> None:
        """Queue values of the space's parameters (the rest the sampler chooses) as the next trial."""
        attrs: dict[str, Any] = {"origin": origin}
        if info:
            attrs["proposal"] = _clip(dict(info))
        self.study.enqueue_trial(dict(params), user_attrs=attrs, skip_if_exists=False)

    def set_pool(self, pool: PromptPool) -> None:
        """Replace the prompt pool (never changed in place: trials already sampled keep what they saw)."""
        if pool != self.pool:
            self.pool = pool
            self.study.set_user_attr("prompt_pool", pool.to_dict())

    def requeue(self, candidate: Candidate) -> None:
        """Queue a failed or interrupted candidate once more (a retry that fails again is not retried)."""
        if not candidate.origin.endswith(":retry"):
            self.enqueue(candidate.graph, origin=f"{candidate.origin}:retry", params=candidate.params)

    def attrs(self) -> dict[str, Any]:
        return dict(self.study.user_attrs)

    def set_attr(self, key: str, value: Any) -> None:
        self.study.set_user_attr(key, value)

    def _rebuilds(self, params: Mapping[str, Any], graph: AgentGraph) -> bool:
        """Whether the space's sampler turns ``params`` back into exactly ``graph``."""
        from agentsearch.search_space.space import graph_from_params

        try:
            return graph_from_params(self.space, params, self.pool).config_hash == graph.config_hash
        except Exception as exc:  # noqa: BLE001 - params from another stage or space: stored as a fixed graph
            log.debug("params %s do not rebuild graph %s in this space (%s)", dict(params), graph.name, exc)
            return False

    # -- ask / tell -----------------------------------------------------------------------------

    def ask(self, design: Design | None = None) -> Candidate:
        """Open the next trial: a queued design if any, else ``design(trial, pool)`` (a graph and its origin),
        else the space's sampler."""
        if not self._reseeded and self.running_elsewhere() > 0:
            # workers sharing a study must not draw the same sequence (Optuna does the same for n_jobs > 1)
            self.study.sampler.reseed_rng()
            self._reseeded = True
        trial = self.study.ask()
        trial.set_user_attr("worker", self.worker)  # first thing: other workers leave a trial with a worker alone
        queued = trial.user_attrs.get("origin")  # a baseline, retry or proposal: its graph or its params
        fixed = trial.user_attrs.get("fixed_graph")
        if fixed:
            graph, origin = AgentGraph.from_text(fixed, source=f"trial {trial.number}"), queued or self.sampler_name
        elif queued:
            graph, origin = self.space.sample(trial, self.pool), queued
        elif design is not None:
            graph, origin = design(trial, self.pool)
        else:
            graph, origin = self.space.sample(trial, self.pool), self.sampler_name
        name = trial.user_attrs.get("graph_name") or f"trial-{trial.number}"
        graph = graph.model_copy(update={"name": name})
        self._started(trial)
        trial.set_user_attr("origin", origin)
        trial.set_user_attr("graph", graph.to_yaml())
        trial.set_user_attr("config_hash", graph.config_hash)
        info = dict(trial.user_attrs.get("proposal", {}))
        return Candidate(
            number=trial.number, graph=graph, params=dict(trial.params), origin=origin, handle=trial, info=info
        )

    def should_prune(self, candidate: Candidate, step: int, value: float) -> bool:
        if self.multi:
            return False
        trial: optuna.Trial = candidate.handle
        trial.report(value, step)
        return (not candidate.is_yardstick) and trial.should_prune()

    # -- workers: who runs a trial, and that it is still alive ----------------------------------------------

    def _started(self, trial: optuna.Trial) -> None:
        trial.set_user_attr("worker", self.worker)
        trial.set_user_attr("heartbeat", time.time())
        with self._in_flight_lock:
            self._in_flight[trial.number] = trial
            if self._heartbeat is None:
                self._heartbeat = threading.Thread(target=self._beat, name="agentsearch-heartbeat", daemon=True)
                self._heartbeat.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.HEARTBEAT_S):
            with self._in_flight_lock:
                running = list(self._in_flight.values())
            for trial in running:
                try:
                    trial.set_user_attr("heartbeat", time.time())
                except Exception as exc:  # noqa: BLE001 - finished meanwhile, or storage hiccup: next beat
                    log.debug("heartbeat of trial %d: %s", trial.number, exc)

    def taken_before(self, number: int) -> int:
        taken = 0
        for t in self.study.get_trials(deepcopy=False, states=(_COMPLETE, _PRUNED, _RUNNING)):
            taken += self._elsewhere(t) and t.number < number if t.state == _RUNNING else _counts(t)
        return taken

    def _elsewhere(self, trial: optuna.trial.FrozenTrial) -> bool:
        """A trial another worker runs (one with no worker yet is being asked this instant: not counted)."""
        return trial.user_attrs.get("worker") not in (None, self.worker)

    def complete_metrics(self, config_hash: str) -> dict[str, float] | None:
        for t in self.study.get_trials(deepcopy=False, states=(_COMPLETE,)):
            if t.user_attrs.get("config_hash") == config_hash and t.user_attrs.get("metrics"):
                return {k: float(v) for k, v in t.user_attrs["metrics"].items()}
        return None

    def running_elsewhere(self, before: int | None = None, alive_only: bool = False) -> int:
        """Trials other workers are running on this study now (they count toward ``--trials``);
        ``alive_only``: not those left RUNNING by a worker that is gone (see :meth:`_interrupted`)."""
        running = self.study.get_trials(deepcopy=False, states=(_RUNNING,))
        return sum(
            self._elsewhere(t) and (before is None or t.number < before) and not (alive_only and self._interrupted(t))
            for t in running
        )

    def close(self) -> None:
        self._stop.set()

    def tell(self, candidate: Candidate, result: TrialResult) -> None:
        with self._in_flight_lock:
            self._in_flight.pop(candidate.number, None)
        try:
            self._tell(candidate, result)
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker took it for interrupted: it was redone
            log.warning("trial %d was closed by another worker meanwhile; its result is dropped", candidate.number)

    def _tell(self, candidate: Candidate, result: TrialResult) -> None:
        trial: optuna.Trial = candidate.handle
        trial.set_user_attr("graph", candidate.graph.to_yaml())  # as evaluated (e.g. with built insights)
        trial.set_user_attr("config_hash", candidate.graph.config_hash)
        trial.set_user_attr("metrics", {k: float(v) for k, v in result.metrics.items()})
        if result.examples:
            trial.set_user_attr("examples", result.examples)
        if result.outcomes:
            trial.set_user_attr("outcomes", result.outcomes)
        if candidate.info.get("prompt_optimizer_error"):
            trial.set_user_attr("prompt_optimizer_error", candidate.info["prompt_optimizer_error"])
        if result.reason:
            trial.set_user_attr("reason", result.reason[:2000])
        if result.state == "COMPLETE":
            self.study.tell(trial, result.values(self.objectives))
        elif result.state == "PRUNED":
            if not self.multi and result.step == 0:  # rejected unrun: give the sampler a (worst) value to learn from
                trial.report(float(result.metrics.get("val_score", 0.0)), 0)
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)

    # -- views ----------------------------------------------------------------------------------

    def trials(self) -> list[FinishedTrial]:
        frozen = self.study.get_trials(deepcopy=False, states=tuple(_STATE))
        return [self._finished(t) for t in sorted(frozen, key=lambda t: t.number)]

    def _finished(self, trial: optuna.trial.FrozenTrial) -> FinishedTrial:
        """:func:`finished_trial`, parsed once per trial (Optuna never changes a finished trial)."""
        cached = self._parsed.get(trial.number)
        if cached is None or cached.state != _STATE[trial.state]:
            cached = self._parsed[trial.number] = finished_trial(trial)
        return cached

    def best(self) -> list[FinishedTrial]:
        return study_best(self.study)

    def finished(self, number: int) -> FinishedTrial | None:
        """Trial ``number`` once it has finished (None while it runs or waits)."""
        for t in self.study.get_trials(deepcopy=False, states=tuple(_STATE)):
            if t.number == number:
                return self._finished(t)
        return None

    def seen_hashes(self) -> set[str]:
        """Config hashes of every trial so far (finished, running or queued): proposals must be new."""
        seen = set()
        for t in self.study.get_trials(deepcopy=False):
            h = t.user_attrs.get("config_hash")
            if h:
                seen.add(h)
            elif t.user_attrs.get("fixed_graph"):
                seen.add(AgentGraph.from_text(t.user_attrs["fixed_graph"]).config_hash)
        return seen

    def archive(self) -> Archive:
        """The study as a strategy reads it (see :class:`~agentsearch.optimizers.base.Archive`)."""
        frozen = self.study.get_trials(deepcopy=False)
        origins = [str(t.user_attrs.get("origin", "")) for t in frozen]  # each baseline counted once (retries too)
        evaluated = [
            self._finished(t) for t in sorted(frozen, key=lambda t: t.number) if t.state in (_COMPLETE, _PRUNED)
        ]
        return Archive(
            trials=tuple(t for t in evaluated if t.graph is not None),
            seen=frozenset(self.seen_hashes()),
            objectives=self.objectives,
            n_total=len(frozen),
            n_taken=sum(t.counts for t in evaluated) + sum(t.state == _RUNNING for t in frozen),
            n_baselines=len({o.removesuffix(":retry") for o in origins if o.startswith("baseline:")}),
            pool=self.pool,
            attrs=dict(self.study.user_attrs),
        )

    def n_finished(self) -> int:
        """As :meth:`Optimizer.n_finished`, from trial states and reasons (no graph is parsed): the loop asks
        before every trial, and the study may hold thousands."""
        return sum(map(_counts, self.study.get_trials(deepcopy=False, states=(_COMPLETE, _PRUNED))))

    def n_waiting(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,)))


#: How the objectives are named in the study (optuna-dashboard's and the MLflow plots' axes).
OBJECTIVE_NAMES = {"accuracy": "val accuracy", "tokens": "tokens/question", "calls": "LM calls/question"}


def _name_objectives(study: optuna.Study, objectives: tuple[str, ...]) -> None:
    """``study.set_metric_names`` once (a resumed study keeps the names it has)."""
    if study.metric_names is not None:
        return
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([OBJECTIVE_NAMES[o] for o in objectives])


def _clip(value: Any, limit: int = 4000) -> Any:
    """Long texts shortened, so a proposal fits in the study's storage."""
    if isinstance(value, str):
        return value if len(value) <= limit else value[:limit] + " ..."
    if isinstance(value, dict):
        return {k: _clip(v, limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clip(v, limit) for v in value]
    return value


def finished_trial(t: optuna.trial.FrozenTrial) -> FinishedTrial:
    """A stored Optuna trial as a :class:`FinishedTrial` (graph rebuilt from its YAML user attr)."""
    text = t.user_attrs.get("graph")
    graph = AgentGraph.from_text(text, source=f"trial {t.number}") if text else None
    return FinishedTrial(
        number=t.number,
        state=_STATE[t.state],
        graph=graph,
        params=dict(t.params),
        values=list(t.values) if t.values is not None else None,
        metrics=dict(t.user_attrs.get("metrics", {})),
        origin=t.user_attrs.get("origin", ""),
        reason=t.user_attrs.get("reason"),
        examples=list(t.user_attrs.get("examples", [])),
        outcomes=str(t.user_attrs.get("outcomes", "")),
    )


#: Study user attribute: the trial a finished study selected (top-k re-evaluated on the full validation
#: split, see :mod:`agentsearch.runs.selection`); it is the best trial from then on.
SELECTED_ATTR = "agentsearch.selected"


def study_best(study: optuna.Study) -> list[FinishedTrial]:
    """The best trial (one objective: the selected one once a study finished) or the Pareto set, best first."""
    selected = study.user_attrs.get(SELECTED_ATTR)
    if selected is not None and len(study.directions) == 1:
        for t in study.get_trials(deepcopy=False, states=tuple(_STATE)):
            if t.number == selected:
                return [finished_trial(t)]
    try:
        best = study.best_trials if len(study.directions) > 1 else [study.best_trial]
    except ValueError:
        return []
    return [finished_trial(t) for t in sorted(best, key=lambda t: (-t.values[0], t.number))]


def load_study(study_name: str, storage: optuna.storages.BaseStorage) -> optuna.Study:
    """An existing study, or a one-line error listing the studies in that storage."""
    names = optuna.study.get_all_study_names(storage=storage)
    if study_name not in names:
        known = ", ".join(names[-5:]) or "none"
        raise UserError(f"--study {study_name}: no such study in this storage (found: {known})")
    return optuna.load_study(study_name=study_name, storage=storage)
