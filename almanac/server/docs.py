"""`/docs`: the API's reference as one self-contained page, built from its OpenAPI schema.

FastAPI's own pages load Swagger UI and Redoc from a CDN, which a machine without
internet access (or a careful one) cannot reach. This page has no script, no
stylesheet and no font from anywhere: every endpoint with its parameters and
answers, rendered on the server, plus a link to `/openapi.json` for tools.
"""

from __future__ import annotations

from html import escape
from typing import Any

_STYLE = """
body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:70rem;padding:0 1rem;color:#222}
h1{margin-bottom:0}h2{border-bottom:1px solid #ccc;margin-top:2.5rem}
.op{border:1px solid #ddd;border-radius:6px;margin:1rem 0;padding:.6rem 1rem}
.m{display:inline-block;min-width:4rem;font-weight:bold;color:#fff;border-radius:4px;
text-align:center;margin-right:.6rem;padding:0 .4rem}.get{background:#2a7ab8}.post{background:#3a9a5b}
code,.path{font-family:ui-monospace,monospace}.path{font-weight:bold}
table{border-collapse:collapse;margin:.4rem 0;width:100%}td,th{border:1px solid #e3e3e3;
padding:.25rem .5rem;text-align:left;vertical-align:top}th{background:#f6f6f6}
.muted{color:#666}
"""


def _type(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_type(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"list of {_type(schema.get('items', {}))}"
    if "enum" in schema:
        return " | ".join(repr(v) for v in schema["enum"])
    return str(schema.get("type", "any"))


def _limits(schema: dict[str, Any]) -> str:
    names = {"minimum": "≥", "maximum": "≤", "maxLength": "max length", "minLength": "min length",
             "pattern": "pattern", "maxItems": "at most", "default": "default"}
    parts = [f"{label} {schema[key]}" for key, label in names.items() if key in schema]
    for sub in schema.get("anyOf", []):
        parts += [f"{label} {sub[key]}" for key, label in names.items() if key in sub]
    return ", ".join(parts)


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td><code>{escape(p['name'])}</code></td><td>{escape(p['in'])}</td>"
        f"<td>{escape(_type(p.get('schema', {})))}{' (required)' if p.get('required') else ''}"
        f"</td><td>{escape(_limits(p.get('schema', {})))}</td>"
        f"<td>{escape(p.get('description') or p.get('schema', {}).get('description', ''))}</td></tr>"
        for p in op.get("parameters", []))
    params = ("<table><tr><th>parameter</th><th>in</th><th>type</th><th>bounds</th>"
              f"<th>meaning</th></tr>{rows}</table>") if rows else ""
    body = ""
    if content := op.get("requestBody", {}).get("content", {}).get("application/json"):
        body = f"<p>Body (JSON): <code>{escape(_type(content.get('schema', {})))}</code></p>"
    answers = ", ".join(
        f"<code>{escape(code)}</code> {escape(r.get('description', ''))}"
        for code, r in op.get("responses", {}).items())
    doc = escape(op.get("description") or op.get("summary") or "").replace("\n", "<br>")
    return (f'<div class="op"><span class="m {method}">{method.upper()}</span>'
            f'<span class="path">{escape(path)}</span><p>{doc}</p>{params}{body}'
            f'<p class="muted">Answers: {answers}</p></div>')


def docs_page(spec: dict[str, Any]) -> str:
    info = spec.get("info", {})
    by_tag: dict[str, list[str]] = {}
    for path, ops in spec.get("paths", {}).items():
        for method, op in ops.items():
            tag = (op.get("tags") or ["other"])[0]
            by_tag.setdefault(tag, []).append(_operation(path, method, op))
    sections = "".join(f"<h2>{escape(tag)}</h2>{''.join(ops)}" for tag, ops in by_tag.items())
    auth = ""
    if "securitySchemes" in spec.get("components", {}):
        auth = ("<p>Every endpoint but <code>/health</code> and this page needs "
                "<code>Authorization: Bearer &lt;token&gt;</code>.</p>")
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8>"
            f"<meta name=viewport content='width=device-width,initial-scale=1'>"
            f"<title>{escape(info.get('title', 'API'))} API</title><style>{_STYLE}</style></head>"
            f"<body><h1>{escape(info.get('title', 'API'))} {escape(info.get('version', ''))}</h1>"
            f"<p>{escape(info.get('description', ''))} HEAD is answered wherever GET is. The "
            f"schema for tools: <a href='/openapi.json'>/openapi.json</a>.</p>{auth}{sections}"
            f"</body></html>")
