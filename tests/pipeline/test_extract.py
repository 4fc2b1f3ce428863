"""Binary COPY decoding: hand-built streams in every shape the server sends, cut into chunks of every size."""

import struct
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

from personalization.pipeline import extract
from personalization.pipeline.extract import PAD, CopyFormatError, decode_copy, join_parts

PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
INFINITY = 2**63 - 1


def field(kind, value):
    if value is None:
        return struct.pack(">i", -1)
    if kind == "text":
        data = value.encode()
    elif kind == "timestamptz":
        micros = value if isinstance(value, int) else (value - PG_EPOCH) // timedelta(microseconds=1)
        data = struct.pack(">q", micros)
    elif kind == "float8":
        data = struct.pack(">d", value)
    else:
        data = struct.pack(">q", value)
    return struct.pack(">i", len(data)) + data


def messages(rows, kinds, extension=b""):
    """The messages of ``COPY ... TO STDOUT (FORMAT binary)``: header with the first row, one per row, trailer."""
    header = extract.SIGNATURE + struct.pack(">ii", 0, len(extension)) + extension
    out = [struct.pack(">h", len(kinds)) + b"".join(field(k, v) for k, v in zip(kinds, row, strict=True))
           for row in rows]
    if out:
        out[0] = header + out[0]
    else:
        out = [header]
    return [*out, extract.TRAILER]


def decode(msgs, kinds, chunk):
    """Decode ``msgs`` in chunks of ``chunk`` messages, as the training service does, and join the parts."""
    parts = []
    for start in range(0, len(msgs), chunk):
        piece = msgs[start:start + chunk]
        parts.append(decode_copy(b"".join(piece) + bytes(PAD), [len(m) for m in piece], kinds, first=not start))
    return join_parts(parts)


def expected_categorical(values):
    return pd.Categorical(values, categories=pd.Index(sorted({v for v in values if v is not None}), dtype="str"))


TEXTS = ["view", "", None, "product:12345678", "u:42", "v:5c178ca8359b5e4b", "exactly8", "ninebytes",
         "ü-ber", "中文商品", "🙂", "x" * 64, "view", "product:12345678", None, "exactly8", "a", "ab", "abc"]


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 100])
def test_text_comes_back_as_a_sorted_categorical_whatever_the_chunking(chunk):
    (column,) = decode(messages([(t,) for t in TEXTS], ["text"]), ["text"], chunk)
    expected = expected_categorical(TEXTS)
    pd.testing.assert_extension_array_equal(column, expected)
    assert list(column.categories) == sorted(set(TEXTS) - {None})  # Python's order: by code point


def test_strings_longer_than_64_bytes_take_the_per_row_path_and_mix_with_the_fast_one():
    long = ["p" * 65, "é" * 40, "p" * 65, None]
    rows = [(t,) for t in TEXTS + long]
    (column,) = decode(messages(rows, ["text"]), ["text"], len(TEXTS))  # a fast chunk, then a per-row one
    pd.testing.assert_extension_array_equal(column, expected_categorical(TEXTS + long))


def test_a_hash_collision_falls_back_to_exact_strings(monkeypatch):
    monkeypatch.setattr(extract, "_MIX", np.uint64(0))  # every string longer than 8 bytes hashes alike
    values = ["product:1", "product:2", "product:1", "visitor-abcdefgh", None, "short"]
    for chunk in (1, 3, 10):
        (column,) = decode(messages([(v,) for v in values], ["text"]), ["text"], chunk)
        pd.testing.assert_extension_array_equal(column, expected_categorical(values))


def test_numbers_and_times_keep_their_values_and_nulls():
    kinds = ["timestamptz", "float8", "int8"]
    moment = datetime(2024, 3, 1, 12, 30, 15, 123456, tzinfo=timezone.utc)
    rows = [
        (moment, 12.5, 7),
        (datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=timezone.utc), None, -3),
        (None, float("nan"), 2**62),
        (INFINITY, float("inf"), 0),
        (-INFINITY - 1, -0.25, 1),
    ]
    ts, value, count = decode(messages(rows, kinds), kinds, 2)
    assert ts.dtype == np.dtype("datetime64[us]")
    assert ts[0] == np.datetime64("2024-03-01T12:30:15.123456")
    assert ts[1] == np.datetime64("1999-12-31T23:59:59.999999")
    assert np.isnat(ts[2:]).all()  # NULL, infinity, -infinity
    np.testing.assert_array_equal(value, [12.5, np.nan, np.nan, np.inf, -0.25])
    assert count.dtype == np.int64 and count.tolist() == [7, -3, 2**62, 0, 1]
    _, _, with_null = decode(messages([(moment, 1.0, None), (moment, 2.0, 5)], kinds), kinds, 1)
    np.testing.assert_array_equal(with_null, [np.nan, 5.0])


def test_an_empty_result_gives_empty_columns():
    kinds = ["text", "timestamptz"]
    msgs = messages([], kinds)
    assert len(msgs) == 2
    joined = b"".join(msgs)  # the server may send the header and the trailer as one message
    for chunks in ([msgs], [[joined]]):
        text, ts = join_parts([decode_copy(b"".join(c) + bytes(PAD), [len(m) for m in c], kinds) for c in chunks])
        assert len(text) == 0 and len(ts) == 0 and text.categories.dtype == "str"


def test_a_header_extension_and_a_last_chunk_holding_only_the_trailer_are_understood():
    kinds = ["text", "float8"]
    msgs = messages([("a", 1.0), ("b", None)], kinds, extension=b"\x00\x01\x02")
    text, value = decode(msgs, kinds, 2)  # the second chunk is the trailer alone
    assert list(text) == ["a", "b"] and np.isnan(value[1])


@pytest.mark.parametrize("damage", ["signature", "fields", "sizes", "truncated", "type"])
def test_a_stream_that_is_not_what_was_asked_for_is_refused(damage):
    kinds = ["text", "float8"]
    msgs = messages([("a", 1.0), ("b", 2.0)], kinds)
    sizes = [len(m) for m in msgs]
    if damage == "signature":
        msgs[0] = b"X" + msgs[0][1:]
    elif damage == "fields":
        kinds = ["text"]
    elif damage == "sizes":
        sizes = [sizes[0] + sizes[1], 0, sizes[2]]
    elif damage == "truncated":
        msgs[1], sizes[1] = msgs[1][:-1], sizes[1] - 1
    else:
        kinds = ["float8", "float8"]
    with pytest.raises(CopyFormatError):
        decode_copy(b"".join(msgs) + bytes(PAD), sizes, kinds)
