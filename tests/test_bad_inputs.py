"""Bad inputs of every kind, over every task family and the three commands: each must end in exit status
2, one stderr line naming the problem, no traceback, and no file changed in any existing run directory.

The table below is the suite; `python -m tests.count_refusals` runs the same table and counts how the
cases end (exit 2 / 1 / 0 / other), which is how the before/after figures of the issue were measured.
The runs it reads are the tiny trained runs of tests/bad_inputs.py, built once per session.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.bad_inputs import (
    FAMILIES,
    assert_refused,
    copy_run,
    refused_subprocess,
    trained_runs,  # noqa: F401 - the session fixture
)

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

OUTPUT_NAME = {"video": "out.npy"}  # what --output of each family writes (default: text)


class Bench:
    """The files of one case: damaged copies of the trained runs and bad input files, in tmp."""

    def __init__(self, runs: dict[str, Path], tmp: Path) -> None:
        self.runs, self.tmp, self.copies = runs, tmp, []

    def run(self, family: str) -> str:
        return str(self.runs[family])

    def damaged(self, family: str, *damages: Callable[[Path], None]) -> str:
        """A copy of the family's run with each damage applied (the copy is protected too)."""
        run_dir = copy_run(self.runs[family], self.tmp / f"{family}-copy-{len(self.copies)}")
        for damage in damages:
            damage(run_dir)
        self.copies.append(run_dir)
        return str(run_dir)

    def file(self, name: str, content: str | bytes = "") -> str:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return str(path)

    def folder(self, name: str) -> str:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return str(path)

    def npy(self, name: str, array: np.ndarray, allow_pickle: bool = False) -> str:
        path = self.tmp / name
        np.save(path, array, allow_pickle=allow_pickle)
        return str(path)

    def protected(self) -> list[Path]:
        return [*self.runs.values(), *self.copies]


# ----------------------------------------------------------------------------------------- damages


def delete(*names: str) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        for name in names:
            target = run_dir / name
            shutil.rmtree(target) if target.is_dir() else target.unlink()

    return damage


def write(name: str, content: str | bytes) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        target = run_dir / name
        target.write_bytes(content) if isinstance(content, bytes) else target.write_text(content)

    return damage


def edit_json(name: str, **changes) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        path = run_dir / name
        path.write_text(json.dumps(json.loads(path.read_text()) | changes))

    return damage


def truncate(name: str) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        path = run_dir / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    return damage


def replace(name: str, old: str, new: str) -> Callable[[Path], None]:
    def damage(run_dir: Path) -> None:
        path = run_dir / name
        assert old in path.read_text(), (old, name)
        path.write_text(path.read_text().replace(old, new))

    return damage


BOTH_METAS = ("checkpoints/best/meta.json", "checkpoints/last/meta.json")


@dataclass(frozen=True)
class Case:
    """One bad input: the argv (built from a Bench), what the stderr line must say, how to run it."""

    id: str
    argv: Callable[[Bench], list[str]]
    match: str
    stdin: str | bytes | None = None
    subprocess: bool = False  # needs a real process (closed stdin, a file-size limit)
    close_stdin: bool = False
    file_size_limit: int | None = None
    needs_non_root: bool = False  # a chmod case: root writes anywhere
    gap: str | None = None  # a refusal still missing, and why (an xfail that must turn into a pass)


# ------------------------------------------------------------------- run directories (every family)


