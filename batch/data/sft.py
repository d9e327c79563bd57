"""Predictions as supervised fine-tuning examples, built column by column: a million rows
take seconds in Arrow where a dict per row would take a minute. Python sees a row only
where Arrow cannot do its part: a text holding a character JSON must escape, a chat
whose content Arrow cannot read as text.

An example is a chat: the prompt the model saw as the user turn (a chat job's prompt
is its messages as sent, a system turn included) and its output as the assistant
turn. `messages` is built twice over: as an Arrow list of {role, content} structs for
Parquet, and as JSON text for JSON Lines, which also serves as the identity exact
deduplication compares.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring  # type: ignore[attr-defined]  # C-accelerated
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE)
# A chat prompt as the runner writes it: the messages, as a JSON list of objects.
CHAT_PREFIX = '[{"'


def is_chat(prompt: pa.Array) -> np.ndarray:
    return pc.fill_null(pc.starts_with(prompt, CHAT_PREFIX), False).to_numpy(zero_copy_only=False)


def messages_text(prompt: pa.Array, output: pa.Array) -> pa.Array:
    """The messages of each row as JSON text (what JSON Lines hold and exact deduplication
    compares)."""
    return _text_json(prompt, output) if not is_chat(prompt).any() else messages(prompt, output)[1]


def messages_lists(prompt: pa.Array, output: pa.Array) -> pa.Array:
    """The messages of each row as list<struct<role, content>> (what Parquet holds)."""
    return _text_messages(prompt, output) if not is_chat(prompt).any() else \
        messages(prompt, output)[0]


def messages(prompt: pa.Array, output: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(messages as list<struct<role, content>>, the same as JSON text) per row."""
    chat = is_chat(prompt)
    n = len(prompt)
    if not chat.any():
        return _text_messages(prompt, output), _text_json(prompt, output)
    if chat.all():
        return _chat(prompt, output)
    # Both kinds in one job (its prompt changed from a template to messages): each built
    # apart, then put back in row order.
    rows = np.arange(n)
    text_rows, chat_rows = rows[~chat], rows[chat]
    chats = _chat(prompt.take(chat_rows), output.take(chat_rows))
    built = [(text_rows, _text_messages(prompt.take(text_rows), output.take(text_rows)),
              _text_json(prompt.take(text_rows), output.take(text_rows))),
             (chat_rows, *chats)]
    order = np.argsort(np.concatenate([idx for idx, _, _ in built]), kind="stable")
    lists_all = pa.concat_arrays([b for _, b, _ in built]).take(order)
    json_all = pa.concat_arrays([j for _, _, j in built]).take(order)
    return lists_all, json_all


def _structs(role: str, content: pa.Array) -> pa.StructArray:
    roles = pa.DictionaryArray.from_arrays(np.zeros(len(content), np.int32), [role]).cast(pa.string())
    return pa.StructArray.from_arrays([roles, content.cast(pa.string())], fields=list(MESSAGE))


def _text_messages(prompt: pa.Array, output: pa.Array) -> pa.Array:
    """[user: prompt, assistant: output] per row: the two columns interleaved once."""
    n = len(prompt)
    order = np.stack([np.arange(n), np.arange(n) + n], axis=1).ravel()
    content = pa.concat_arrays([prompt.cast(pa.string()), output.cast(pa.string())]).take(
        pa.array(order))
    roles = pa.DictionaryArray.from_arrays(np.tile(np.array([0, 1], np.int8), n),
                                           ["user", "assistant"]).cast(pa.string())
    values = pa.StructArray.from_arrays([roles, content], fields=list(MESSAGE))
    offsets = pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, values, type=MESSAGES)


