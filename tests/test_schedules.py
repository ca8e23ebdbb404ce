import math

import pytest

from seqtool.schedules import Competence, LRSchedule, TeacherForcing


def schedule(kind: str, warmup: int = 10) -> LRSchedule:
    return LRSchedule(kind=kind, warmup_steps=warmup, min_ratio=0.1, plateau_factor=0.5, plateau_patience=2)


def test_warmup_rises_linearly_to_the_peak():
    lr = schedule("constant")
    assert [lr(step, 100) for step in (0, 4, 9, 50)] == pytest.approx([0.1, 0.5, 1.0, 1.0])


def test_cosine_ends_at_the_floor_and_passes_the_midpoint():
    lr = schedule("cosine")
    assert lr(10, 110) == pytest.approx(1.0)
    assert lr(60, 110) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr(110, 110) == pytest.approx(0.1)


def test_inverse_sqrt_decays_as_one_over_root_step():
    lr = schedule("inverse_sqrt", warmup=16)
    assert lr(63, 1000) == pytest.approx(math.sqrt(16 / 64))
    assert lr(255, 1000) == pytest.approx(math.sqrt(16 / 256))


def test_competence_follows_platanios_formulas():
    linear = Competence(kind="linear", initial=0.2, steps=100)
    root = Competence(kind="sqrt", initial=0.2, steps=100)
    assert linear(0) == pytest.approx(0.2) and linear(50) == pytest.approx(0.6) and linear(100) == 1.0
    assert root(50) == pytest.approx(math.sqrt(0.5 * (1 - 0.04) + 0.04))
    assert Competence(kind="none", initial=0.2, steps=100)(0) == 1.0


def test_teacher_forcing_schedules_of_bengio_et_al():
    assert TeacherForcing(kind="linear", k=0, min_ratio=0.2, steps=100)(50) == pytest.approx(0.6)
    assert TeacherForcing(kind="linear", k=0, min_ratio=0.2, steps=100)(500) == pytest.approx(0.2)
    assert TeacherForcing(kind="exponential", k=0.99, min_ratio=0.0, steps=0)(100) == pytest.approx(0.99**100)
    sigmoid = TeacherForcing(kind="inverse_sigmoid", k=10.0, min_ratio=0.0, steps=0)
    assert sigmoid(20) == pytest.approx(10 / (10 + math.exp(2)))
    assert TeacherForcing(kind="none", k=1, min_ratio=0, steps=1)(10**6) == 1.0
