"""The mock server's ``/metrics`` in vLLM's Prometheus names: dashboards and scrapers work as is.

Each app has its own :class:`prometheus_client.CollectorRegistry` (two servers
in one process never share counts). Names, types and histogram buckets follow
vLLM's: gauges ``vllm:num_requests_running``, ``vllm:num_requests_waiting``,
``vllm:kv_cache_usage_perc`` (a fraction, 0 to 1); counters
``vllm:num_preemptions_total``, ``vllm:prompt_tokens_total``,
``vllm:generation_tokens_total``, ``vllm:request_success_total``; histograms (in
seconds) ``vllm:time_to_first_token_seconds``, ``vllm:inter_token_latency_seconds``
(and its older name ``vllm:time_per_output_token_seconds``, one observation per
gap as vLLM's), ``vllm:e2e_request_latency_seconds``,
``vllm:request_queue_time_seconds``; each labelled ``model_name``. The token
source's own figures follow as ``burstlab_*`` gauges.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

#: vLLM's buckets, in seconds.
TTFT_BUCKETS = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
)  # fmt: skip
ITL_BUCKETS = (
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0,
    2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip
LATENCY_BUCKETS = (
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0,
    60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0,
)  # fmt: skip

#: The load a token source reports: running and waiting requests, the fraction
#: of KV cache in use, preemptions so far, and its own figures (``burstlab_*``).
Load = Callable[[], dict[str, float]]


class _Gauges(Collector):
    """Reads the source's load at scrape time."""

    def __init__(self, model: str, load: Load) -> None:
        self.model = model
        self.load = load

    def collect(self) -> Iterator[Metric]:
        state = self.load()
        label = [self.model]
        for name, key, doc in (
            (
                "vllm:num_requests_running",
                "running",
                "Number of requests in model execution batches.",
            ),
            ("vllm:num_requests_waiting", "waiting", "Number of requests waiting to be processed."),
            (
                "vllm:kv_cache_usage_perc",
                "kv_cache_usage",
                "KV-cache usage. 1 means 100 percent usage.",
            ),
        ):
            gauge = GaugeMetricFamily(name, doc, labels=["model_name"])
            gauge.add_metric(label, state.get(key, 0.0))
            yield gauge
        preempt = CounterMetricFamily(
            "vllm:num_preemptions", "Cumulative number of preemptions from the engine.",
            labels=["model_name"],
        )  # fmt: skip
        preempt.add_metric(label, state.get("preemptions_total", 0.0))
        yield preempt
        for key, value in state.items():
            if key.startswith("burstlab_"):
                own = GaugeMetricFamily(key, f"burstlab's token source: {key[9:]}.")
                own.add_metric([], value)
                yield own


class ServerMetrics:
    """One app's metrics (see the module docstring)."""

    def __init__(self, model: str, load: Load) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(_Gauges(model, load))
        labels = ["model_name"]

        def hist(name: str, doc: str, buckets: Sequence[float]) -> Histogram:
            return Histogram(name, doc, labels, registry=self.registry, buckets=buckets)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, labels, registry=self.registry)

        self.ttft = hist(
            "vllm:time_to_first_token_seconds", "Histogram of time to first token in seconds.",
            TTFT_BUCKETS,
        ).labels(model)  # fmt: skip
        self.itl = hist(
            "vllm:inter_token_latency_seconds", "Histogram of inter-token latency in seconds.",
            ITL_BUCKETS,
        ).labels(model)  # fmt: skip
        self.tpot = hist(
            "vllm:time_per_output_token_seconds",
            "Histogram of time per output token in seconds (older name of inter-token latency).",
            ITL_BUCKETS,
        ).labels(model)
        self.e2e = hist(
            "vllm:e2e_request_latency_seconds", "Histogram of e2e request latency in seconds.",
            LATENCY_BUCKETS,
        ).labels(model)  # fmt: skip
        self.queue = hist(
            "vllm:request_queue_time_seconds",
            "Histogram of time spent in WAITING phase for request.",
            LATENCY_BUCKETS,
        ).labels(model)
        self.prompt = counter("vllm:prompt_tokens", "Number of prefill tokens processed.").labels(
            model
        )
        self.generation = counter(
            "vllm:generation_tokens", "Number of generation tokens processed."
        ).labels(model)
        self.success = counter(
            "vllm:request_success", "Count of successfully processed requests."
        ).labels(model)

    def finished(
        self, t_recv: float, times: Sequence[float], t_end: float, queued_s: float, prompt: int
    ) -> None:
        """Record one finished request: received at ``t_recv``, tokens written at
        ``times``, last byte at ``t_end`` (``time.perf_counter`` seconds), after
        ``queued_s`` seconds waiting, with ``prompt`` prompt tokens."""
        self.prompt.inc(prompt)
        self.generation.inc(len(times))
        self.success.inc()
        self.e2e.observe(max(0.0, t_end - t_recv))
        self.queue.observe(max(0.0, queued_s))
        if times:
            self.ttft.observe(max(0.0, times[0] - t_recv))
        for a, b in itertools.pairwise(times):
            gap = max(0.0, b - a)
            self.itl.observe(gap)
            self.tpot.observe(gap)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
