"""Small shared builders for the end-to-end tests: a tiny corpus and the overrides of a seconds-long run."""

from __future__ import annotations

from pathlib import Path

TINY_TEXT = (
    "the quick brown fox jumps over the lazy dog. " * 40
    + "pack my box with five dozen liquor jugs! " * 40
    + "how vexingly quick daft zebras jump; " * 40
)


def tiny_corpus(directory: Path) -> Path:
    path = directory / "corpus.txt"
    path.write_text(TINY_TEXT, encoding="utf-8")
    return path


def tiny_run(corpus: Path, run_dir: Path, *extra: str, steps: int = 8) -> list[str]:
    """Overrides for a char-RNN run of a few seconds on `corpus`."""
    return [
        f"task.path={corpus}",
        f"run_dir={run_dir}",
        "task.batch_size=4",
        "task.seq_len=16",
        "task.min_seq_len=4",
        "task.val_fraction=0.1",
        "task.test_fraction=0.1",
        "model.embedding_size=16",
        "model.hidden_size=32",
        "model.num_layers=2",
        f"trainer.max_steps={steps}",
        f"trainer.eval_every={steps}",
        "trainer.log_every=1",
        "trainer.progress=false",
        "trainer.tensorboard=false",
        "device=cpu",
        *extra,
    ]