def run_directory_cases(family: str) -> list[Case]:
    """Damaged and missing parts of a run directory, and paths that are not one."""
    out = OUTPUT_NAME.get(family, "out.txt")
    return [
        Case(f"{family}-run-missing", lambda b: ["decode", str(b.tmp / "no-run")], r"does not exist"),
        Case(f"{family}-run-is-a-file", lambda b: ["eval", b.file("run.txt", "x")], r"is a file"),
        Case(
            f"{family}-config-missing",
            lambda b: ["decode", b.damaged(family, delete("config.yaml"))],
            r"not a seqtool run directory.*config\.yaml",
        ),
        Case(
            f"{family}-config-not-yaml",
            lambda b: ["eval", b.damaged(family, write("config.yaml", "a: [b\n"))],
            r"cannot read .*config\.yaml",
        ),
        Case(
            f"{family}-config-a-list",
            lambda b: ["decode", b.damaged(family, write("config.yaml", "- 1\n"))],
            r"not a seqtool config",
        ),
        Case(
            f"{family}-checkpoints-missing",
            lambda b: ["decode", b.damaged(family, delete("checkpoints"))],
            r"no checkpoint.*checkpoints/(best|last)",
        ),
        Case(
            f"{family}-meta-missing",
            lambda b: ["eval", b.damaged(family, delete(*BOTH_METAS))],
            r"not a seqtool checkpoint \(no meta\.json\)",
        ),
        Case(
            f"{family}-meta-not-json",
            lambda b: ["decode", b.damaged(family, write(BOTH_METAS[0], "{"))],
            r"meta\.json is malformed",
        ),
        Case(
            f"{family}-meta-step-a-string",
            lambda b: ["decode", b.damaged(family, edit_json(BOTH_METAS[0], step="3"))],
            r"meta\.json.*'step'.*integer",
        ),
        Case(
            f"{family}-meta-model-a-number",
            lambda b: ["eval", b.damaged(family, edit_json(BOTH_METAS[0], model=7))],
            r"meta\.json.*'model'.*text",
        ),
        Case(
            f"{family}-meta-metric-a-list",
            lambda b: ["eval", b.damaged(family, edit_json(BOTH_METAS[0], metric=[1]))],
            r"meta\.json.*'metric'.*number",
        ),
        Case(
            f"{family}-weights-truncated",
            lambda b: ["decode", b.damaged(family, truncate("checkpoints/best/model.safetensors"))],
            r"corrupt or truncated",
        ),
        Case(
            f"{family}-weights-missing",
            lambda b: ["eval", b.damaged(family, delete("checkpoints/best/model.safetensors"))],
            r"model\.safetensors is missing",
        ),
        Case(
            f"{family}-trainer-state-garbage",
            lambda b: [
                "train",
                "--resume",
                b.damaged(family, write("checkpoints/last/trainer_state.pt", b"xx")),
            ],
            r"trainer_state\.pt (is corrupt|holds more than tensors)",
        ),
        Case(
            f"{family}-resume-without-checkpoint",
            lambda b: ["train", "--resume", b.damaged(family, delete("checkpoints/last"))],
            r"no checkpoint to resume from",
        ),
        Case(
            f"{family}-checkpoint-name",
            lambda b: ["eval", b.run(family), "--checkpoint", "middle"],
            r"--checkpoint middle.*best or last",
        ),
        Case(
            f"{family}-output-under-a-file",
            lambda b: ["decode", b.run(family), "--output", str(Path(b.file("plain.txt", "x")) / out)],
            r"--output .*plain\.txt is a file",
        ),
        Case(
            f"{family}-output-a-folder",
            lambda b: ["decode", b.run(family), "--output", b.folder("outdir")],
            r"--output .*outdir is a folder",
        ),
    ]


# ------------------------------------------------------------------------------- the vocabularies

VOCABULARY_CASES = [
    Case(
        "charlm-vocab-deleted",
        lambda b: ["decode", b.damaged("charlm", delete("vocab/chars.json"))],
        r"vocab/chars\.json is missing",
    ),
    Case(
        "charlm-vocab-deleted-eval",
        lambda b: ["eval", b.damaged("charlm", delete("vocab"))],
        r"vocab/chars\.json is missing",
    ),
    Case(
        "charlm-vocab-deleted-resume",
        lambda b: ["train", "--resume", b.damaged("charlm", delete("vocab/chars.json"))],
        r"vocab/chars\.json is missing",
    ),
    Case(
        "charlm-vocab-not-json",
        lambda b: ["decode", b.damaged("charlm", write("vocab/chars.json", "{"))],
        r"not a seqtool character vocabulary",
    ),
    Case(
        "charlm-vocab-chars-a-string",
        lambda b: ["decode", b.damaged("charlm", write("vocab/chars.json", '{"chars": "abc"}'))],
        r"not a seqtool character vocabulary",
    ),
    Case(
        "charlm-vocab-too-small",
        lambda b: ["decode", b.damaged("charlm", write("vocab/chars.json", '{"chars": ["a", "b"]}'))],
        r"does not fit this model",
    ),
    Case(
        "translation-src-vocab-deleted",
        lambda b: ["decode", b.damaged("translation", delete("vocab/src.json")), "--prime", "abc"],
        r"vocab/src\.json is missing",
    ),
    Case(
        "translation-tgt-vocab-deleted",
        lambda b: ["eval", b.damaged("translation", delete("vocab/tgt.json"))],
        r"vocab/tgt\.json is missing",
    ),
    Case(
        "translation-vocab-deleted-resume",
        lambda b: ["train", "--resume", b.damaged("translation", delete("vocab"))],
        r"vocab/src\.json is missing",
    ),
    Case(
        "translation-src-vocab-garbage",
        lambda b: ["decode", b.damaged("translation", write("vocab/src.json", "nonsense")), "--prime", "abc"],
        r"src\.json is not a tokenizer file",
    ),
    Case(
        "captioning-vocab-deleted",
        lambda b: ["decode", b.damaged("captioning", delete("vocab/words.json"))],
        r"vocab/words\.json is missing",
    ),
    Case(
        "captioning-vocab-no-specials",
        lambda b: ["eval", b.damaged("captioning", write("vocab/words.json", '{"words": ["a", "b"]}'))],
        r"not a seqtool word vocabulary",
    ),
]

