"""The benchmark's arithmetic: wrk reports, units, medians, ratios and tables (no network)."""

from __future__ import annotations

import math

import pytest

from bench.proxy_summary import Run, cells_table, ratios, ratios_table, summarise
from bench.tables import median, ratio, table
from bench.wrk import parse_time_ms, parse_wrk

# A real wrk 4.1.0 report (wrk -t1 -c4 -d1s --latency).
CLEAN = """\
Running 1s test @ http://127.0.0.1:19012/x
  1 threads and 4 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    41.28us   79.46us   2.19ms   99.23%
    Req/Sec    86.52k    28.86k  127.75k    81.82%
  Latency Distribution
     50%   31.00us
     75%   49.00us
     90%   57.00us
     99%  104.00us
  94345 requests in 1.10s, 14.49MB read
Requests/sec:  85812.18
Transfer/sec:     13.18MB"""

# Slow and failing: milliseconds and seconds, error lines, bytes in KB.
TROUBLED = """\
Running 5s test @ http://127.0.0.1:8000/bench/small
  1 threads and 128 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.50ms    3.20ms   1.90s    90.00%
    Req/Sec     9.00k     1.00k   10.00k    70.00%
  Latency Distribution
     50%   11.20ms
     75%   13.00ms
     90%   15.50ms
     99%    1.20s
  512 requests in 5.00s, 75.50KB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 7
Requests/sec:    102.40
Transfer/sec:     15.10KB
"""


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("370.00us", 0.37),
        ("1.20ms", 1.2),
        ("2.00s", 2000.0),
        ("1.50m", 90_000.0),
        ("1.00h", 3_600_000.0),
    ],
)
def test_wrk_time_units(text: str, ms: float) -> None:
    assert parse_time_ms(text) == pytest.approx(ms)


def test_a_time_without_unit_is_refused() -> None:
    with pytest.raises(ValueError, match="not a wrk time"):
        parse_time_ms("12.0")


def test_clean_report() -> None:
    result = parse_wrk(CLEAN)
    assert result.rps == pytest.approx(85812.18)
    assert result.requests == 94345
    assert result.seconds == pytest.approx(1.10)
    assert result.p50 == pytest.approx(0.031)
    assert result.p99 == pytest.approx(0.104)
    assert result.latency_ms["90"] == pytest.approx(0.057)
    assert result.bytes_read == round(14.49 * 1024 * 1024)  # wrk's units are binary
    assert result.non_2xx == 0
    assert result.socket_errors == 0


def test_report_with_errors_and_mixed_units() -> None:
    result = parse_wrk(TROUBLED)
    assert result.p50 == pytest.approx(11.2)
    assert result.p99 == pytest.approx(1200.0)
    assert result.non_2xx == 7
    assert result.socket_errors == 6
    assert result.bytes_per_response == pytest.approx(75.5 * 1024 / 512)


def test_report_without_latency_distribution_has_no_percentiles() -> None:
    plain = CLEAN.replace("  Latency Distribution\n", "").replace("     50%   31.00us\n", "")
    plain = plain.split("     75%")[0] + "  94345 requests in 1.10s, 14.49MB read\n"
    plain += "Requests/sec:  85812.18\n"
    result = parse_wrk(plain)
    assert math.isnan(result.p50)
    assert result.rps == pytest.approx(85812.18)


