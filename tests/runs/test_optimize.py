"""optimize without the command line: the flags as a StudyConfig, then the study with its models."""

from __future__ import annotations

import pytest

from agentsearch.errors import UserError
from agentsearch.evaluators.llm.models import ModelFlags
from agentsearch.runs.optimize import optimize, study_config


def test_a_script_runs_the_same_study_as_the_cli(tmp_path, fake_server, questions_file):
    models = ModelFlags(model=fake_server.model, api_base=(fake_server.url,))
    cfg = study_config(
        benchmark="jsonl", models=models, run_dir=tmp_path, data=str(questions_file), val_size="8",
        test_size="8", formats="text", baseline_names="cot", trials=3, min_batch=4, parallel=1,
        concurrency=4, tracking=False,
    )  # fmt: skip
    assert cfg.val_size == 8 and cfg.formats == ("text",) and cfg.baseline_names == ("cot",)
    assert cfg.model_flags["api_base"] == [fake_server.url] and cfg.aliases == ("default",)
    announced: list[str] = []
    summary = optimize(cfg, models, cache=False, announce=announced.append)
    assert summary["n_trials"] == 3 and summary["test"]["best:0"]["n"] == 8
    assert any("study" in line for line in announced)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"strategy": "greedy"}, r"--strategy: unknown strategy 'greedy'"),
        ({"optimizer": "annealing"}, r"--optimizer: unknown optimizer 'annealing'"),
        ({"sampler": "grid"}, r"--sampler: unknown sampler 'grid'"),
        ({"pruner": "always"}, r"--pruner: unknown pruner 'always'"),
        ({"levels": "prompt,topology"}, r"--levels: unknown level 'topology'"),
        ({"val_size": "-3"}, r"--val-size"),
        ({"baseline_names": "cot,tot"}, r"tot"),
    ],
)
def test_bad_flags_fail_before_any_data_or_model(tmp_path, flags, message):
    with pytest.raises(UserError, match=message):
        study_config(benchmark="gsm8k", models=ModelFlags(), run_dir=tmp_path, **flags)