# -------------------------------------------------------------------------------- decode's inputs

RGB_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010802000000907753de0000000c4944415408d763f8cfc0000003"
    "010100c9fe92ef0000000049454e44ae426082"
)

DECODE_INPUT_CASES = [
    Case(
        "charlm-input-missing",
        lambda b: ["decode", b.run("charlm"), "--input", str(b.tmp / "none.txt")],
        r"--input .*none\.txt: no such file",
    ),
    Case(
        "charlm-input-a-folder",
        lambda b: ["decode", b.run("charlm"), "--input", b.folder("somewhere")],
        r"--input .*somewhere is a folder",
    ),
    Case(
        "charlm-input-not-utf8",
        lambda b: ["decode", b.run("charlm"), "--input", b.file("l1.txt", b"caf\xe9")],
        r"not UTF-8",
    ),
    Case(
        "charlm-prime-unknown-chars",
        lambda b: ["decode", b.run("charlm"), "--prime", "QZ@"],
        r"not in the vocabulary",
    ),
    Case(
        "charlm-stdin-unknown-chars",
        lambda b: ["decode", b.run("charlm"), "--input", "-"],
        r"not in the vocabulary",
        stdin="§§",
    ),
    Case("charlm-nbest", lambda b: ["decode", b.run("charlm"), "--nbest", "3"], r"end token"),
    Case("charlm-beam", lambda b: ["decode", b.run("charlm"), "--beam", "2"], r"end token"),
    Case("charlm-horizon", lambda b: ["decode", b.run("charlm"), "--horizon", "3"], r"--horizon.*video"),
    Case(
        "charlm-prime-and-input",
        lambda b: ["decode", b.run("charlm"), "--prime", "the", "--input", b.file("p.txt", "the")],
        r"--prime and --input",
    ),
    Case(
        "charlm-unit-without-activations",
        lambda b: ["decode", b.run("charlm"), "--unit", "1"],
        r"--unit and --layer go with --plot-activations",
    ),
    Case(
        "charlm-activations-under-a-file",
        lambda b: [
            "decode",
            b.run("charlm"),
            "--plot-activations",
            str(Path(b.file("f.txt", "x")) / "cells"),
        ],
        r"--plot-activations .*f\.txt is a file",
    ),
    Case(
        "translation-input-missing",
        lambda b: ["decode", b.run("translation"), "--input", str(b.tmp / "x.de")],
        r"--input .*x\.de: no such file",
    ),
    Case(
        "translation-input-not-utf8",
        lambda b: ["decode", b.run("translation"), "--input", b.file("l1.de", b"abc\nd\xe9f\n")],
        r"not UTF-8 text \(line 2",
    ),
    Case(
        "translation-input-a-folder",
        lambda b: ["decode", b.run("translation"), "--input", b.folder("dir")],
        r"--input .*dir is a folder",
    ),
    Case("translation-no-input", lambda b: ["decode", b.run("translation")], r"give --input FILE"),
    Case(
        "translation-stdin-not-utf8",
        lambda b: ["decode", b.run("translation"), "--input", "-"],
        r"standard input is not UTF-8",
        stdin=b"abc\xff\n",
    ),
    Case(
        "translation-attention-under-a-file",
        lambda b: [
            "decode",
            b.run("translation"),
            "--prime",
            "abc",
            "--plot-attention",
            str(Path(b.file("f.txt", "x")) / "maps"),
        ],
        r"--plot-attention .*f\.txt is a file",
    ),
    Case(
        "translation-nbest-with-sampling",
        lambda b: ["decode", b.run("translation"), "--prime", "abc", "--nbest", "2", "--temperature", "1"],
        r"--nbest",
    ),
    Case(
        "captioning-input-missing",
        lambda b: ["decode", b.run("captioning"), "--input", str(b.tmp / "i.png")],
        r"--input .*i\.png: no such file",
    ),
    Case(
        "captioning-folder-without-images",
        lambda b: ["decode", b.run("captioning"), "--input", b.folder("empty")],
        r"no image files",
    ),
    Case(
        "captioning-corrupt-image",
        lambda b: ["decode", b.run("captioning"), "--input", b.file("bad.png", b"\x89PNG not really")],
        r"no readable image",
    ),
    Case(
        "captioning-stdin", lambda b: ["decode", b.run("captioning"), "--input", "-"], r"not standard input"
    ),
    Case("captioning-prime", lambda b: ["decode", b.run("captioning"), "--prime", "a red"], r"--prime"),
    Case(
        "captioning-plot-under-a-file",
        lambda b: [
            "decode",
            b.run("captioning"),
            "--input",
            b.file("ok.png", RGB_PNG),
            "--plot-attention",
            str(Path(b.file("f.txt", "x")) / "maps"),
        ],
        r"--plot-attention .*f\.txt is a file",
    ),
    Case(
        "video-input-missing",
        lambda b: ["decode", b.run("video"), "--input", str(b.tmp / "x.npy")],
        r"--input .*x\.npy: no such file",
    ),
    Case(
        "video-input-zero-bytes",
        lambda b: ["decode", b.run("video"), "--input", b.file("empty.npy", b"")],
        r"empty\.npy is not a readable \.npy array",
    ),
    Case(
        "video-input-not-npy",
        lambda b: ["decode", b.run("video"), "--input", b.file("t.npy", "text")],
        r"not a readable \.npy array",
    ),
    Case("video-input-npz", lambda b: ["decode", b.run("video"), "--input", _npz(b)], r"\.npz archive"),
    Case(
        "video-input-objects",
        lambda b: ["decode", b.run("video"), "--input", b.npy("o.npy", np.array([{}], dtype=object), True)],
        r"not a readable \.npy array",
    ),
    Case(
        "video-input-three-channels",
        lambda b: [
            "decode",
            b.run("video"),
            "--input",
            b.npy("c.npy", np.zeros((1, 4, 3, 12, 12), np.uint8)),
        ],
        r"expected \[T, H, W\] or \[N, T, H, W\]",
    ),
    Case(
        "video-input-channels-last",
        lambda b: [
            "decode",
            b.run("video"),
            "--input",
            b.npy("c.npy", np.zeros((1, 4, 12, 12, 3), np.uint8)),
        ],
        r"expected \[T, H, W\] or \[N, T, H, W\]",
    ),
    Case(
        "video-input-int-dtype",
        lambda b: ["decode", b.run("video"), "--input", b.npy("i.npy", np.zeros((4, 12, 12), np.int32))],
        r"dtype int32",
    ),
    Case(
        "video-input-out-of-range",
        lambda b: ["decode", b.run("video"), "--input", b.npy("f.npy", np.full((4, 12, 12), 3.0))],
        r"float values in \[3, 3\]",
    ),
    Case(
        "video-input-nan",
        lambda b: ["decode", b.run("video"), "--input", b.npy("n.npy", np.full((4, 12, 12), np.nan))],
        r"NaN",
    ),
    Case(
        "video-input-too-few-frames",
        lambda b: ["decode", b.run("video"), "--input", b.npy("s.npy", np.zeros((1, 12, 12), np.uint8))],
        r"1 frames per sequence; 2 are needed",
    ),
    Case(
        "video-input-wrong-size",
        lambda b: ["decode", b.run("video"), "--input", b.npy("w.npy", np.zeros((4, 16, 16), np.uint8))],
        r"16×16 frames",
    ),
    Case(
        "video-input-empty-array",
        lambda b: ["decode", b.run("video"), "--input", b.npy("z.npy", np.zeros((0, 4, 12, 12), np.uint8))],
        r"no sequences",
    ),
    Case("video-prime", lambda b: ["decode", b.run("video"), "--prime", "abc"], r"--prime"),
    Case("video-beam", lambda b: ["decode", b.run("video"), "--beam", "2"], r"video.*rollout"),
    Case(
        "video-plot-under-a-file",
        lambda b: ["decode", b.run("video"), "--plot", str(Path(b.file("f.txt", "x")) / "strips")],
        r"--plot .*f\.txt is a file",
    ),
    Case(
        "memory-input",
        lambda b: ["decode", b.run("memory"), "--input", b.file("x.txt", "1")],
        r"--input does not apply",
    ),
    Case("memory-sampling", lambda b: ["decode", b.run("memory"), "--temperature", "1"], r"do not apply"),
    Case(
        "memory-plot-memory-under-a-file",
        lambda b: ["decode", b.run("memory"), "--plot-memory", str(Path(b.file("f.txt", "x")) / "m")],
        r"--plot-memory .*f\.txt is a file",
    ),
]


