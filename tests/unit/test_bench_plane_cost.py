"""bench.plane_cost's pure parts: the rendered lines' rule groups, callgrind's file (no process)."""

from __future__ import annotations

import itertools

import pytest

from bench.callgrind import Counts, parse
from bench.console import BenchError
from bench.plane_groups import BASE, GROUPS, group_of, variants
from bench.plane_render import gateway_config
from mesh.config import Settings


@pytest.fixture(scope="module")
def rendered() -> str:
    return gateway_config(
        Settings(), upstream=18100, listen=18000, probe=18001, log_socket="/tmp/plane-cost.sock"
    )


def test_the_last_variant_is_the_gateways_configuration_itself(rendered: str) -> None:
    # Every rendered line has a group (group_of raises otherwise), and the cumulative
    # build-up ends on exactly what the gateway runs: its row is the real configuration.
    built = variants(rendered, "bench")
    assert [v.group for v in built] == [group for group, _ in GROUPS]
    assert built[-1].text == rendered


def test_each_variant_adds_its_group_to_the_one_before(rendered: str) -> None:
    def lines(text: str) -> list[str]:  # less the stand-in for routing
        return [line for line in text.splitlines() if "default_backend" not in line]

    built = variants(rendered, "bench")
    for before, after in itertools.pairwise(built):
        added = [line for line in lines(after.text) if line not in lines(before.text)]
        assert added, after.group
        assert all(group_of(line) == after.group for line in added), after.group
        assert set(lines(before.text)) <= set(lines(after.text))


def test_a_variant_without_routing_still_forwards_to_the_service(rendered: str) -> None:
    base = variants(rendered, "bench")[0]
    assert base.group == BASE
    lines = base.text.splitlines()
    frontend, probe = lines.index("frontend mesh"), lines.index("frontend probe")
    assert "    default_backend bench" in lines[frontend:probe]
    assert any(line.startswith("    server bench-upstream 127.0.0.1:18100") for line in lines)
    assert not any(line.strip().startswith(("retry-on", "log", "use_backend")) for line in lines)


def test_a_rendered_line_in_no_group_stops_the_bench() -> None:
    with pytest.raises(BenchError, match=r"in no rule group.*set-var\(txn.new\)"):
        group_of("    http-request set-var(txn.new) str(x)")


def test_the_longest_prefix_decides() -> None:
    assert group_of("    http-request del-header traceparent if { x }") == "traceparent"
    assert str(group_of("    http-request del-header te")).startswith("edge")
    assert str(group_of("    log-format x")).startswith("logging")
    assert group_of("    no log") == BASE
    assert group_of("   ") is None


def test_no_prefix_is_in_two_groups() -> None:
    prefixes = [prefix for _, group in GROUPS for prefix in group]
    assert len(prefixes) == len(set(prefixes))


# The shape of callgrind 3.19's files: compressed names, a call's inclusive cost on the
# line after `calls=`, a function's name first given by a `cfn=` line.
CALLGRIND = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
positions: line
events: Ir
summary: 970

ob=(1) /usr/sbin/haproxy
fl=(1) src/stream.c
fn=(1) process_stream
10 300
cob=(2) /usr/lib/x86_64-linux-gnu/libc.so.6
cfi=(2) ./string/../sysdeps/x86_64/multiarch/memmove-vec-unaligned-erms.S
cfn=(2) __memcpy_avx_unaligned_erms
calls=1 264
+2 520
+1 20

ob=(2)
fl=(2)
fn=(2)
264 400
+6 50
cfn=(3) _dl_fixup
calls=1 0
+1 70
fn=(3)
0 70
fl=(3) ./string/../sysdeps/x86_64/multiarch/memset-vec-unaligned-erms.S
fn=(4) __memset_avx2_unaligned_erms
0 130

totals: 970
"""


def test_copies_are_the_copy_functions_own_cost_only() -> None:
    # memcpy's and memset's own lines (450 + 130), not the call into memcpy from
    # process_stream (520) nor memcpy's call out to _dl_fixup (70).
    assert parse(CALLGRIND) == Counts(970, 580)
    assert Counts(970, 580).without_copies == 390


def test_the_cost_column_follows_the_positions() -> None:
    two = CALLGRIND.replace("positions: line", "positions: instr line")
    two = "\n".join(
        f"0x1 {line}" if line[:1].isdigit() or line[:1] == "+" else line
        for line in two.splitlines()
    )
    assert parse(two) == Counts(970, 580)


def test_a_file_without_a_total_is_an_error() -> None:
    with pytest.raises(BenchError, match="no total"):
        parse(CALLGRIND.replace("summary: 970", "").replace("totals: 970", ""))
