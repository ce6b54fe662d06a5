"""Shared model helpers."""

from __future__ import annotations

from gateway.models import Quality, Sample, Samples


def test_samples_as_columns_keep_the_reasons_of_the_samples_not_good() -> None:
    samples = [
        Sample(1.5, ts=1000),
        Sample(None, Quality.BAD, reason="refused"),
        Sample(7, Quality.UNCERTAIN),
    ]
    columns = Samples.of(samples)
    assert columns.values == [1.5, None, 7]
    assert columns.qualities == [Quality.GOOD, Quality.BAD, Quality.UNCERTAIN]
    assert columns.stamps == [1000, None, None]
    assert columns.reasons == {1: "refused"}
    assert list(columns) == samples  # and back
    assert Samples.of([Sample(1), Sample(2)]).reasons is None  # all good: nothing to explain