def _npz(bench: Bench) -> str:
    path = bench.tmp / "frames.npz"
    np.savez(path, frames=np.zeros((4, 12, 12), np.uint8))
    path.rename(bench.tmp / "frames.npy")
    return str(bench.tmp / "frames.npy")


# ------------------------------------------------------------------------- eval's and the CLI's arguments

ARGUMENT_CASES = [
    Case("eval-split-train", lambda b: ["eval", b.run("charlm"), "--split", "train"], r"--split train"),
    Case("eval-buckets-alone", lambda b: ["eval", b.run("translation"), "--buckets", "5,10"], r"--by-length"),
    Case(
        "eval-buckets-not-numbers",
        lambda b: ["eval", b.run("translation"), "--by-length", "--buckets", "a,b"],
        r"--buckets",
    ),
    Case("eval-by-length-charlm", lambda b: ["eval", b.run("charlm"), "--by-length"], r"by-length"),
    Case(
        "eval-src-without-ref",
        lambda b: ["eval", b.run("translation"), "--src", b.file("s.txt", "a\n")],
        r"--src and --ref go together",
    ),
    Case(
        "eval-src-ref-charlm",
        lambda b: ["eval", b.run("charlm"), "--src", b.file("s.txt", "a\n"), "--ref", b.file("r.txt", "a\n")],
        r"--src/--ref are for translation",
    ),
    Case(
        "eval-src-missing",
        lambda b: [
            "eval",
            b.run("translation"),
            "--src",
            str(b.tmp / "no.de"),
            "--ref",
            b.file("r.en", "a\n"),
        ],
        r"no\.de: no such file",
    ),
    Case(
        "eval-src-ref-lengths",
        lambda b: [
            "eval",
            b.run("translation"),
            "--src",
            b.file("s.de", "a\nb\n"),
            "--ref",
            b.file("r.en", "a\n"),
        ],
        r"has 2 lines but",
    ),
    Case(
        "eval-src-empty-line",
        lambda b: [
            "eval",
            b.run("translation"),
            "--src",
            b.file("s.de", "a\n\n"),
            "--ref",
            b.file("r.en", "a\nb\n"),
        ],
        r"empty lines at line 2",
    ),
    Case("eval-device", lambda b: ["eval", b.run("charlm"), "--device", "tpu"], r"device='tpu'"),
    Case("eval-cuda-absent", lambda b: ["eval", b.run("charlm"), "--device", "cuda"], r"no CUDA device"),
    Case("eval-video-beam", lambda b: ["eval", b.run("video"), "--beam", "3"], r"video.*rollout"),
    Case("decode-num-zero", lambda b: ["decode", b.run("charlm"), "--num", "0"], r"--num"),
    Case("decode-top-p-over-one", lambda b: ["decode", b.run("charlm"), "--top-p", "2"], r"--top-p"),
    Case(
        "decode-beam-and-greedy",
        lambda b: ["decode", b.run("translation"), "--beam", "2", "--greedy"],
        r"choose one search",
    ),
    Case("decode-unknown-option", lambda b: ["decode", b.run("charlm"), "--frobnicate"], r"No such option"),
    Case("diagnose-nothing-asked", lambda b: ["diagnose", b.run("charlm")], r"name a diagnostic"),
    Case(
        "diagnose-output-under-a-file",
        lambda b: [
            "diagnose",
            b.run("charlm"),
            "--grad-through-time",
            "--output",
            str(Path(b.file("f.txt", "x")) / "gtt.png"),
        ],
        r"--output .*f\.txt is a file",
    ),
    Case("train-jobs-without-multirun", lambda b: ["train", "--jobs", "2"], r"--jobs"),
    Case(
        "train-print-config-multirun",
        lambda b: ["train", "-m", "--print-config", "seed=1,2"],
        r"--print-config",
    ),
    Case("train-resume-missing", lambda b: ["train", "--resume", str(b.tmp / "gone")], r"does not exist"),
    Case("train-resume-a-file", lambda b: ["train", "--resume", b.file("r.txt", "x")], r"is a file"),
    Case("train-resume-not-a-run", lambda b: ["train", "--resume", b.folder("plain")], r"not a seqtool run"),
    Case(
        "train-into-an-existing-run",
        lambda b: ["train", f"run_dir={b.run('charlm')}", *_quick()],
        r"already holds a run",
    ),
]


