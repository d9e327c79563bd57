"""The dataset card curate writes beside the data (`README.md`): front matter that
`datasets.load_dataset(DIR)` reads (its splits, the Parquet files by name), then what a
reader needs to trust the data: the command that made it, how many rows each step kept,
the models the answers came from with their licenses, and the columns. `data_files`
reads back which files a card names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the report's types, for annotations
    from batch.data.curate import CurateReport

COLUMNS = {
    "messages": "the conversation: the prompt as the model saw it (system and user turns) "
                "and its answer (the assistant turn)",
    "job": "the job whose prediction this is",
    "input_id": "the input row's id in that job",
    "candidate": "the job's candidate (model, or model and adapter) that answered",
    "model": "the catalog model that answered",
    "revision": "its revision (a commit, or a fingerprint of local weights)",
    "adapter": "the LoRA adapter it answered with, if any",
    "key": "the prediction's content address in the cache",
    "run": "the run that generated (or copied) it",
    "score": "its score under the job's [score], if scored",
    "source_job": "for a chained job: the upstream job that fed the row",
    "source_input_id": "the upstream row's id",
    "source_key": "the upstream prediction's content address",
}


def render(report: CurateReport) -> str:
    splits = [s for s in ("train", "validation") if report.split_rows.get(s)]
    names = report.split_files
    front = ["---"]
    if splits:  # what `load_dataset(DIR)` reads: the Parquet files, by their content names
        front += ["configs:", "- config_name: default", "  data_files:"]
        front += [f"  - split: {s}\n    path: {names[s]}.parquet" for s in splits]
    front += ["task_categories:", "- text-generation", "tags:", "- synthetic", "- almanac", "---"]
    out = [*front, "", f"# {report.job}: a supervised fine-tuning dataset", "",
           f"Curated by Almanac from the cached predictions of job `{report.job}`"
           f"{' (candidates: ' + ', '.join(report.candidates) + ')' if report.candidates else ''}.",
           "", "Made with:", "", "```sh", report.command, "```", ""]
    if report.warnings:
        out += ["## License warnings", ""]
        out += [f"- {w}" for w in report.warnings]
        out.append("")
    out += ["## Rows", "", "| step | rows |", "|---|---:|"]
    out += [f"| {step} | {n:,} |" for step, n in report.counts]
    out += [f"| {s} split | {report.split_rows.get(s, 0):,} |" for s in ("train", "validation")]
    out += ["", f"The split is by a hash of each row's group (its input id, or for a chained job "
                f"the upstream row it came from), {report.split:g} to train: the same rows always "
                "land in the same split, and a row's augmentations never straddle it.", ""]
    out += ["## Sources", "", "| job | candidate | model | revision | adapter | license | rows |",
            "|---|---|---|---|---|---|---:|"]
    for s in report.sources:
        rows = f"{s.rows:,}" if s.rows is not None else "upstream"
        out.append(f"| {s.job} | {s.candidate} | {s.model} | {s.revision or ''} | "
                   f"{s.adapter or ''} | {s.license or 'unknown'} | {rows} |")
    if report.upstream:
        out += ["", "Chained from: " + " ← ".join(f"`{j}`" for j in [report.job, *report.upstream])
                + ". Each row's `source_*` columns name the upstream prediction it was made from."]
    out += ["", "## Files", ""]
    out += [f"- `{names[s]}.parquet`, `{names[s]}.jsonl`: {report.split_rows.get(s, 0):,} rows"
            for s in splits]
    out += ["", "Each split's files are named by a digest of their rows (the same for both "
                "formats), so a changed set never loads rows a `datasets` cache kept for an "
                "earlier one. Read the files this card names; a new curate replaces them."]
    jsonl = ", ".join(f'"{s}": "{report.output / (names[s] + ".jsonl")}"' for s in splits)
    out += ["", "```python", "from datasets import load_dataset",
            f'data = load_dataset("{report.output}")  # {", ".join(splits) or "no rows"}',
            f'same = load_dataset("json", data_files={{{jsonl}}})', "```", "",
            "## Columns", ""]
    out += [f"- `{name}`: {what}" for name, what in COLUMNS.items()]
    return "\n".join(out) + "\n"


def data_files(text: str) -> dict[str, list[str]]:
    """The data files a card's front matter names for its default configuration, by
    split, as written (relative to the card's directory). ValueError says what is wrong."""
    import yaml

    if not text.startswith("---\n") or "\n---" not in text[3:]:
        raise ValueError("no front matter (a YAML block between `---` lines)")
    try:
        front: Any = yaml.safe_load(text[4:text.index("\n---", 3)])
    except yaml.YAMLError as exc:
        raise ValueError(f"front matter is not YAML ({exc})") from None
    configs = front.get("configs") if isinstance(front, dict) else None
    if not isinstance(configs, list) or not configs:
        raise ValueError("front matter names no data files (`configs`): the set has no rows")
    chosen = next((c for c in configs if isinstance(c, dict) and c.get("default")), None) or \
        next((c for c in configs if isinstance(c, dict) and c.get("config_name") == "default"),
             configs[0])
    entries = chosen.get("data_files") if isinstance(chosen, dict) else None
    if not isinstance(entries, list):
        raise ValueError("`configs`: its data_files is not a list of splits and paths")
    out: dict[str, list[str]] = {}
    for entry in entries:
        split, paths = (entry.get("split"), entry.get("path")) if isinstance(entry, dict) \
            else (None, None)
        paths = [paths] if isinstance(paths, str) else paths
        if not isinstance(split, str) or not isinstance(paths, list) or \
                not all(isinstance(p, str) for p in paths):
            raise ValueError(f"`configs`: data_files entry {entry!r} is not a split and a path")
        out.setdefault(split, []).extend(paths)
    return out
