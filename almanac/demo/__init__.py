"""The demo: a tiny fruit specialist, trained here, run over the demo job.

``fruits/`` holds the job and its input (package data, shipped in the wheel);
``families`` the facts the answers are checked against; ``tinyllama`` the model's
tokenizer and architecture; ``training`` how it learns the job's prompts; ``run``
what `almanac demo` does with them. Nothing here is imported by the rooms below.
"""

from __future__ import annotations

from pathlib import Path

# The demo's job file; its input path is relative to it.
DEMO_JOB = Path(__file__).resolve().parent / "fruits" / "job.toml"