def _quick() -> list[str]:
    return ["trainer.max_steps=1", "trainer.progress=false", "trainer.tensorboard=false", "device=cpu"]


# ------------------------------------------------------------------------------------ train's data files


def _corpus_run(bench: Bench, path: str) -> list[str]:
    return [
        "train",
        f"task.path={path}",
        f"run_dir={bench.tmp / 'new'}",
        "task.batch_size=2",
        "task.seq_len=8",
        "task.min_seq_len=4",
        "model.hidden_size=8",
        *_quick(),
    ]


def _files_run(bench: Bench, *files: str) -> list[str]:
    return [
        "train",
        "task=translation",
        "model=seq2seq_attn",
        "task.synthetic.kind=none",
        f"run_dir={bench.tmp / 'new'}",
        "model.hidden_size=8",
        *files,
        *_quick(),
    ]


def _pair(bench: Bench, split: str, src: str = "a b\nc d\n", tgt: str = "b a\nd c\n") -> list[str]:
    return [
        f"task.files.{split}_src={bench.file(f'{split}.de', src)}",
        f"task.files.{split}_tgt={bench.file(f'{split}.en', tgt)}",
    ]


def _captions_run(bench: Bench, data: str, captions: str, *extra: str) -> list[str]:
    return [
        "train",
        "task=captioning",
        "model=captioner",
        f"task.data={data}",
        f"task.files.captions={captions}",
        f"task.files.image_dir={bench.folder('images')}",
        f"run_dir={bench.tmp / 'new'}",
        "task.image_size=16",
        "task.resize_size=16",
        *extra,
        *_quick(),
    ]


