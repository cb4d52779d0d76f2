"""burstlab: LLM serving workloads from real traces.

The public API is small and re-exported here; everything else is internal.
The central object is the *request table*, a polars DataFrame with the
canonical schema described in :mod:`burstlab.trace.schema`.

Names are resolved lazily (PEP 562) so that ``burstlab --help`` and other
light entry points do not pay for importing polars.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from burstlab.core.errors import BurstlabError, FetchError, InputError
from burstlab.core.version import __version__

if TYPE_CHECKING:
    from burstlab.analyze.gaps import fit_gaps
    from burstlab.analyze.summary import Comparison, Filters, Summary, analyze, compare
    from burstlab.bench.config import BenchConfig
    from burstlab.bench.run import bench as run_bench
    from burstlab.forecast import ForecastResult, load_predictions, run_forecast, write_forecast
    from burstlab.forecast.plan import make_plan
    from burstlab.report.forecast import render_forecast
    from burstlab.report.run import render_run
    from burstlab.results.records import load_records
    from burstlab.results.rundir import RunDir, RunResult
    from burstlab.results.slo import SLO
    from burstlab.results.summary import RunSummary
    from burstlab.server.app import make_app
    from burstlab.server.engine import make_engine_app
    from burstlab.server.fixed import FixedTiming
    from burstlab.server.hosting import serve_in_thread
    from burstlab.sim.autoscale import Plan, capacity_rps, load_plan, run_autoscale
    from burstlab.sim.engine import Engine, EngineConfig
    from burstlab.sim.simulate import simulate
    from burstlab.sim.spec import EngineSpec, load_spec
    from burstlab.trace.download import fetch
    from burstlab.trace.formats import FORMATS, ColumnMap
    from burstlab.trace.info import TraceInfo, trace_info
    from burstlab.trace.io import read_table, write_table
    from burstlab.trace.load_report import LoadReport
    from burstlab.trace.readers import read_trace
    from burstlab.trace.sample import sample_trace
    from burstlab.trace.schema import COLUMNS, SchemaError, validate
    from burstlab.workload.holdout import holdout
    from burstlab.workload.model import WorkloadModel, fit
    from burstlab.workload.parametric import parametric_workload
    from burstlab.workload.replay import ReplaySpec, replay
    from burstlab.workload.synthetic import synthetic_trace

_LAZY = {
    "BenchConfig": "burstlab.bench.config",
    "RunResult": "burstlab.results.rundir",
    "RunDir": "burstlab.results.rundir",
    "RunSummary": "burstlab.results.summary",
    "SLO": "burstlab.results.slo",
    "make_app": "burstlab.server.app",
    "make_engine_app": "burstlab.server.engine",
    "serve_in_thread": "burstlab.server.hosting",
    "run_bench": "burstlab.bench.run:bench",
    "load_records": "burstlab.results.records",
    "render_run": "burstlab.report.run",
    "ForecastResult": "burstlab.forecast",
    "run_forecast": "burstlab.forecast",
    "write_forecast": "burstlab.forecast",
    "load_predictions": "burstlab.forecast",
    "render_forecast": "burstlab.report.forecast",
    "make_plan": "burstlab.forecast.plan",
    "Plan": "burstlab.sim.autoscale",
    "capacity_rps": "burstlab.sim.autoscale",
    "load_plan": "burstlab.sim.autoscale",
    "run_autoscale": "burstlab.sim.autoscale",
    "synthetic_trace": "burstlab.workload.synthetic",
    "FixedTiming": "burstlab.server.fixed",
    "Engine": "burstlab.sim.engine",
    "EngineConfig": "burstlab.sim.engine",
    "EngineSpec": "burstlab.sim.spec",
    "load_spec": "burstlab.sim.spec",
    "simulate": "burstlab.sim.simulate",
    "fit": "burstlab.workload.model",
    "fit_gaps": "burstlab.analyze.gaps",
    "holdout": "burstlab.workload.holdout",
    "parametric_workload": "burstlab.workload.parametric",
    "WorkloadModel": "burstlab.workload.model",
    "ReplaySpec": "burstlab.workload.replay",
    "replay": "burstlab.workload.replay",
    "analyze": "burstlab.analyze.summary",
    "compare": "burstlab.analyze.summary",
    "Comparison": "burstlab.analyze.summary",
    "Filters": "burstlab.analyze.summary",
    "Summary": "burstlab.analyze.summary",
    "fetch": "burstlab.trace.download",
    "FORMATS": "burstlab.trace.formats",
    "ColumnMap": "burstlab.trace.formats",
    "TraceInfo": "burstlab.trace.info",
    "trace_info": "burstlab.trace.info",
    "read_table": "burstlab.trace.io",
    "write_table": "burstlab.trace.io",
    "LoadReport": "burstlab.trace.load_report",
    "read_trace": "burstlab.trace.readers",
    "sample_trace": "burstlab.trace.sample",
    "COLUMNS": "burstlab.trace.schema",
    "SchemaError": "burstlab.trace.schema",
    "validate": "burstlab.trace.schema",
}


def __getattr__(name: str) -> Any:
    where = _LAZY.get(name)
    if where is None:
        raise AttributeError(f"module 'burstlab' has no attribute {name!r}")
    module, _, attr = where.partition(":")
    return getattr(importlib.import_module(module), attr or name)


__all__ = [
    "COLUMNS",
    "FORMATS",
    "SLO",
    "BenchConfig",
    "BurstlabError",
    "ColumnMap",
    "Comparison",
    "Engine",
    "EngineConfig",
    "EngineSpec",
    "FetchError",
    "Filters",
    "FixedTiming",
    "ForecastResult",
    "InputError",
    "LoadReport",
    "Plan",
    "ReplaySpec",
    "RunDir",
    "RunResult",
    "RunSummary",
    "SchemaError",
    "Summary",
    "TraceInfo",
    "WorkloadModel",
    "__version__",
    "analyze",
    "capacity_rps",
    "compare",
    "fetch",
    "fit",
    "fit_gaps",
    "holdout",
    "load_plan",
    "load_predictions",
    "load_records",
    "load_spec",
    "make_app",
    "make_engine_app",
    "make_plan",
    "parametric_workload",
    "read_table",
    "read_trace",
    "render_forecast",
    "render_run",
    "replay",
    "run_autoscale",
    "run_bench",
    "run_forecast",
    "sample_trace",
    "serve_in_thread",
    "simulate",
    "synthetic_trace",
    "trace_info",
    "validate",
    "write_forecast",
    "write_table",
]
