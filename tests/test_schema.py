"""results.json's schema: what run writes, the report reads, and unknown keys survive."""

from __future__ import annotations

import pytest

from bertcompress.schema import RunResults


def test_round_trip_keeps_every_key_and_unknown_ones_in_extra():
    data = {"status": "finished", "task": "ner", "macro_f1": 51.2, "teacher": {"name": "t"}, "future_key": [1, 2]}
    r = RunResults.from_json(data)
    assert r.task == "ner" and r.macro_f1 == 51.2 and r.teacher == {"name": "t"} and r.extra == {"future_key": [1, 2]}
    assert r.to_json() == {**data, "headline_metric": "macro_f1"}  # the defaults are written out
    assert r.student is None and "student" not in r.to_json()
    with pytest.raises(ValueError, match="no status key"):
        RunResults.from_json({"runs": []})
    with pytest.raises(ValueError, match="no status key"):
        RunResults.from_json(["a"])
