import pytest

from scaling.trainer.schedules import cosine, linear_decay


def test_linear_decay_starts_at_one_and_falls_towards_zero():
    assert [linear_decay(i, 4) for i in range(4)] == [1.0, 0.75, 0.5, 0.25]


def test_cosine_holds_during_warmup_then_falls_to_zero():
    assert cosine(3, warmup=5, total=105) == 1.0
    assert cosine(55, warmup=5, total=105) == pytest.approx(0.5)
    assert cosine(105, warmup=5, total=105) == pytest.approx(0.0, abs=1e-12)