def _video_run(bench: Bench, *extra: str) -> list[str]:
    return [
        "train",
        "task=video",
        "model=convlstm",
        "task.image_size=12",
        "task.digit_size=4",
        "task.input_frames=2",
        "task.target_frames=2",
        "model.hidden_channels=2",
        "model.patch_size=2",
        f"run_dir={bench.tmp / 'new'}",
        *extra,
        *_quick(),
    ]


# The video task reads task.test_npy only when the test split is evaluated (after training); checking it in
# training needs one call in VideoTask.setup (seqtool/tasks/video.py, another helper's file).
DATA_FILE_CASES = [
    Case("charlm-corpus-missing", lambda b: _corpus_run(b, str(b.tmp / "none.txt")), r"no such file"),
    Case("charlm-corpus-empty", lambda b: _corpus_run(b, b.file("empty.txt", "")), r"the corpus is empty"),
    Case(
        "charlm-corpus-blank", lambda b: _corpus_run(b, b.file("blank.txt", "  \n\n")), r"the corpus is empty"
    ),
    Case(
        "charlm-corpus-empty-folder",
        lambda b: _corpus_run(b, b.folder("nothing")),
        r"no such file, directory",
    ),
    Case("charlm-corpus-too-small", lambda b: _corpus_run(b, b.file("tiny.txt", "ab")), r"too small"),
    Case(
        "charlm-run-dir-a-file",
        lambda b: [*_corpus_run(b, b.file("c.txt", "abc " * 200)), f"run_dir={b.file('taken', 'x')}"],
        r"run_dir=.*taken is a file",
    ),
    Case(
        "charlm-run-dir-under-a-file",
        lambda b: [*_corpus_run(b, b.file("c.txt", "abc " * 200)), f"run_dir={b.file('taken', 'x')}/run"],
        r"run_dir=.*taken is a file",
    ),
    Case(
        "translation-train-src-missing",
        lambda b: _files_run(
            b, f"task.files.train_src={b.tmp / 'no.de'}", f"task.files.train_tgt={b.tmp / 'no.en'}"
        ),
        r"no\.de: no such file",
    ),
    Case(
        "translation-train-lengths",
        lambda b: _files_run(b, *_pair(b, "train", tgt="b a\n"), *_pair(b, "val")),
        r"has 2 lines but .* has 1",
    ),
    Case(
        "translation-train-empty-line",
        lambda b: _files_run(b, *_pair(b, "train", "a\n\n", "b\nc\n"), *_pair(b, "val")),
        r"empty lines at line 2",
    ),
    Case(
        "translation-train-not-utf8",
        lambda b: _files_run(
            b,
            "task.files.train_src=" + b.file("t.de", b"a\n\xff\n"),
            "task.files.train_tgt=" + b.file("t.en", "a\nb\n"),
            *_pair(b, "val"),
        ),
        r"not UTF-8 text \(line 2",
    ),
    Case(
        "translation-train-bad-gzip",
        lambda b: _files_run(
            b,
            f"task.files.train_src={b.file('t.de.gz', b'not gzip')}",
            "task.files.train_tgt=" + b.file("t.en", "a\n"),
            *_pair(b, "val"),
        ),
        r"cannot read .*t\.de\.gz",
    ),
    Case(
        "translation-tsv-tabs",
        lambda b: _files_run(
            b,
            "task.files.train_tsv=" + b.file("t.tsv", "a\tb\tc\n"),
            "task.files.val_tsv=" + b.file("v.tsv", "a\tb\n"),
        ),
        r"exactly one tab",
    ),
    Case("translation-no-val", lambda b: _files_run(b, *_pair(b, "train")), r"no val split"),
    Case(
        "translation-test-files-missing",
        lambda b: _files_run(
            b,
            *_pair(b, "train"),
            *_pair(b, "val"),
            f"task.files.test_src={b.tmp / 'no.de'}",
            f"task.files.test_tgt={b.tmp / 'no.en'}",
        ),
        r"no\.de: no such file",
    ),
    Case(
        "translation-data-dir-missing-split",
        lambda b: _files_run(b, f"task.files.data_dir={b.folder('corpus')}"),
        r"train\.de\(\.gz\) not found",
    ),
    Case(
        "captioning-captions-missing",
        lambda b: _captions_run(b, "karpathy", str(b.tmp / "none.json")),
        r"no such file",
    ),
    Case(
        "captioning-karpathy-a-list",
        lambda b: _captions_run(b, "karpathy", b.file("k.json", "[1, 2]")),
        r"not a Karpathy split JSON",
    ),
    Case(
        "captioning-karpathy-images-a-number",
        lambda b: _captions_run(b, "karpathy", b.file("k.json", '{"images": 5}')),
        r"not a Karpathy split JSON",
    ),
    Case(
        "captioning-karpathy-images-strings",
        lambda b: _captions_run(b, "karpathy", b.file("k.json", '{"images": ["a.jpg"]}')),
        r"image 0 lacks filename",
    ),
    Case(
        "captioning-karpathy-sentences-strings",
        lambda b: _captions_run(
            b,
            "karpathy",
            b.file(
                "k.json",
                json.dumps({"images": [{"filename": "a.jpg", "split": "train", "sentences": ["a cat"]}]}),
            ),
        ),
        r"image 0 lacks filename",
    ),
    Case(
        "captioning-karpathy-not-json",
        lambda b: _captions_run(b, "karpathy", b.file("k.json", "{images")),
        r"not a Karpathy split JSON",
    ),
    Case(
        "captioning-csv-no-header",
        lambda b: _captions_run(b, "csv", b.file("c.csv", "a.jpg,a cat\n")),
        r"header `image,caption`",
    ),
    Case(
        "captioning-flickr8k-bad-line",
        lambda b: _captions_run(b, "flickr8k", b.file("t.txt", "a.jpg a cat\n")),
        r"line 1 is not `IMAGE#k<TAB>caption`",
    ),
    Case(
        "captioning-no-images",
        lambda b: _captions_run(
            b, "csv", b.file("c.csv", "image,caption\n" + "".join(f"{i}.jpg,a cat\n" for i in range(12)))
        ),
        r"no readable image",
    ),
    Case(
        "captioning-image-dir-missing",
        lambda b: [
            *_captions_run(b, "csv", b.file("c.csv", "image,caption\na.jpg,x\n")),
            f"task.files.image_dir={b.tmp / 'gone'}",
        ],
        r"image_dir=.*gone: no such folder",
    ),
    Case(
        "video-mnist-missing", lambda b: _video_run(b, f"task.mnist_path={b.tmp / 'mnist'}"), r"no such file"
    ),
    Case(
        "video-mnist-bad-magic",
        lambda b: _video_run(b, f"task.mnist_path={b.file('t10k-images-idx3-ubyte', b'x' * 20)}"),
        r"not an MNIST IDX image file",
    ),
    Case(
        "video-mnist-bad-gzip",
        lambda b: _video_run(b, f"task.mnist_path={b.file('t10k-images-idx3-ubyte.gz', b'xx')}"),
        r"not an MNIST IDX",
    ),
    Case(
        "video-mnist-truncated",
        lambda b: _video_run(
            b, f"task.mnist_path={b.file('m.idx', gzip.compress(bytes.fromhex('00000803') + bytes(12)))}"
        ),
        r"digits; need more than",
    ),
    Case(
        "video-test-npy-missing",
        lambda b: _video_run(b, f"task.test_npy={b.tmp / 'test.npy'}"),
        r"test_npy.*no such file",
    ),
    Case(
        "video-test-npy-zero-bytes",
        lambda b: _video_run(b, f"task.test_npy={b.file('test.npy', b'')}"),
        r"test_npy.*not a readable \.npy array",
    ),
    Case(
        "video-test-npy-wrong-shape",
        lambda b: _video_run(b, f"task.test_npy={b.npy('test.npy', np.zeros((2, 12), np.uint8))}"),
        r"shape \(2, 12\)",
    ),
]

