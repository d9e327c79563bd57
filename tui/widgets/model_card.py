"""A model's detail: description, lineage, languages, domains, tags, evals, throughput."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from catalog.records import ModelRecord
from catalog.taxonomy import DOMAINS, language_name
from tui import format as fmt


def _section(title: str) -> Text:
    return Text(f"\n{title}", style="bold underline")


def _facts(rows: list[tuple[str, str]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="dim", no_wrap=True)
    table.add_column(overflow="fold")
    for label, value in rows:
        if value:
            table.add_row(label, value)
    return table


def _training(m: ModelRecord) -> list[tuple[str, str]]:
    """How Almanac trained it, if it did: what from, on what, and what came of it."""
    t = m.training
    if t is None:
        return []
    losses = ", ".join(f"{name} loss {value:.4g}" for name, value in
                       (("train", t.train_loss), ("eval", t.eval_loss)) if value is not None)
    return [
        ("distilled from", t.distilled_from),
        ("trained on", f"{t.train_rows:,} rows ({t.validation_rows:,} validation), "
                       f"{t.data_digest[:19]}"),
        ("training", f"{t.steps:,} steps in {fmt.duration(t.seconds)} on {t.device} ({t.dtype})"
                     + (f"; {losses}" if losses else "")),
    ]


def render_model(m: ModelRecord) -> RenderableType:
    parts: list[RenderableType] = [
        Text(m.name, style="bold"),
        Text(m.ref, style="dim"),
        Text(""),
        Text(m.description or "(no description)"),
        _section("Facts"),
        _facts([
            ("parameters", fmt.params(m.parameters)),
            ("architecture", m.architecture or ""),
            ("context", fmt.count(m.context_length)),
            ("dtype", m.dtype or ""),
            ("license", m.license or ""),
            ("task", m.task or ""),
            ("source", m.source + (" (gated)" if m.gated else "")),
            ("revision", m.revision or ""),
            ("local path", m.local_path or ""),
            ("downloads", fmt.count(m.downloads)),
            ("likes", fmt.count(m.likes)),
        ]),
    ]
    # Measured throughput right after the facts: with size and license, it is what
    # people compare when picking a specialist (cost, not just quality).
    parts.append(_section("Measured performance"))
    p = m.performance
    if p is None:
        parts.append(Text("not measured yet: no run of this model generated anything",
                          style="dim"))
    else:
        parts.append(_facts([
            ("tokens/s", fmt.rate(p.tokens_per_s)),
            ("engine start", fmt.duration(p.engine_start_s)),
            ("runs", fmt.count(p.runs)),
            ("last run", fmt.when(p.last_run_at)),
            ("hardware", p.hardware or ""),
        ]))
    parts += [
        _section("Lineage"),
        _facts([
            ("base model", f"{m.base_model} ({m.relation or 'derived'})" if m.base_model
             else "none (a root model)"),
            ("adapter rank", str(m.adapter_rank) if m.adapter_rank else ""),
            ("adapters on it", ", ".join(m.adapters) or "none"),
            *_training(m),
        ]),
        _section("Languages and domains"),
        _facts([
            ("languages", ", ".join(f"{c} {language_name(c)}" for c in m.languages) or "none"),
            ("domains", ", ".join(f"{d} ({DOMAINS.get(d, d)})" for d in m.domains) or "none"),
            ("tags", ", ".join(m.tags) or "none"),
        ]),
        _section("Evals"),
    ]
    if m.evals:
        evals = Table(box=None, padding=(0, 2), show_edge=False)
        for col in ("benchmark", "metric", "value", "source"):
            evals.add_column(col, style="dim" if col == "source" else "", overflow="fold",
                             justify="right" if col == "value" else "left")
        for e in sorted(m.evals, key=lambda e: (e.benchmark, e.metric)):
            evals.add_row(e.benchmark, e.metric, f"{e.value:g}", e.source or "")
        parts.append(evals)
    else:
        parts.append(Text("none recorded", style="dim"))
    return Group(*parts)


class ModelCard(Static):
    def show(self, model: ModelRecord) -> None:
        self.update(render_model(model))
