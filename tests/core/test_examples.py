"""The example payload of every type is valid for that type, with a fresh subject each time."""

from __future__ import annotations

import json

import pytest

from service.core.examples import example_payload
from service.core.notification_types import NOTIFICATION_TYPES


@pytest.mark.parametrize("notification_type", sorted(NOTIFICATION_TYPES))
def test_the_example_of_each_type_is_valid_and_has_one_fresh_subject(
    notification_type: int,
) -> None:
    first, second = example_payload(notification_type), example_payload(notification_type)
    model = NOTIFICATION_TYPES[notification_type]
    parsed = model.model_validate_json(json.dumps(first))
    assert str(parsed.subject) == first["processUniqueId"]
    assert "simulationUniqueId" not in first
    assert first["processUniqueId"] != second["processUniqueId"]