def test_not_a_report() -> None:
    with pytest.raises(ValueError, match="not a wrk report"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused")


def test_median_and_ratio_ignore_missing_values() -> None:
    assert median([3.0, math.nan, 1.0, 2.0]) == 2.0
    assert math.isnan(median([math.nan]))
    assert ratio(10.0, 4.0) == 2.5
    assert math.isnan(ratio(1.0, 0.0))
    assert math.isnan(ratio(math.nan, 1.0))


def _run(proxy: str, rnd: int, rps: float, p99: float, *, cpu: float = 1.0) -> Run:
    return Run(
        round=rnd,
        proxy=proxy,
        size="small",
        connections=32,
        rps=rps,
        p50_ms=p99 / 4,
        p99_ms=p99,
        requests=int(rps * 5),
        errors=0,
        bytes_per_response=151.0,
        cpu_seconds=cpu * 5,
        wall_seconds=5.0,
        proxy_core_busy=0.99,
        load_core_busy=0.5,
    )


def test_cpu_per_thousand_requests_per_second() -> None:
    run = _run("natsmesh", 0, rps=20_000, p99=2.0, cpu=1.0)
    assert run.vcpu == pytest.approx(1.0)
    assert run.vcpu_per_krps == pytest.approx(0.05)  # 1 vCPU / 20 thousand req/s


def test_medians_over_rounds_and_ratios() -> None:
    runs = [
        _run("natsmesh", 0, 10_000, 4.0),
        _run("natsmesh", 1, 12_000, 2.0),
        _run("natsmesh", 2, 50_000, 3.0),  # an outlier round: the median ignores it
        _run("nginx", 0, 40_000, 1.0),
        _run("nginx", 1, 40_000, 1.5),
        _run("nginx", 2, 42_000, 1.0),
        _run("haproxy", 0, 48_000, 1.0),
        _run("passthrough", 0, 24_000, 1.5),
    ]
    cells = {c.proxy: c for c in summarise(runs)}
    assert cells["natsmesh"].rps == 12_000
    assert cells["natsmesh"].p99_ms == 3.0
    assert cells["natsmesh"].rounds == 3
    assert cells["natsmesh"].bound == "P"
    (compared,) = ratios(list(cells.values()))
    assert compared.rps == pytest.approx({"nginx": 0.3, "haproxy": 0.25, "passthrough": 0.5})
    assert compared.p99 == pytest.approx({"nginx": 3.0, "haproxy": 3.0})


def test_no_ratios_without_natsmesh() -> None:
    assert ratios(summarise([_run("nginx", 0, 1.0, 1.0)])) == []


def test_tables_align_and_show_every_target() -> None:
    runs = [_run("nginx", 0, 40_000, 1.0), _run("natsmesh", 0, 10_000, 4.0)]
    cells = summarise(runs)
    text = cells_table(cells, ["natsmesh", "nginx"])
    lines = text.splitlines()
    assert len({len(line) for line in lines[:2]}) == 1  # header as wide as the rule
    assert lines[2].split()[2] == "natsmesh"  # targets in the order asked for
    assert "40,000" in lines[3]
    ratio_text = ratios_table(ratios(cells))
    assert ratio_text.splitlines()[0].split() == [
        "target",
        "size",
        "conns",
        "req/s",
        "vs",
        "nginx",
        "p99",
        "vs",
        "nginx",
    ]
    assert "0.25x" in ratio_text  # req/s against nginx
    assert "4.00x" in ratio_text  # p99 against nginx
    assert "haproxy" not in ratio_text  # it did not run


def test_each_data_plane_is_compared_with_the_others_and_with_each_other() -> None:
    runs = [
        _run("natsmesh", 0, 10_000, 4.0),
        _run("natsmesh-haproxy", 0, 38_000, 1.2),
        _run("nginx", 0, 40_000, 1.0),
    ]
    python, haproxy = ratios(summarise(runs))
    assert (python.subject, haproxy.subject) == ("natsmesh", "natsmesh-haproxy")
    assert python.rps == pytest.approx({"nginx": 0.25})
    assert haproxy.rps == pytest.approx({"nginx": 0.95, "natsmesh": 3.8})
    assert haproxy.p99 == pytest.approx({"nginx": 1.2, "natsmesh": 0.3})
    assert ratios_table([python, haproxy]).splitlines()[3].split()[0] == "natsmesh-haproxy"


def test_a_baseline_revision_is_compared_like_another_proxy() -> None:
    runs = [_run("natsmesh", 0, 9_900, 2.2), _run("baseline", 0, 10_000, 2.0)]
    (compared,) = ratios(summarise(runs))
    assert compared.rps == pytest.approx({"baseline": 0.99})
    assert compared.p99 == pytest.approx({"baseline": 1.1})
    assert "0.99x" in ratios_table([compared])


def test_table_alignment() -> None:
    text = table(["name", "n"], [["a", "1"], ["bb", "100"]])
    assert text.splitlines() == ["name    n", "----  ---", "a       1", "bb    100"]
