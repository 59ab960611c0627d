"""Defaults shared by the CLI, the study and the space: one definition each (this module imports nothing)."""

#: LLM calls per question a design may make; designs over it are resampled, never run (--max-calls-per-question).
MAX_CALLS_PER_QUESTION = 24
#: Questions in a trial's first minibatch, and the pruner's minimum resource (--min-batch).
MIN_BATCH = 4
