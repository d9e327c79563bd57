"""Domains, languages and how Hub metadata maps onto them: the one place for both.

Domains are a small tree of slugs (`code/sql` is a child of `code`); the Hub
has no domain taxonomy, so `HUB_TAG_DOMAINS` maps its tags and pipeline tags
onto ours. Languages are ISO 639-1 codes where one exists, else ISO 639-3,
checked and named by pycountry; a language group (`sea`) expands to members.
"""

from __future__ import annotations

import re
from functools import lru_cache

from schemas.errors import UsageError

DOMAINS: dict[str, str] = {
    "medicine": "Medicine and clinical care",
    "medicine/biomedical": "Biomedical literature and life sciences",
    "law": "Law and legal documents",
    "finance": "Finance, markets and accounting",
    "code": "Programming",
    "code/python": "Python",
    "code/sql": "SQL and text-to-SQL",
    "psychology": "Psychology, counselling and companionship",
    "science": "Natural sciences",
    "science/math": "Mathematics",
    "education": "Teaching and tutoring",
    "general": "General purpose (often a language specialist)",
}

LANGUAGE_GROUPS: dict[str, tuple[str, ...]] = {
    # Southeast Asian languages, as SEA-LION and similar projects count them.
    "sea": ("id", "ms", "th", "vi", "fil", "tl", "my", "km", "lo", "ta", "jv", "su"),
    # Languages of the Iberian peninsula (Aguila and friends).
    "iberian": ("es", "ca", "pt", "gl", "eu"),
    "nordic": ("da", "sv", "nb", "nn", "no", "is", "fi"),
    "cjk": ("zh", "ja", "ko"),
}

# Hub tags and pipeline tags that say something about a model's domain.
HUB_TAG_DOMAINS: dict[str, str] = {
    "medical": "medicine",
    "medicine": "medicine",
    "clinical": "medicine",
    "healthcare": "medicine",
    "biology": "medicine/biomedical",
    "biomedical": "medicine/biomedical",
    "bio": "medicine/biomedical",
    "pubmed": "medicine/biomedical",
    "legal": "law",
    "law": "law",
    "finance": "finance",
    "financial": "finance",
    "fintech": "finance",
    "code": "code",
    "coding": "code",
    "programming": "code",
    "python": "code/python",
    "sql": "code/sql",
    "text-to-sql": "code/sql",
    "text2sql": "code/sql",
    "psychology": "psychology",
    "mental-health": "psychology",
    "therapy": "psychology",
    "science": "science",
    "chemistry": "science",
    "physics": "science",
    "math": "science/math",
    "mathematics": "science/math",
    "education": "education",
    "tutoring": "education",
}

_SLUG = re.compile(r"^[a-z]+(/[a-z0-9-]+)*$")


class TaxonomyError(UsageError, ValueError):
    pass


def normalize_domain(slug: str) -> str:
    slug = slug.strip().lower().strip("/")
    if slug not in DOMAINS:
        known = ", ".join(sorted(DOMAINS))
        raise TaxonomyError(f"unknown domain {slug!r} (known: {known})")
    return slug


def domain_children(slug: str) -> list[str]:
    """A domain and every domain below it."""
    slug = normalize_domain(slug)
    return [d for d in DOMAINS if d == slug or d.startswith(slug + "/")]


def domain_parent(slug: str) -> str | None:
    return slug.rsplit("/", 1)[0] if "/" in slug else None


def is_valid_slug(slug: str) -> bool:
    return bool(_SLUG.match(slug))


@lru_cache(maxsize=4096)
def normalize_language(code: str) -> str:
    """ISO 639-1 where the language has one, else ISO 639-3; raises on unknown codes."""
    import pycountry  # ~50 ms of data; loaded only when a language is checked

    raw = code.strip().lower().replace("_", "-").split("-")[0]
    lang = None
    if len(raw) == 2:
        lang = pycountry.languages.get(alpha_2=raw)
    elif len(raw) == 3:
        lang = pycountry.languages.get(alpha_3=raw)
        if lang is None:
            # Bibliographic codes such as "fre", "ger".
            lang = pycountry.languages.get(bibliographic=raw)
    if lang is None:
        raise TaxonomyError(f"unknown language code {code!r} (use ISO 639-1, else ISO 639-3)")
    return getattr(lang, "alpha_2", None) or lang.alpha_3


@lru_cache(maxsize=4096)
def language_name(code: str) -> str:
    import pycountry

    lang = pycountry.languages.get(alpha_2=code) if len(code) == 2 else None
    lang = lang or pycountry.languages.get(alpha_3=code)
    return lang.name if lang else code


def expand_languages(codes: list[str] | tuple[str, ...]) -> list[str]:
    """Normalize codes, expanding groups such as `sea` into their members."""
    out: list[str] = []
    for code in codes:
        key = code.strip().lower()
        members = LANGUAGE_GROUPS.get(key, (key,))
        for member in members:
            norm = normalize_language(member)
            if norm not in out:
                out.append(norm)
    return out


def hub_domains(tags: list[str], pipeline_tag: str | None = None) -> list[str]:
    """Our domain slugs for a Hub model's tags; `general` when nothing matches."""
    found: list[str] = []
    for tag in [*tags, pipeline_tag or ""]:
        slug = HUB_TAG_DOMAINS.get(tag.strip().lower())
        if slug and slug not in found:
            found.append(slug)
    # A child says more than its parent: drop `code` when `code/sql` is there.
    found = [d for d in found if not any(o.startswith(d + "/") for o in found)]
    return found or ["general"]


def hub_tags_for(domain: str) -> list[str]:
    """The Hub tags `hub_domains` files under this domain or one of its children: what
    discovery asks the Hub for. Empty for `general`, which no tag names (it is what a
    model with none of these tags falls under)."""
    wanted = set(domain_children(domain))
    return sorted(tag for tag, slug in HUB_TAG_DOMAINS.items() if slug in wanted)


def hub_languages(card_languages: list[str] | str | None) -> list[str]:
    """Card `language:` entries that are real language codes; others are skipped."""
    if not card_languages:
        return []
    if isinstance(card_languages, str):
        card_languages = [card_languages]
    out: list[str] = []
    for code in card_languages:
        try:
            norm = normalize_language(str(code))
        except TaxonomyError:
            continue
        if norm not in out:
            out.append(norm)
    return out
