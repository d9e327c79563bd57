"""Every example in README.md and docs/*.md runs against a copy of the demo's home, and
shows what it prints (timings, dates and paths aside): the documents cannot drift from
the code. How blocks are marked is in docs/DEVELOPMENT.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.docs_support import NOT_RUN, ROOT, DemoHome, DocumentRun, blocks, documents


@pytest.mark.engine
@pytest.mark.xdist_group("demo")
@pytest.mark.parametrize("document", documents(), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_examples_of_the_document_run_and_show_what_they_print(
        document: Path, demo_home: DemoHome, tmp_path: Path) -> None:
    failures = DocumentRun(document, demo_home, tmp_path).run()
    assert not failures, "\n\n".join(failures)


def test_every_document_marks_its_blocks_with_a_known_tag() -> None:
    """A shell or Python block is one the runner knows how to run, or one left out for a
    reason it names; the README's examples make jobs of their own, not the demo's."""
    for document in documents():
        for block in blocks(document):
            assert block.lang not in {"bash", "shell", "py", ""}, (
                f"{block.where}: tag it `console`, `sh`, `python` or `pycon` (or `text`)")
            reason = block.options.get("norun")
            assert reason is None or reason in NOT_RUN, f"{block.where}: norun={reason}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 300
    jobs = [b.text for d in documents() for b in blocks(d) if "file" in b.options]
    assert jobs and not any('name = "fruit-families"' in text for text in jobs)
