"""Sparkplug topics: built from the edge node's ids and parsed back."""

from __future__ import annotations

import pytest

from gateway.errors import MalformedMessage
from gateway.sparkplug.topics import (
    MessageType,
    StateTopic,
    Topic,
    device_topic,
    node_topic,
    parse_topic,
    state_topic,
)


def test_node_device_and_state_topics() -> None:
    assert (
        node_topic("plant1", MessageType.NBIRTH, "line1-edge") == "spBv1.0/plant1/NBIRTH/line1-edge"
    )
    assert (
        device_topic("plant1", MessageType.DDATA, "line1-edge", "press1")
        == "spBv1.0/plant1/DDATA/line1-edge/press1"
    )
    assert state_topic("scada") == "spBv1.0/STATE/scada"


@pytest.mark.parametrize("verb", list(MessageType))
def test_every_verb_parses_back(verb: MessageType) -> None:
    device = "press1" if verb.of_device else None
    topic = Topic("plant1", verb, "line1-edge", device)
    assert parse_topic(str(topic)) == topic


def test_state_parses_back() -> None:
    assert parse_topic("spBv1.0/STATE/scada") == StateTopic("scada")


@pytest.mark.parametrize(
    "text",
    [
        "acme/plant1/line1/press1/temp",  # not the namespace
        "spAv1.0/plant1/NDATA/edge",  # nor this
        "spBv1.0/plant1/NBIRTH",  # no edge node
        "spBv1.0/plant1/NBIRTH/edge/press1",  # a node message with a device
        "spBv1.0/plant1/DDATA/edge",  # a device message without one
        "spBv1.0/plant1/DATA/edge",  # no such verb
        "spBv1.0/plant1/DDATA/edge/press1/more",  # too deep
        "spBv1.0//NDATA/edge",  # empty group
        "spBv1.0/STATE",
    ],
)
def test_what_is_not_a_sparkplug_topic_is_refused(text: str) -> None:
    with pytest.raises(MalformedMessage):
        parse_topic(text)


@pytest.mark.parametrize("bad", ["", "a/b", "a+", "#"])
def test_ids_with_topic_characters_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="Sparkplug id"):
        node_topic("plant1", MessageType.NDATA, bad)
    with pytest.raises(ValueError, match="host id"):
        state_topic(bad)
