"""``--slo`` (seconds, ``=``) and ``--goodput`` (milliseconds, ``:``, vLLM's and AIPerf's
names) give the same SLO; bad text is one error naming the option and the item."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from burstlab.core.errors import InputError
from burstlab.results.slo import SLO, parse_goodput, parse_slo


def test_goodput_in_milliseconds_equals_slo_in_seconds() -> None:
    assert parse_goodput("ttft:500,tpot:50,e2e:10000") == parse_slo("ttft=0.5,tpot=0.05,e2e=10")
    assert parse_goodput("ttft:500") == SLO(ttft=0.5)


@pytest.mark.parametrize(
    "text",
    [
        "ttft:500 tpot:50 e2el:10000",  # vLLM's names, space separated
        "time_to_first_token:500,inter_token_latency:50,request_latency:10000",  # AIPerf's
        " TTFT:500 , tpot:50,, e2e:1e4 ",
    ],
)
def test_goodput_takes_the_peers_spellings(text: str) -> None:
    assert parse_goodput(text) == SLO(ttft=0.5, tpot=0.05, e2e=10.0)


@given(
    ttft=st.floats(0.001, 1e6, allow_nan=False),
    tpot=st.floats(0.001, 1e6, allow_nan=False),
)
def test_goodput_and_slo_agree_on_any_values(ttft: float, tpot: float) -> None:
    ms = parse_goodput(f"ttft:{ttft!r},tpot:{tpot!r}")
    s = parse_slo(f"ttft={ttft / 1e3!r},tpot={tpot / 1e3!r}")
    assert ms.ttft == pytest.approx(s.ttft)
    assert ms.tpot == pytest.approx(s.tpot)


@pytest.mark.parametrize(
    ("text", "item"),
    [
        ("ttft=500", "'ttft=500'"),  # --slo's spelling
        ("ttft:500,itl:5", "'itl:5'"),  # not an objective
        ("ttft:fast", "'ttft:fast'"),
        ("ttft:-1", "'ttft:-1'"),
        ("ttft:0", "'ttft:0'"),
        ("ttft:inf", "'ttft:inf'"),
        ("ttft:nan", "'ttft:nan'"),
        ("ttft:1,time_to_first_token:2", "'time_to_first_token:2'"),  # twice
    ],
)
def test_bad_goodput_names_the_option_and_the_item(text: str, item: str) -> None:
    with pytest.raises(InputError) as caught:
        parse_goodput(text)
    message = caught.value.message
    assert message.startswith("--goodput: "), message
    assert item in message
    assert "\n" not in message


def test_empty_goodput_is_refused() -> None:
    with pytest.raises(InputError, match="--goodput: no objective"):
        parse_goodput(" , ")
