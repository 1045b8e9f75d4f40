"""Every API a broker advertises in ApiVersions has something that serves it.

`workbench.broker.apis.SUPPORTED_APIS` is the ledger of what we advertise; `HANDLERS` maps API
keys to request handlers; the network layer serves SaslHandshake/SaslAuthenticate itself. An
advertised key with neither would close every connection that uses it.
"""

from __future__ import annotations

from kafka.protocol.metadata import ApiVersionsRequest

from workbench.broker.apis import SUPPORTED_APIS
from workbench.broker.handlers import HANDLERS
from workbench.protocol.api_keys import CONTROLLER_API_KEY
from workbench.protocol.blocking_client import WireClient
from workbench.security.enforce import SASL_APIS

SERVED_BY_THE_NETWORK_LAYER = set(SASL_APIS)


def advertised(bootstrap: str) -> dict[int, tuple[int, int]]:
    client = WireClient.to(bootstrap)
    try:
        resp = client.request(ApiVersionsRequest(), 0)
    finally:
        client.close()
    assert resp.error_code == 0
    return {k.api_key: (k.min_version, k.max_version) for k in resp.api_keys}


def test_the_ledger_and_the_handlers_agree():
    assert set(SUPPORTED_APIS) - set(HANDLERS) == set(), "advertised without a handler"
    assert set(HANDLERS) - set(SUPPORTED_APIS) == set(), "a handler for an API nobody can call"
    assert CONTROLLER_API_KEY not in SUPPORTED_APIS  # the private controller request is never advertised


def test_every_api_a_running_broker_advertises_has_a_handler(cluster):
    apis = advertised(cluster.bootstrap_servers)
    assert apis == SUPPORTED_APIS
    assert set(apis) <= set(HANDLERS)


def test_a_sasl_listener_advertises_only_what_it_serves(fresh_cluster):
    secured = fresh_cluster(brokers=1, users={"alice": "alice-secret"}, sasl_mechanisms=["PLAIN"])
    apis = advertised(secured.bootstrap_servers)  # ApiVersions is answered before authentication
    assert set(apis) >= SERVED_BY_THE_NETWORK_LAYER
    assert set(apis) <= set(HANDLERS) | SERVED_BY_THE_NETWORK_LAYER
