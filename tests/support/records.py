"""Hand-made result records for tests of the run layer and the report."""

from __future__ import annotations

from burstlab.results.records import Record


def ok_record(
    i: int,
    t: float,
    *,
    lag: float = 0.0004,
    ttft: float = 0.05,
    itl: float = 0.01,
    n: int = 20,
    requested: int | None = None,
    stream: bool = True,
    model: str = "llama",
    prompt: int = 100,
) -> Record:
    """An ok request sent ``lag`` late that streamed ``n`` one-token chunks."""
    sent = t + lag
    first = sent + ttft
    chunks = [first + k * itl for k in range(n)] if stream else []
    return Record(
        request_id=i,
        arrival_s=t,
        model=model,
        input_tokens=prompt,
        output_tokens=requested if requested is not None else n,
        outcome="ok",
        dispatched_s=sent,
        sent_s=sent,
        first_s=first,
        end_s=first + (n - 1) * itl,
        chunk_s=chunks,
        chunk_tokens=[1] * len(chunks),
        input_tokens_achieved=prompt,
        output_tokens_achieved=n,
        tokens_source="usage",
    )


def failed_record(
    i: int,
    t: float,
    kind: str,
    sub: str | None,
    text: str = "boom",
    *,
    status: int | None = None,
    model: str = "llama",
) -> Record:
    rec = Record(request_id=i, arrival_s=t, model=model, input_tokens=100, output_tokens=20)
    rec.dispatched_s = rec.sent_s = t + 0.0004
    rec.end_s = t + 0.02
    rec.http_status = status
    rec.fail(kind, sub, text)
    return rec
