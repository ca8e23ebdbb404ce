"""The data side of translation: synthetic generators, parallel readers, tokenizers, token-budget batches."""

import datetime
import gzip
import re

import pytest
import torch

from seqtool.config import compose, instantiate
from seqtool.data import batching
from seqtool.data.parallel import hub_parallel, read_parallel, read_tsv, split_file
from seqtool.data.synthetic import DATE_FORMS, KINDS, generate, ordinal, synthetic_splits
from seqtool.data.tokenize import SPECIALS, TextTokenizer, build_or_load, vocab_files
from seqtool.errors import UserError

# ------------------------------------------------------------------------------------------ synthetic


@pytest.mark.parametrize("kind", KINDS)
def test_synthetic_data_is_deterministic_per_seed(kind):
    def make(seed):
        return generate(kind, 50, seed=seed, min_length=2, max_length=6)

    assert make(1) == make(1) and make(1) != make(2)


def test_copy_reverse_and_sort_are_right_and_within_the_length_range():
    for kind, expected in [("copy", lambda s: s), ("reverse", lambda s: s[::-1]), ("sort", sorted)]:
        for source, target in generate(kind, 200, seed=0, min_length=3, max_length=7, alphabet=5):
            assert 3 <= len(source) <= 7 and set(source) <= set("abcde")
            assert target == "".join(expected(source))


def test_addition_is_right():
    pairs = generate("addition", 500, seed=3, min_length=1, max_length=4)
    for source, target in pairs:
        a, b = source.split("+")
        assert 1 <= len(a) <= 4 and 1 <= len(b) <= 4 and not (len(a) > 1 and a[0] == "0")
        assert int(target) == int(a) + int(b)
    assert {len(source.split("+")[0]) for source, _ in pairs} == {1, 2, 3, 4}


def parse_date(text: str) -> datetime.date:
    """An independent reading of every surface form: drop weekday, ordinal suffixes, "of" and commas."""
    text = re.sub(r"^[A-Z][a-z]+day, ", "", text)
    text = re.sub(r"(\d+)(st|nd|rd|th)\b", r"\1", text).replace(" of ", " ").replace(",", "")
    for form in ("%d %B %Y", "%B %d %Y", "%b %d %Y", "%d.%m.%Y"):
        try:
            return datetime.datetime.strptime(text, form).date()
        except ValueError:
            pass
    raise AssertionError(f"unparseable date {text!r}")


def test_dates_parse_back_to_their_iso_target_in_every_surface_form():
    pairs = generate("dates", 700, seed=5, min_length=1, max_length=1)
    for source, target in pairs:
        assert parse_date(source) == datetime.date.fromisoformat(target)
    day = datetime.date(1999, 3, 3)
    assert DATE_FORMS[0](day) == "3rd of March 1999"
    assert len({form(day) for form in DATE_FORMS}) == len(DATE_FORMS)
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd",
    ]  # fmt: skip


def test_synthetic_splits_keep_val_and_test_sources_out_of_train():
    sizes = {"train": 2000, "val": 100, "test": 100}
    splits = synthetic_splits("reverse", sizes, seed=0, min_length=1, max_length=4, alphabet=4)
    held_out = {source for split in ("val", "test") for source, _ in splits[split]}
    assert held_out and not held_out & {source for source, _ in splits["train"]}


def test_bad_synthetic_options_are_value_errors():
    with pytest.raises(ValueError, match="min_length"):
        generate("copy", 1, seed=0, min_length=5, max_length=2)
    with pytest.raises(ValueError, match="unknown synthetic task"):
        generate("juggle", 1, seed=0, min_length=1, max_length=2)


# ----------------------------------------------------------------------------------------- parallel


def write(path, lines, *, gz=False, raw: bytes | None = None):
    data = raw if raw is not None else "".join(f"{line}\n" for line in lines).encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def test_parallel_files_plain_and_gzip(tmp_path):
    src = write(tmp_path / "a.de.gz", ["ein Hund", "zwei Katzen"], gz=True)
    tgt = write(tmp_path / "a.en", ["a dog", "two cats"])
    assert read_parallel(src, tgt) == [("ein Hund", "a dog"), ("zwei Katzen", "two cats")]


def test_different_line_counts_are_a_user_error(tmp_path):
    src, tgt = write(tmp_path / "s", ["a", "b", "c"]), write(tmp_path / "t", ["x", "y"])
    with pytest.raises(UserError, match="has 3 lines but .* has 2"):
        read_parallel(src, tgt)


def test_empty_lines_are_reported_by_number(tmp_path):
    src, tgt = write(tmp_path / "s", ["a", "", "c", "d"]), write(tmp_path / "t", ["x", "y", "z", "  "])
    with pytest.raises(UserError, match="empty lines at line 2, 4"):
        read_parallel(src, tgt)


def test_non_utf8_is_reported_with_its_line(tmp_path):
    src = write(tmp_path / "s", [], raw=b"fine\nna\xefve\xff\n")
    tgt = write(tmp_path / "t", ["x", "y"])
    with pytest.raises(UserError, match=r"not UTF-8 text \(line 2"):
        read_parallel(src, tgt)


