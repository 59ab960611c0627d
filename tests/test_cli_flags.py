"""The CLI's flags and messages as a person reads them (issue 12, section 3): help, names, aliases, splits.

In-process (``agentsearch.cli.main``) against the in-process fake server: fast, no subprocesses."""

from __future__ import annotations

import json
import re

import pytest

from agentsearch.cli import app, main
from agentsearch.errors import UserError
from agentsearch.evaluators.llm.models import ModelFlags
from agentsearch.runs.optimize import study_config

COMMANDS = sorted(c.name or c.callback.__name__ for c in app.registered_commands)


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_shows_no_placeholder_for_flags(capsys, command):
    code, out, _ = run(capsys, *([command] if command else []), "--help")
    assert code == 0 and "Usage:" in out
    assert "<bool>" not in out
    help_line = next(line for line in out.splitlines() if line.strip().startswith("--help"))
    assert help_line.split()[:2] == ["--help", "Show"]  # no type between the flag and its help
    # help texts keep their square brackets (plain help: no rich markup eats them)
    if command in ("evaluate", "serve"):
        assert "agentsearch[local-1.5b]" in out


def test_the_bare_command_prints_the_help(capsys):
    code, out, _ = run(capsys)
    assert code == 0 and "Usage:" in out and "optimize" in out


def test_every_option_has_help(capsys):
    import typer

    group = typer.main.get_command(app)
    for name, command in group.commands.items():
        for param in command.params:
            assert param.hidden if param.param_type_name == "option" and not param.help else True, (name, param.name)
    _, out, _ = run(capsys, "ui", "--help")
    assert re.search(r"--host <str>\s+interface", out), out


def test_proposer_model_shows_one_default(capsys):
    _, out, _ = run(capsys, "optimize", "--help")
    block = out[out.index("--proposer-model") : out.index("--prompt-optimizer")]
    assert block.count("default") == 2 and "[default:" not in block, block  # (default: the task model, alias 'default')


def test_version(capsys):
    from importlib.metadata import version

    code, out, _ = run(capsys, "--version")
    assert code == 0 and out.strip() == f"agentsearch {version('agentsearch')}"


def _eval_args(tmp_path, fake_server, questions_file, *extra: str) -> list[str]:
    assert main(["baselines", "--out", str(tmp_path / "agents")]) == 0
    return ["evaluate", "--agent", str(tmp_path / "agents" / "cot.yaml"), "--benchmark", "jsonl", "--data",
            str(questions_file), "--model", fake_server.model, "--api-base", fake_server.url, "--no-cache",
            "--run-dir", str(tmp_path / "run"), *extra]  # fmt: skip


def test_evaluate_table_title_keeps_the_split(tmp_path, fake_server, questions_file, capsys):
    args = _eval_args(tmp_path, fake_server, questions_file, "--split", "test", "--test-size", "4")
    capsys.readouterr()
    code, out, _ = run(capsys, *args)
    assert code == 0 and "on jsonl [test]" in out, out


def test_evaluate_with_data_scores_every_example_by_default(tmp_path, fake_server, questions_file, capsys):
    """A 60-line file: the default split of `evaluate --data` is all of it (the test split would be 100)."""
    args = _eval_args(tmp_path, fake_server, questions_file, "--json")
    capsys.readouterr()
    code, out, err = run(capsys, *args)
    assert code == 0, err
    summary = json.loads(out)
    assert summary["split"] == "all" and summary["n"] == 60
    code, out, _ = run(capsys, *args, "--split", "test", "--val-size", "5", "--test-size", "10")
    assert code == 0 and json.loads(out)["n"] == 10  # the named splits are still there
    code, out, _ = run(capsys, *args, "--split", "val", "--val-size", "5", "--test-size", "10")
    assert code == 0 and json.loads(out)["n"] == 5
    code, out, err = run(capsys, *args, "--test-size", "10")  # sizes without --split: all, and a note why
    assert code == 0 and json.loads(out)["n"] == 60 and "--split train|val|test" in err
    code, _, err = run(capsys, *args, "--split", "everything")
    assert code == 2 and "--split 'everything': expected train, val, test or all" in err


