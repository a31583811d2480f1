"""Identity: transitive linking, deterministic survivors, merge events and forgetting."""

from __future__ import annotations

import pickle

from stitchboard.identity import IdentityGraph, Merge, customer_key


def test_keys_of_one_contact_form_one_customer_rooted_at_the_smallest_new_key() -> None:
    graph = IdentityGraph()
    root, merges = graph.link(["phone:9", "account:5"])
    assert (root, merges) == ("account:5", [])
    assert graph.find("phone:9") == "account:5"
    assert graph.find("email:1") is None


def test_a_new_identifier_never_renames_an_existing_customer() -> None:
    graph = IdentityGraph()
    graph.link(["phone:9"])
    root, merges = graph.link(["phone:9", "account:0"])
    assert (root, merges) == ("phone:9", [])
    assert graph.find("account:0") == "phone:9"


def test_linking_two_known_customers_merges_them_into_the_smaller_root() -> None:
    graph = IdentityGraph()
    graph.link(["phone:1"])
    graph.link(["email:2", "cookie:3"])
    root, merges = graph.link(["phone:1", "cookie:3"])
    assert root == "cookie:3"
    assert merges == [Merge("cookie:3", "phone:1", ("cookie:3", "phone:1"))]
    assert {graph.find(k) for k in ("phone:1", "email:2", "cookie:3")} == {"cookie:3"}
    assert graph.customers == 1
    assert sorted(graph.members("cookie:3")) == ["cookie:3", "email:2", "phone:1"]


def test_links_are_transitive_across_contacts() -> None:
    graph = IdentityGraph()
    graph.link(["phone:a", "account:x"])
    graph.link(["account:x", "email:b"])
    graph.link(["email:b", "cookie:c"])
    assert graph.find("cookie:c") == graph.find("phone:a") == "account:x"
    assert len(graph) == 4


def test_forget_drops_every_key_of_a_customer() -> None:
    graph = IdentityGraph()
    graph.link(["phone:1", "email:1"])
    graph.link(["phone:2"])
    graph.forget("email:1")
    assert graph.find("phone:1") is None and graph.find("email:1") is None
    assert graph.find("phone:2") == "phone:2"
    assert (len(graph), graph.customers) == (1, 1)


def test_graph_survives_a_snapshot_round_trip() -> None:
    graph = IdentityGraph()
    graph.link(["phone:1", "email:1"])
    restored = pickle.loads(pickle.dumps(graph))
    assert restored.find("phone:1") == "email:1"


def test_customer_key_is_opaque_and_stable_per_tenant() -> None:
    assert customer_key("acme", "phone:1") == customer_key("acme", "phone:1")
    assert customer_key("acme", "phone:1") != customer_key("globex", "phone:1")
    assert "phone" not in customer_key("acme", "phone:1")
