"""Per-instance upstream counters over loopback: who failed how, retries, ejections, pruning."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from proxying import ProxyFactory, UpstreamFactory
from wire import closed_port, get

from mesh.membership import view as membership
from mesh.messages import Heartbeat
from mesh.metrics import registry_for, render
from mesh.timing import PRESETS


def samples(proxy_metrics: bytes, family: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one family from /metrics text, keyed by their sorted labels."""
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for metric in text_string_to_metric_families(proxy_metrics.decode()):
        if metric.name == family:
            for sample in metric.samples:
                if sample.name == family + "_total":
                    found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def labels(**values: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(values.items()))


async def test_counters_say_which_instance_failed_how_and_forget_it_when_it_leaves(
    proxies: ProxyFactory, upstreams: UpstreamFactory
) -> None:
    live = await upstreams()
    proxy = await proxies({"svc": [closed_port(), live.port]}, retry_attempts=2)
    directory, metrics = proxy.engine.directory, proxy.engine.metrics
    directory.counters.expose(metrics)
    registry = registry_for(metrics)
    client = await proxy.client()
    for _ in range(10):
        assert (await client.exchange(get())).status == 200

    text = render(registry)
    dead, alive = "svc-passing-0", "svc-passing-1"
    attempts = samples(text, "mesh_upstream_instance_attempts")
    # One refusal ejects the dead instance: it is tried once, the live one every time.
    assert attempts == {
        labels(service="svc", mesh_instance=dead, outcome="refused"): 1.0,
        labels(service="svc", mesh_instance=alive, outcome="2xx"): 10.0,
    }
    assert samples(text, "mesh_upstream_retries") == {
        labels(service="svc", mesh_instance=dead): 1.0
    }
    assert samples(text, "mesh_upstream_ejections") == {
        labels(service="svc", mesh_instance=dead, cause="refused"): 1.0
    }

    # The dead instance leaves the view (forgotten): its series go, the live one's stay.
    view = membership.View(timing=PRESETS["lan"])
    heartbeat = Heartbeat(
        service="svc",
        instance=alive,
        host="127.0.0.1",
        port=live.port,
        incarnation=1,
        seq=1,
        health="passing",
    )
    view, _ = membership.apply(view, heartbeat, 0.0)
    directory.update(view)
    text = render(registry)
    assert samples(text, "mesh_upstream_instance_attempts") == {
        labels(service="svc", mesh_instance=alive, outcome="2xx"): 10.0
    }
    assert samples(text, "mesh_upstream_retries") == {}
    assert samples(text, "mesh_upstream_ejections") == {}
