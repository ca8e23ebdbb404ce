"""A short CPU run on real text: tiny Shakespeare (../shared/data), skipped when the data is absent."""

import pytest

from seqtool import commands
from seqtool.config import compose


@pytest.mark.slow
def test_a_short_cpu_run_on_tiny_shakespeare_gets_below_two_nats(shared_data, tmp_path):
    corpus = shared_data / "tinyshakespeare" / "input.txt"
    if not corpus.is_file():
        pytest.skip(f"{corpus} not found")
    cfg = compose(
        [
            f"task.path={corpus}",
            f"run_dir={tmp_path / 'run'}",
            "device=cpu",
            "task.val_fraction=0.1",
            "task.test_fraction=0.0",
            "task.eval_max_chars=50000",
            "trainer.max_steps=250",
            "trainer.eval_every=250",
            "trainer.progress=false",
            "trainer.tensorboard=false",
        ]
    )
    _, metrics = commands.train(cfg)
    assert metrics["loss"] < 2.0, metrics