def test_call_timeout_and_its_deprecated_alias(tmp_path, fake_server, questions_file, capsys, monkeypatch):
    import agentsearch.evaluators.llm.models as models

    seen: list[float | None] = []
    real = models.ModelSet.__init__

    def spy(self, *a, **kw):
        seen.append(kw.get("timeout"))
        real(self, *a, **kw)

    monkeypatch.setattr(models.ModelSet, "__init__", spy)
    args = _eval_args(tmp_path, fake_server, questions_file, "--limit", "2", "--json")
    capsys.readouterr()
    code, _, err = run(capsys, *args, "--call-timeout", "7")
    assert code == 0 and "deprecated" not in err
    code, _, err = run(capsys, *args, "--timeout", "9")  # the old name still works, and says so
    assert code == 0 and "warning: --timeout is deprecated: use --call-timeout" in err
    assert seen == [7.0, 9.0]
    code, _, err = run(capsys, *args, "--timeout", "9", "--call-timeout", "7")
    assert code == 2 and "give one" in err
    _, out, _ = run(capsys, "evaluate", "--help")
    assert "--call-timeout" in out and "--timeout" not in out  # the alias is hidden


def test_serve_slots_and_its_deprecated_alias(capsys, monkeypatch):
    import agentsearch.evaluators.llm.backends.local as local

    configs = []

    class FakeServer:  # records the config serve builds; starts nothing
        def __init__(self, config, progress=None):
            configs.append(config)

        def __enter__(self):
            raise KeyboardInterrupt  # as if Ctrl-C came right away

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(local, "LocalServer", FakeServer)
    for flags in (["--slots", "3"], ["--parallel", "3"]):
        assert main(["serve", *flags]) == 130
    assert [c.parallel for c in configs] == [3, 3]
    assert "warning: --parallel is deprecated for serve: use --slots" in capsys.readouterr().err
    code, _, err = run(capsys, "serve", "--slots", "2", "--parallel", "3")
    assert code == 2 and "give one" in err
    _, out, _ = run(capsys, "serve", "--help")
    assert "--slots" in out and "--parallel" not in out


def _cfg(tmp_path, **flags):
    warnings: list[str] = []
    cfg = study_config(benchmark="gsm8k", models=ModelFlags(), run_dir=tmp_path, warn=warnings.append, **flags)
    return cfg, warnings


def test_one_flag_names_the_search(tmp_path):
    cfg, warnings = _cfg(tmp_path)
    assert (cfg.optimizer, cfg.sampler, cfg.pruner, warnings) == ("tpe", "tpe", "sha", [])
    cfg, warnings = _cfg(tmp_path, optimizer="random")
    assert (cfg.optimizer, cfg.sampler, warnings) == ("random", "random", [])
    cfg, warnings = _cfg(tmp_path, optimizer="meta-agent")
    assert (cfg.optimizer, cfg.sampler, warnings) == ("meta-agent", "tpe", [])  # its fallback sampler
    # the deprecated flags map onto --optimizer, with one line each
    cfg, warnings = _cfg(tmp_path, sampler="random")
    assert (cfg.optimizer, cfg.sampler) == ("random", "random")
    assert warnings == ["--sampler is deprecated: use --optimizer random"]
    cfg, warnings = _cfg(tmp_path, strategy="staged")
    assert cfg.optimizer == "staged" and warnings == ["--strategy is deprecated: use --optimizer staged"]
    cfg, warnings = _cfg(tmp_path, optimizer="evolution", sampler="random")  # the old meaning: the fallback
    assert (cfg.optimizer, cfg.sampler) == ("evolution", "random") and len(warnings) == 1
    with pytest.raises(UserError, match="give one"):
        _cfg(tmp_path, optimizer="tpe", sampler="random")
    with pytest.raises(UserError, match="give one"):
        _cfg(tmp_path, optimizer="proposer", strategy="staged")


