"""The prober's results through the codec (`harness/codec.py`): every mode's result
type survives JSON and back unchanged (hypothesis builds the values from the type
hints), and a malformed result is a ValueError naming the field. No root."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.codec import from_json, to_json
from harness.probe import modes, result_type
from harness.probe.handshakes import LoadResult, LoadStep
from harness.probe.timers import PeerRestartResult

RESULT_TYPES = sorted({result_type(mode) for mode in modes()}, key=lambda t: t.__name__)


def strategy(hint: Any) -> st.SearchStrategy[Any]:
    """Values of ``hint`` that JSON can carry (finite floats)."""
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        hints = typing.get_type_hints(hint)
        fields = {f.name: strategy(hints[f.name]) for f in dataclasses.fields(hint)}
        return st.builds(hint, **fields)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is types.UnionType or origin is typing.Union:
        return st.one_of(*(strategy(a) for a in args))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return st.lists(strategy(args[0]), max_size=5).map(tuple)
        return st.tuples(*(strategy(a) for a in args))
    if origin is list:
        return st.lists(strategy(args[0]), max_size=5)
    simple: dict[Any, st.SearchStrategy[Any]] = {
        type(None): st.none(),
        bool: st.booleans(),
        int: st.integers(),
        float: st.floats(allow_nan=False, allow_infinity=False),
        str: st.text(),
    }
    return simple[hint]


def test_every_mode_has_a_dataclass_result() -> None:
    assert len(RESULT_TYPES) == len(modes())  # one type per mode
    for cls in RESULT_TYPES:
        assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen  # type: ignore[attr-defined]


@pytest.mark.parametrize("cls", RESULT_TYPES, ids=lambda t: t.__name__)
@given(data=st.data())
def test_round_trip(cls: type, data: st.DataObject) -> None:
    value = data.draw(strategy(cls))
    text = to_json(value)
    assert "\n" not in text
    assert list(json.loads(text)) == [f.name for f in dataclasses.fields(cls)]
    assert from_json(text, cls) == value


def test_json_integers_become_floats_and_nested_results_their_types() -> None:
    text = json.dumps({
        "steps": [{"rate": 64, "sent": 64, "responses": 60, "cookie_replies": 4, "cookie_share": 0}],
        "cookie_onset_rate": None,
        "retry_with_mac2_completed": False,
        "retry_under_load": False,
    })  # fmt: skip
    got = from_json(text, LoadResult)
    assert got == LoadResult((LoadStep(64.0, 64, 60, 4, 0.0),), None, False, False)
    assert isinstance(got.steps[0].rate, float) and isinstance(got.steps, tuple)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"alive": "3"}, r"PeerRestartResult\.alive: expected a number"),
        ({"dropped": 1.5}, r"PeerRestartResult\.dropped: expected an integer"),
        ({"dropped": True}, r"PeerRestartResult\.dropped: expected an integer"),
        ({"first_dropped": [1]}, r"PeerRestartResult\.first_dropped: expected a number"),
        ({"extra": 1}, r"unknown fields \['extra'\]"),
    ],
)
def test_a_malformed_result_names_the_field(change: dict[str, object], message: str) -> None:
    good = to_json(PeerRestartResult(3.0, 1, 0, 2, 0.5, 15.5, 15.6))
    with pytest.raises(ValueError, match=message):
        from_json(json.dumps({**json.loads(good), **change}), PeerRestartResult)


def test_a_missing_field_is_refused() -> None:
    with pytest.raises(ValueError, match="missing field 'recovered'"):
        from_json(json.dumps({"alive": 3.0, "answered_data": 1, "initiations_while_alive": 0, "dropped": 2,
                              "first_dropped": None, "initiation": None}), PeerRestartResult)  # fmt: skip


def test_to_json_wants_a_dataclass_instance() -> None:
    with pytest.raises(TypeError):
        to_json({"first_answered": True})