# ------------------------------------------------------------------------ needing a real process

PROCESS_CASES = [
    Case(
        "charlm-stdin-closed",
        lambda b: ["decode", b.run("charlm"), "--input", "-"],
        r"standard input is closed",
        subprocess=True,
        close_stdin=True,
    ),
    Case(
        "translation-stdin-closed",
        lambda b: ["decode", b.run("translation"), "--input", "-"],
        r"standard input is closed",
        subprocess=True,
        close_stdin=True,
    ),
    Case(
        "charlm-output-disk-full",
        lambda b: ["decode", b.run("charlm"), "--output", str(b.tmp / "o.txt"), "--max-len", "20000"],
        r"cannot write .*o\.txt.*File too large",
        subprocess=True,
        file_size_limit=4096,
    ),
    Case(
        "translation-train-disk-full",
        lambda b: ["train", *_full_disk_run(b)],
        r"cannot write .*(model\.safetensors|trainer_state\.pt|checkpoint).*File too large",
        subprocess=True,
        file_size_limit=20_000,
    ),
    Case(
        "video-output-disk-full",
        lambda b: ["decode", b.run("video"), "--num", "2", "--output", str(b.tmp / "o.npy")],
        r"cannot write .*o\.npy.*File too large",
        subprocess=True,
        file_size_limit=256,
    ),
    Case(
        "video-plot-disk-full",
        lambda b: ["decode", b.run("video"), "--plot", str(b.tmp / "strips")],
        r"cannot write .*strips: File too large",
        subprocess=True,
        file_size_limit=512,
    ),
    Case(
        "charlm-run-dir-read-only",
        lambda b: [*_corpus_run(b, b.file("c.txt", "abc " * 200)), f"run_dir={_read_only(b)}/run"],
        r"run_dir=.*not writable",
        needs_non_root=True,
    ),
    Case(
        "charlm-output-read-only",
        lambda b: ["decode", b.run("charlm"), "--output", f"{_read_only(b)}/o.txt"],
        r"--output .*not writable",
        needs_non_root=True,
    ),
    Case(
        "video-plot-read-only",
        lambda b: ["decode", b.run("video"), "--plot", f"{_read_only(b)}/strips"],
        r"--plot .*not writable",
        needs_non_root=True,
    ),
]


