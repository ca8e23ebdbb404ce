"""What `seqtool info` lists: every config in the model, task, trainer and experiment groups."""

from __future__ import annotations

from importlib import resources

GROUPS = ("model", "task", "trainer", "trainer/optimizer", "experiment")


def catalog() -> dict[str, list[tuple[str, str]]]:
    """For each config group, (name, first comment line) of each YAML file, sorted by name."""
    root = resources.files("seqtool.conf")
    listing: dict[str, list[tuple[str, str]]] = {}
    for group in GROUPS:
        files = sorted(f for f in root.joinpath(group).iterdir() if f.name.endswith(".yaml"))
        listing[group] = [
            (f.name.removesuffix(".yaml"), _description(f.read_text(encoding="utf-8"))) for f in files
        ]
    return listing


def _description(text: str) -> str:
    """The first comment line that is not a Hydra directive."""
    for line in text.splitlines():
        if line.startswith("#") and "@package" not in line:
            return line.lstrip("# ").strip()
    return ""
