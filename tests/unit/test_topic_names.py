"""Kafka's topic name rule, one definition (`workbench.protocol.names`) for every place that checks it."""

from __future__ import annotations

import pytest

from workbench.client import check_topic_name
from workbench.controller.topics import validate_topic_name
from workbench.protocol.errors import ErrorCode, KafkaProtocolError
from workbench.protocol.names import MAX_TOPIC_NAME_LENGTH, topic_name_problem

LEGAL = ["orders", "a", "a.b_c-D9", "x" * MAX_TOPIC_NAME_LENGTH, "...", "__consumer_offsets"]
ILLEGAL = ["", ".", "..", "x" * (MAX_TOPIC_NAME_LENGTH + 1), "has space", "é", "a/b", None, 7]


@pytest.mark.parametrize("name", LEGAL)
def test_legal_names_pass_everywhere(name):
    assert topic_name_problem(name) is None
    check_topic_name(name)
    validate_topic_name(name)


@pytest.mark.parametrize("name", ILLEGAL)
def test_illegal_names_are_refused_everywhere_with_the_same_reason(name):
    problem = topic_name_problem(name)
    assert problem
    with pytest.raises(ValueError) as client_error:
        check_topic_name(name)
    assert str(client_error.value) == problem
    with pytest.raises(KafkaProtocolError) as broker_error:
        validate_topic_name(name)
    assert broker_error.value.code == ErrorCode.INVALID_TOPIC_EXCEPTION
    assert broker_error.value.message == problem


def test_the_reason_says_what_to_change():
    assert "'orders-2024'" in topic_name_problem("orders/2024")
    assert "249" in topic_name_problem("x" * 250)