def _full_disk_run(bench: Bench) -> list[str]:
    """A translation run whose checkpoint (tens of kB) cannot be written under the file-size limit."""
    from tests.bad_inputs import run_overrides

    run_dir = bench.tmp / "full" / "run"
    run_dir.parent.mkdir(parents=True)
    return [*run_overrides("translation", run_dir), "model.hidden_size=32"]


def _read_only(bench: Bench) -> str:
    folder = bench.tmp / "read-only"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o555)
    return str(folder)


CASES = [
    *(case for family in FAMILIES for case in run_directory_cases(family)),
    *VOCABULARY_CASES,
    *DECODE_INPUT_CASES,
    *ARGUMENT_CASES,
    *DATA_FILE_CASES,
    *PROCESS_CASES,
]


def run_case(case: Case, bench: Bench) -> str:
    """Build the case's files and check its refusal; returns the stderr line."""
    argv = case.argv(bench)
    if case.subprocess:
        return refused_subprocess(
            argv,
            match=case.match,
            stdin=case.stdin,
            protect=bench.protected(),
            close_stdin=case.close_stdin,
            file_size_limit=case.file_size_limit,
        )
    return assert_refused(argv, match=case.match, stdin=case.stdin, protect=bench.protected())


PARAMETERS = [
    pytest.param(
        case, id=case.id, marks=[pytest.mark.xfail(reason=case.gap, strict=True)] if case.gap else []
    )
    for case in CASES
]


@pytest.mark.parametrize("case", PARAMETERS)
def test_a_bad_input_is_refused_in_one_line(case: Case, trained_runs, tmp_path):  # noqa: F811
    if case.needs_non_root and os.geteuid() == 0:
        pytest.skip("root writes to read-only folders, so chmod cannot make one for it")
    run_case(case, Bench(trained_runs, tmp_path))


def test_the_table_is_large_and_covers_every_family_and_command():
    assert len({case.id for case in CASES}) == len(CASES) >= 90
    for family in FAMILIES:
        assert sum(case.id.startswith(family) for case in CASES) >= 10, family
