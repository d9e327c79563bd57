"""The dataset card curate writes beside the data (`README.md`): front matter that
`datasets.load_dataset(DIR)` reads (its splits, the Parquet files), then what a reader
needs to trust the data: the command that made it, how many rows each step kept, the
models the answers came from with their licenses, and the columns."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
    front = ["---"]
    if splits:  # what `load_dataset(DIR)` reads: the Parquet files (the JSON Lines twins too)
        front += ["configs:", "- config_name: default", "  data_files:"]
        front += [f"  - split: {s}\n    path: {s}.parquet" for s in splits]
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
    out += [f"- `{s}.parquet`, `{s}.jsonl`: {report.split_rows.get(s, 0):,} rows" for s in splits]
    jsonl = ", ".join(f'"{s}": "{report.output / (s + ".jsonl")}"' for s in splits)
    out += ["", "```python", "from datasets import load_dataset",
            f'data = load_dataset("{report.output}")  # {", ".join(splits) or "no rows"}',
            f'same = load_dataset("json", data_files={{{jsonl}}})', "```", "",
            "## Columns", ""]
    out += [f"- `{name}`: {what}" for name, what in COLUMNS.items()]
    return "\n".join(out) + "\n"