def _chat(prompt: pa.Array, output: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Chat rows: parsed in Arrow; rows Arrow cannot take as {role, content} strings (an
    OpenAI batch line's content parts) go through Python, their text parts joined."""
    try:
        return _chat_messages(prompt, output), _chat_json(prompt, output)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    chats = []
    for p, o in zip(prompt.to_pylist(), output.to_pylist(), strict=True):
        turns = [{"role": str(m.get("role")), "content": _content(m.get("content"))}
                 for m in json.loads(p) if isinstance(m, dict)]
        chats.append([*turns, {"role": "assistant", "content": o}])
    text = [json.dumps(c, ensure_ascii=False) for c in chats]
    return pa.array(chats, MESSAGES), pa.array(text, pa.string())


def _content(content: Any) -> str:
    if isinstance(content, list):  # content parts: their text, in order
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def _chat_messages(prompt: pa.Array, output: pa.Array) -> pa.Array:
    n = len(prompt)
    lines = pc.binary_join_element_wise('{"m":', prompt, "}\n", "")
    parsed = pa_json.read_json(
        pa.BufferReader(_bytes_of(lines)), read_options=pa_json.ReadOptions(block_size=1 << 26),
        parse_options=pa_json.ParseOptions(explicit_schema=pa.schema([("m", MESSAGES)]),
                                           unexpected_field_behavior="ignore"),
    ).column("m").combine_chunks()
    old = parsed.offsets.to_numpy()
    flat = parsed.flatten()
    new = old + np.arange(n + 1, dtype=old.dtype)  # each chat grows by its answer
    order = np.empty(int(new[-1]), dtype=np.int64)
    answers = new[1:] - 1
    keep = np.ones(len(order), dtype=bool)
    keep[answers] = False
    order[keep] = np.arange(len(flat))
    order[answers] = len(flat) + np.arange(n)
    values = pa.concat_arrays([flat.cast(MESSAGE), _structs("assistant", output)])
    return pa.ListArray.from_arrays(pa.array(new.astype(np.int32)), values.take(pa.array(order)),
                                    type=MESSAGES)


# What JSON must escape in a string (json.dumps without ensure_ascii escapes no more).
_ESCAPED = r'[\x00-\x1f"\\]'


def json_text(values: pa.Array) -> pa.Array:
    """Each value as a JSON string literal, byte for byte as json.dumps writes it without
    ensure_ascii ("null" for null): quoted in Arrow, and only values holding a quote, a
    backslash or a control character escaped by Python's C encoder."""
    values = values.cast(pa.string())
    quoted = pc.binary_join_element_wise('"', values, '"', "")
    if _plain(values):  # the common case, told from the bytes without a regex per value
        return pc.fill_null(quoted, "null")
    needs = pc.fill_null(pc.match_substring_regex(values, _ESCAPED), False)
    if pc.any(needs).as_py():
        rows = pa.array(np.flatnonzero(needs.to_numpy(zero_copy_only=False)))
        escaped = [encode_basestring(v) for v in values.take(rows).to_pylist()]
        quoted = pc.replace_with_mask(quoted, needs, pa.array(escaped, pa.string()))
    return pc.fill_null(quoted, "null")


def _plain(values: pa.Array) -> bool:
    """No value holds a byte JSON escapes (checked over the values' bytes end to end:
    a byte between values, never there in practice, only costs the regex)."""
    if len(values) == 0 or values.buffers()[2] is None:
        return True
    return not _bytes_of(values).to_pybytes().translate(None, _UNESCAPED)


_UNESCAPED = bytes(b for b in range(256) if b >= 0x20 and b not in b'"\\')


def json_number(values: pa.Array) -> pa.Array:
    """Each number as JSON ("null" for null or not finite), as json.dumps writes it:
    Python formats each distinct value once."""
    distinct = pc.unique(values)
    texts = ["null" if v is None or (isinstance(v, float) and not np.isfinite(v))
             else json.dumps(v) for v in distinct.to_pylist()]
    return pa.array(texts, pa.string()).take(pc.index_in(values, distinct))


def _text_json(prompt: pa.Array, output: pa.Array) -> pa.Array:
    return pc.binary_join_element_wise(
        '[{"role": "user", "content": ', json_text(prompt),
        '}, {"role": "assistant", "content": ', json_text(output), "}]", "")


def _chat_json(prompt: pa.Array, output: pa.Array) -> pa.Array:
    head = pc.utf8_slice_codeunits(prompt, 0, -1)  # the messages, less their closing `]`
    return pc.binary_join_element_wise(
        head, ', {"role": "assistant", "content": ', json_text(output), "}]", "")


def jsonl_lines(columns: dict[str, tuple[Any, str]]) -> pa.Array:
    """One JSON object per row, newline-terminated: `columns` is {name: (values, kind)}
    with kind `json` (already JSON text), `text`, `number`, or `same` (one text for every
    row, given as a str)."""
    pieces: list[Any] = []
    for i, (name, (values, kind)) in enumerate(columns.items()):
        head = ("{" if i == 0 else ", ") + encode_basestring(name) + ": "
        if kind == "same":
            pieces.append(head + encode_basestring(values))
            continue
        pieces.append(head)
        pieces.append(values if kind == "json" else
                      json_text(values) if kind == "text" else json_number(values))
    pieces.append("}\n")
    return pc.binary_join_element_wise(*pieces, "")


def write_lines(lines: pa.Array, path: Any) -> None:
    """The lines' bytes, as they sit in the array, to an open binary file."""
    for chunk in (lines.chunks if isinstance(lines, pa.ChunkedArray) else [lines]):
        if len(chunk) == 0:
            continue
        _, offsets_buffer, data = chunk.buffers()
        offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[chunk.offset:]
        path.write(memoryview(data)[int(offsets[0]):int(offsets[len(chunk)])])


def _bytes_of(lines: pa.Array) -> pa.Buffer:
    """The text of a string array's values, end to end, as one buffer (no copy)."""
    _, offsets_buffer, data = lines.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int32)[lines.offset:]
    return data.slice(int(offsets[0]), int(offsets[len(lines)]) - int(offsets[0]))
