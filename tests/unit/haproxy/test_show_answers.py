"""mesh.haproxy.show_answers: HAProxy 2.6's own answers read into data."""

from __future__ import annotations

import pytest

from mesh.errors import RuntimeApiError
from mesh.haproxy.show_answers import processes, servers_state, stat_rows

HEADER = (
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
    "srv_iweight srv_time_since_last_change srv_check_status srv_check_result "
    "srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id "
    "srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr "
    "srv_agent_port"
)
# Two backends; a ready, a drained (0x08) and a forced-maintenance (0x01) server.
SERVERS_STATE = f"""1
{HEADER}
3 hello 1 a 127.0.0.1 2 0 10 10 4 1 0 0 0 0 0 0 - 7001 - 0 0 - - 0
3 hello 2 b 127.0.0.1 2 8 20 20 4 1 0 0 0 0 0 0 - 7002 - 0 0 - - 0
4 hello~1f2e3d4c 1 c 127.0.0.2 0 1 1 1 4 1 0 0 0 0 0 0 - 7003 - 0 0 - - 0
"""


def test_servers_state_per_backend_and_server() -> None:
    state = servers_state(SERVERS_STATE)
    assert set(state) == {"hello", "hello~1f2e3d4c"}
    a, b = state["hello"]["a"], state["hello"]["b"]
    assert (a.address, a.port, a.weight, a.op_state, a.state) == (
        "127.0.0.1",
        7001,
        10,
        "running",
        "ready",
    )
    assert (b.weight, b.state) == (20, "drain")
    c = state["hello~1f2e3d4c"]["c"]
    assert (c.op_state, c.state) == ("stopped", "maint")


def test_an_empty_servers_state_has_no_backends() -> None:
    assert servers_state(f"1\n{HEADER}\n") == {}


def test_an_error_is_not_read_as_a_state() -> None:
    with pytest.raises(RuntimeApiError, match="unexpected `show servers state` answer"):
        servers_state("Can't find backend.")


STAT = (
    "# pxname,svname,qcur,scur,stot,status,weight,hrsp_5xx,addr,\n"
    "fe,FRONTEND,,0,12,OPEN,,0,,\n"
    "hello,a,0,1,7,UP,10,2,127.0.0.1:7001,\n"
)


def test_stat_rows_are_keyed_by_the_header() -> None:
    fe, a = stat_rows(STAT)
    assert fe["svname"] == "FRONTEND"
    assert fe["weight"] == ""
    assert (a["pxname"], a["stot"], a["hrsp_5xx"], a["addr"]) == (
        "hello",
        "7",
        "2",
        "127.0.0.1:7001",
    )
    assert "" not in a  # the trailing comma makes no column


PROC = """#<PID>          <type>          <reloads>       <uptime>        <version>
16982           master          3 [failed: 1]   0d00h10m20s     2.6.12-1+deb12u3
# workers
20636           worker          0               0d00h00m08s     2.6.12-1+deb12u3
# old workers
16985           worker          1               0d00h10m20s     2.6.12-1+deb12u3
# programs
"""


def test_proc_names_current_and_old_workers_and_reloads() -> None:
    shown = processes(PROC)
    assert (shown.master, shown.reloads, shown.failed_reloads) == (16982, 3, 1)
    assert (shown.workers, shown.old_workers) == ((20636,), (16985,))


def test_proc_without_a_master_line_is_refused() -> None:
    with pytest.raises(RuntimeApiError, match="unexpected `show proc` answer"):
        processes("Unknown command.")
