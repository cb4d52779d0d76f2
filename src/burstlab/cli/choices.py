"""The fixed sets an option takes one value of, as ``Literal`` types: typer lists the
choices in ``--help`` (``<chat|completions>``) and refuses any other value with one
error line (``--api: 'x' is not one of ...``) before the command runs.

Sets whose owner is cheap to import are taken from it. Those owned by modules that
pull in numpy, polars or scipy (the simulator, the forecasters, the exporters) are
repeated here, so that ``burstlab --help`` stays fast; ``tests/unit/cli/test_choices.py``
holds each equal to its owner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from burstlab.bench.backends import BACKENDS, Api
from burstlab.trace.formats import FORMAT_NAMES, TimeUnit

__all__ = [
    "Api",
    "Backend",
    "BenchExecutor",
    "ForeignFormat",
    "LogType",
    "MaxField",
    "PromptMode",
    "Scheduler",
    "Study",
    "SweepExecutor",
    "TimeUnit",
    "TraceFormat",
]

#: ``--max-field``: the request field carrying the output length (``bench.backends.Forcing``).
MaxField = Literal["max_tokens", "max_completion_tokens"]
#: ``--prompt``: token-id or text prompts (``BenchConfig.prompt``).
PromptMode = Literal["ids", "text"]
#: ``--log-type`` (``trace.schema.LOG_TYPES``).
LogType = Literal["conversation", "api"]
#: ``--scheduler`` (``sim.engine.config.EngineConfig.scheduler``).
Scheduler = Literal["fcfs", "srf", "lrf"]
#: ``experiment STUDY`` (``sim.experiment.STUDIES`` and ``grid``).
Study = Literal["scheduling", "kv", "pd", "grid"]
#: ``bench --executor`` (``bench.config.BenchConfig.executor``).
BenchExecutor = Literal["process", "ray"]
#: ``experiment --executor`` (``sim.sweep.EXECUTORS``).
SweepExecutor = Literal["serial", "process", "ray"]
#: ``generate --to`` (``workload.exports.FOREIGN``).
ForeignFormat = Literal["burstgpt", "mooncake", "vllm-timed", "vllm-custom", "guidellm"]

if TYPE_CHECKING:
    Backend = str
    TraceFormat = str
else:
    #: ``bench --backend`` (``bench.backends.BACKENDS``).
    Backend = Literal[BACKENDS]
    #: ``--format`` (``trace.formats.FORMAT_NAMES``).
    TraceFormat = Literal[FORMAT_NAMES]
