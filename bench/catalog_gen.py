"""A large synthetic catalog for benchmarks: plausible, varied and fast to write.

Rows go in with plain `executemany` on one connection, bypassing the ORM (which
would take minutes for 100,000 models); the schema comes from the real Alembic
migrations, and the derived read structures (full-text index, facet rows and counts)
are built by `catalog.indexing.rebuild`, the code every catalog write keeps them with,
so every query the TUI runs sees what a real catalog would hold.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from catalog import indexing, taxonomy
from catalog.db import Catalog, make_engine

ORGS = ("acme-ai", "northwind", "openlab", "polyglot", "medlm", "lexis-ml", "quantia", "tinyllm",
        "sea-nlp", "bytecraft", "heliolabs", "kestrel", "umbra", "veritas", "zephyr-lab")
BASES = ("llama", "mistral", "qwen", "gemma", "phi", "falcon", "olmo", "bloom", "pythia", "mpt")
WORDS = {
    "medicine": ("clinical", "radiology", "pubmed", "diagnosis", "triage", "oncology"),
    "medicine/biomedical": ("protein", "genomics", "biomedical", "pubmed", "chemistry"),
    "law": ("legal", "contracts", "case-law", "statutes", "compliance"),
    "finance": ("finance", "markets", "accounting", "earnings", "risk"),
    "code": ("coder", "completion", "refactoring", "repository", "programming"),
    "code/python": ("python", "notebooks", "pandas", "django"),
    "code/sql": ("sql", "text-to-sql", "postgres", "analytics"),
    "psychology": ("counselling", "empathy", "companion", "therapy"),
    "science": ("physics", "chemistry", "astronomy", "research"),
    "science/math": ("math", "proofs", "algebra", "olympiad"),
    "education": ("tutor", "homework", "teaching", "curriculum"),
    "general": ("chat", "instruct", "assistant", "base"),
}
LANGUAGES = ("en", "en", "en", "de", "fr", "es", "pl", "zh", "ja", "ru", "it", "pt", "nl", "th",
             "vi", "id", "ko", "ca", "sv", "fil", "ar", "hi", "tr", "uk")
LICENSES = ("apache-2.0", "mit", "llama2", "llama3", "cc-by-4.0", "cc-by-nc-4.0", "gemma", "other")
SIZES = (125e6, 350e6, 1.1e9, 1.5e9, 3e9, 7e9, 8e9, 13e9, 34e9, 70e9)
DTYPES = ("bfloat16", "float16", "float32", None)


def generate(path: Path, n: int, *, seed: int = 0) -> Path:
    """Create a catalog at `path` holding `n` synthetic models."""
    Catalog.at(path).close()  # the real schema, through the real migrations
    rng = random.Random(seed)
    now = datetime(2026, 1, 1, tzinfo=UTC).isoformat(sep=" ")
    domains = list(WORDS)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=OFF")
    models, langs, doms, tags = [], [], [], []
    for i in range(1, n + 1):
        dom = rng.choice(domains)
        extra = rng.choice(domains) if rng.random() < 0.2 else None
        lang = sorted({rng.choice(LANGUAGES) for _ in range(rng.choice((1, 1, 1, 2, 3)))})
        word = rng.choice(WORDS[dom])
        base = rng.choice(BASES)
        size = rng.choice(SIZES)
        org = rng.choice(ORGS)
        name = f"{base.title()} {word.title()} {lang[0].upper()} {size / 1e9:g}B v{i}"
        ref = f"{org}/{base}-{word}-{lang[0]}-{i}"
        description = (f"A {taxonomy.DOMAINS[dom].lower()} specialist fine-tuned from {base} for "
                       f"{', '.join(taxonomy.language_name(c) for c in lang)}; {word} focus.")
        tagset = sorted({word, base, *rng.sample(WORDS[dom], 2)})
        models.append((i, ref, ref, name, description, f"{base.title()}ForCausalLM", int(size),
                       rng.choice((2048, 4096, 8192, 32768)), rng.choice(DTYPES),
                       rng.choice(LICENSES), "text-generation", f"{org}/{base}-base",
                       "finetune", "hub", 0, rng.randrange(10**6), rng.randrange(5000), "",
                       now, now))
        langs += [(i, c) for c in lang]
        doms += [(i, d) for d in {dom, extra} - {None}]
        tags += [(i, t) for t in tagset]
    with conn:
        conn.executemany(
            "INSERT INTO models (id, ref, repo_id, name, description, architecture, parameters, "
            "context_length, dtype, license, task, base_model, relation, source, gated, "
            "downloads, likes, card, created_at, updated_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", models)
        conn.executemany("INSERT INTO model_languages (model_id, language) VALUES (?,?)", langs)
        conn.executemany("INSERT INTO model_domains (model_id, domain) VALUES (?,?)", doms)
        conn.executemany("INSERT INTO model_tags (model_id, tag) VALUES (?,?)", tags)
    conn.close()
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.begin() as sa_conn:
            indexing.rebuild(sa_conn)
    finally:
        engine.dispose()
    return path