def test_the_pruner_warning_only_when_the_user_set_it(tmp_path):
    cfg, warnings = _cfg(tmp_path, objectives="accuracy,tokens")
    assert cfg.pruner == "none" and warnings == []  # never set: nothing to warn about
    cfg, warnings = _cfg(tmp_path, objectives="accuracy,tokens", pruner="sha")
    assert cfg.pruner == "none"
    assert warnings == ["Optuna does not prune multi-objective studies: --pruner sha is ignored"]
    cfg, warnings = _cfg(tmp_path, pruner="median")
    assert cfg.pruner == "median" and warnings == []


def test_optimize_help_hides_the_deprecated_names(capsys):
    _, out, _ = run(capsys, "optimize", "--help")
    assert "--optimizer" in out and "staged" in out
    assert "--sampler" not in out and "--strategy" not in out and "--timeout" not in out


def test_serve_help_and_readme_say_what_the_model_packages_hold(capsys):
    """The packaged models' names, versions, sizes and sha256 as the code pins them, and the hub repos."""
    from pathlib import Path

    from agentsearch.evaluators.llm.backends.local import HUB_MODELS, PACKAGED_MODELS

    _, help_text, _ = run(capsys, "serve", "--help")
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    for text in (" ".join(help_text.split()), readme):
        for model in PACKAGED_MODELS.values():
            assert model.sha256 in text and f"{model.size:,}" in text and model.version in text
            assert model.dist_names[0] in text and model.dist_names[-1].rsplit("-", 1)[1] in text
            upstream = "Qwen/" + model.key.replace("qwen2.5-coder", "Qwen2.5-Coder").split("-q4")[0]
            assert upstream.replace("-instruct", "-Instruct").replace("b-", "B-") + "-GGUF" in text
        for hub in HUB_MODELS.values():
            assert hub.repo_id in text and hub.filename.split("-q4")[0] in text
        assert "Apache-2.0" in text and "hf_hub_download" in text


def test_a_pareto_study_config_without_a_pruner_logs_no_pruner_warning(tmp_path, questions_file, caplog):
    from agentsearch.runs.study import StudyConfig, prepare_study

    cfg = StudyConfig(study="p", benchmark="jsonl", data=str(questions_file), val_size=8, test_size=8,
                      objectives=("accuracy", "tokens"), run_dir=tmp_path, tracking=False)  # fmt: skip
    with caplog.at_level("WARNING"):
        prepare_study(cfg)
    assert cfg.pruner_name() == "none" and "pruner" not in caplog.text
    explicit = StudyConfig(study="q", benchmark="jsonl", data=str(questions_file), val_size=8, test_size=8,
                           objectives=("accuracy", "tokens"), pruner="sha", run_dir=tmp_path,
                           tracking=False)  # fmt: skip
    with caplog.at_level("WARNING"):
        prepare_study(explicit)
    assert "--pruner sha is ignored" in caplog.text  # set by the caller: said once


def test_optimize_says_which_limit_stopped_it(tmp_path, fake_server, questions_file, capsys):
    code, out, err = run(
        capsys, "optimize", "--benchmark", "jsonl", "--data", str(questions_file), "--model", fake_server.model,
        "--api-base", fake_server.url, "--val-size", "8", "--test-size", "8", "--min-batch", "4", "--formats", "text",
        "--trials", "12", "--parallel", "1", "--concurrency", "4", "--no-tracking", "--no-cache", "--run-dir",
        str(tmp_path), "--max-tokens", "2000", "--sampler", "random",
    )  # fmt: skip
    assert code == 0, err
    assert "warning: --sampler is deprecated: use --optimizer random" in err
    assert "projected: " in err and " LLM calls" in err
    assert "the search stopped early: token budget reached" in out and "of --trials 12 trials ran" in out