def test_tsv_pairs_and_bad_rows(tmp_path):
    assert read_tsv(write(tmp_path / "ok.tsv", ["a b\tx", "c\ty z"])) == [("a b", "x"), ("c", "y z")]
    with pytest.raises(UserError, match="line 2 should be"):
        read_tsv(write(tmp_path / "bad.tsv", ["a\tx", "no tab here"]))


def test_a_missing_split_file_names_what_to_check(tmp_path):
    with pytest.raises(UserError, match="task.files.data_dir"):
        split_file(tmp_path, "train", "de")


def test_the_hub_offline_is_a_clear_user_error():
    with pytest.raises(UserError, match="needs network access"):
        hub_parallel("bentrevett/multi30k", None, "validation", "de", "en")


def test_the_multi30k_directory_loads(shared_data):
    directory = shared_data / "multi30k"
    if not directory.is_dir():
        pytest.skip(f"{directory} not found")
    overrides = ["task=translation", "task.synthetic.kind=none", f"task.files.data_dir={directory}"]
    splits = instantiate(compose(overrides).task).sources.read(seed=0)  # the YAML's Multi30k naming
    assert {name: len(pairs) for name, pairs in splits.items()} == {"train": 29000, "val": 1014, "test": 1000}
    assert splits["val"][0][1].startswith("A group of men")


# ---------------------------------------------------------------------------------------- tokenizers

TEXTS = [
    "Two young, White males are outside near many bushes.",
    "A man in an orange hat starring at something.",
    "Don't  stop - ok? Zwei Männer stehen am Herd.",
]


@pytest.mark.parametrize("kind", ["char", "word", "bpe"])
def test_tokenizers_round_trip_in_vocabulary_text(kind, tmp_path):
    tokenizer = TextTokenizer.train(TEXTS * 3, kind=kind, vocab_size=200)
    assert [tokenizer.backend.id_to_token(i) for i in range(4)] == SPECIALS
    for text in TEXTS:
        ids = tokenizer.encode(text)
        assert 3 not in ids and tokenizer.decode(ids) == text
    tokenizer.save(tmp_path / "t.json")
    again = TextTokenizer.load(tmp_path / "t.json")
    assert all(again.encode(text) == tokenizer.encode(text) for text in TEXTS)


def test_unknown_pieces_become_unk_and_lowercase_applies():
    tokenizer = TextTokenizer.train(["abc abc"], kind="word", vocab_size=50, lowercase=True)
    assert tokenizer.encode("ABC xyz")[-1] == 3 and tokenizer.decode(tokenizer.encode("ABC")) == "abc"


def test_joint_and_separate_vocabularies_are_saved_and_reloaded(tmp_path):
    pairs = [("ein hund", "a dog"), ("zwei katzen", "two cats")]
    options = dict(kind="word", vocab_size=100, min_frequency=1, lowercase=False)
    src, tgt = build_or_load(tmp_path / "sep", pairs, joint=False, **options)
    assert src.encode("hund") != [3] and tgt.encode("hund") == [3]
    assert all(path.is_file() for path in vocab_files(tmp_path / "sep", False).values())
    src, tgt = build_or_load(tmp_path / "joint", pairs, joint=True, **options)
    assert src is tgt and (tmp_path / "joint" / "vocab" / "joint.json").is_file()
    reloaded, _ = build_or_load(tmp_path / "joint", [("other", "words")], joint=True, **options)
    assert reloaded.encode("zwei dog") == src.encode("zwei dog")


def test_a_corrupt_vocabulary_file_is_a_user_error(tmp_path):
    (tmp_path / "t.json").write_text("{not json")
    with pytest.raises(UserError, match="not a tokenizer file"):
        TextTokenizer.load(tmp_path / "t.json")


# -------------------------------------------------------------------------------------------- batches


def test_packing_keeps_to_the_token_budget_and_covers_every_pair_once():
    sizes = [int(n) for n in torch.randint(1, 30, (500,), generator=torch.Generator().manual_seed(0))]
    plan = batching.epoch_batches(sizes, 100, 64, batching.generator(7, 0))
    assert sorted(i for batch in plan for i in batch) == list(range(500))
    assert all(len(batch) * max(sizes[i] for i in batch) <= 100 for batch in plan)
    assert plan == batching.epoch_batches(sizes, 100, 64, batching.generator(7, 0))
    assert plan != batching.epoch_batches(sizes, 100, 64, batching.generator(7, 1))


def test_a_pair_over_the_budget_gets_a_batch_of_its_own():
    assert batching.pack([0, 1, 2], [3, 50, 3], max_tokens=10) == [[0], [1], [2]]


def test_a_curriculum_batch_comes_from_the_easiest_pairs():
    easiest_first = list(range(100))
    for seed in range(20):
        draw = batching.generator(seed)
        batch = batching.curriculum_batch(easiest_first, [4] * 100, competence=0.2, max_tokens=24, draw=draw)
        assert len(batch) == 6 and max(batch) < 20
    tiny_pool = batching.curriculum_batch(
        easiest_first, [4] * 100, competence=0.03, max_tokens=400, draw=draw
    )
    assert sorted(tiny_pool) == [0, 1, 2]


def test_pad_right_pads():
    assert batching.pad([[5, 6, 7], [8]], 0).tolist() == [[5, 6, 7], [8, 0, 0]]
