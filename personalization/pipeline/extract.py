"""Decode PostgreSQL's binary ``COPY ... TO STDOUT`` stream into DataFrame columns without per-row Python.

The database layer (``personalization.training``) receives the stream one protocol message per row and hands it
over in chunks: the chunk's messages concatenated, with the size of each. :func:`decode_copy` turns a chunk into
parts of columns, :func:`join_parts` joins the parts of every chunk into columns. Everything is vectorised over the
rows: field offsets are chained one column at a time, numbers are read through big-endian numpy views, and text is
factorized through its bytes read as 64-bit words. That is exact: a string's words (zero past its end) identify it,
because PostgreSQL text holds no NUL byte. Strings of up to 8 bytes are keyed by their one word; longer ones by a
hash of their words, after which every row is compared word by word with a row of its group, and a hash collision
sends the column to a per-row path. Chunks only carry their distinct strings' words, so joining them costs a
factorization of those, not of the rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

FieldKind = Literal["text", "timestamptz", "float8", "int8"]
Column = pd.Categorical | np.ndarray

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
HEADER_SIZE = len(SIGNATURE) + 8  # signature, int32 flags, int32 header-extension length
TRAILER = b"\xff\xff"  # int16 -1: end of data
PAD = 8  # zero bytes the caller appends after a chunk, so 8-byte reads near its end stay inside the buffer
PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01T00:00:00Z in microseconds since 1970-01-01
MAX_WORDS = 8  # a chunk with a string longer than 64 bytes in a column takes the per-row path for that column

_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_HIGH_BITS = np.uint64(0x8080808080808080)
_INT8_MIN, _INT8_MAX = np.iinfo(np.int64).min, np.iinfo(np.int64).max


class CopyFormatError(ValueError):
    """The bytes are not the binary COPY rows that were asked for."""


@dataclass
class TextPart:
    """A text column of one chunk: per-row codes (-1: NULL) numbering the chunk's distinct strings, which are given
    either as the rows of ``words`` (64-bit words of their bytes) or, on the per-row path, as ``strings``."""

    codes: np.ndarray
    words: np.ndarray | None = None
    strings: list[str] | None = None


Part = TextPart | np.ndarray


def decode_copy(data: bytes | bytearray | memoryview, sizes: Sequence[int] | np.ndarray,
                kinds: Sequence[FieldKind], *, first: bool = True) -> list[Part]:
    """The column parts of one chunk of a binary ``COPY`` stream.

    ``data`` is the chunk's messages concatenated and followed by :data:`PAD` zero bytes, ``sizes`` the size of each
    message, ``kinds`` the type of each field. ``first``: the chunk starts the stream (its first message carries the
    header). The trailer that ends the stream is recognised by its size (2 bytes: a row is longer).
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    buf = np.frombuffer(data, dtype=np.uint8)
    if int(sizes.sum()) + PAD != len(buf) or (first and not len(sizes)):
        raise CopyFormatError("message sizes do not add up to the buffer (or the padding is missing)")
    rows = sizes.copy()
    header = 0
    if first:
        head = buf[:HEADER_SIZE].tobytes()
        if sizes[0] < HEADER_SIZE or head[: len(SIGNATURE)] != SIGNATURE:
            raise CopyFormatError("not a binary COPY stream (signature)")
        # The server sends the header with the first row (or with the trailer when there are no rows).
        header = HEADER_SIZE + int.from_bytes(head[len(SIGNATURE) + 4:], "big")
        rows[0] -= header
    if len(rows) and rows[-1] == len(TRAILER):
        end = len(buf) - PAD
        if buf[end - len(TRAILER):end].tobytes() != TRAILER:
            raise CopyFormatError("a 2-byte message that is not the end-of-data trailer")
        rows[-1] = 0
    if (rows < 0).any():
        raise CopyFormatError("the first message is shorter than the header")
    rows = rows[rows > 0]  # every other message is exactly one row
    starts = np.cumsum(rows) - rows + header
    if len(starts) and (_view(data, ">i2")[starts] != len(kinds)).any():
        raise CopyFormatError(f"rows do not have {len(kinds)} fields")
    be_i4 = _view(data, ">i4")
    pos = starts + 2
    fields: list[tuple[np.ndarray, np.ndarray]] = []
    for _ in kinds:
        lengths = be_i4[pos].astype(np.int64)
        fields.append((pos + 4, lengths))
        pos = pos + 4 + np.maximum(lengths, 0)
    if (pos != starts + rows).any():
        raise CopyFormatError("field lengths do not add up to the row sizes")
    decoders = {"text": _text_part, "timestamptz": _timestamps, "float8": _floats, "int8": _integers}
    parts: list[Part] = []
    for kind, (offsets, lengths) in zip(kinds, fields, strict=True):
        if kind not in decoders:
            raise ValueError(f"unknown field kind {kind!r}")
        if kind != "text" and ((lengths != 8) & (lengths != -1)).any():
            raise CopyFormatError(f"a {kind} field is not 8 bytes long")
        parts.append(decoders[kind](data, offsets, lengths))
    return parts


def join_parts(chunks: Sequence[Sequence[Part]]) -> list[Column]:
    """The columns of a whole stream (or of several) from the parts of its chunks, in order.

    Text becomes a ``pd.Categorical`` with sorted ``str`` categories (as ``astype("category")`` gives), NULL
    missing; ``timestamptz`` ``datetime64[us]`` in UTC (NULL and +-infinity: NaT); ``float8`` float64 (NULL: NaN);
    ``int8`` int64, or float64 with NaN when it has NULLs.
    """
    columns: list[Column] = []
    for pieces in zip(*chunks, strict=True):
        if isinstance(pieces[0], TextPart):
            columns.append(_join_text(list(pieces)))
        else:
            joined = np.concatenate(pieces)
            if joined.dtype == np.int64 and any(piece.dtype == np.float64 for piece in pieces):
                joined = joined.astype(np.float64)
            columns.append(joined)
    return columns


def _text_part(data: bytes | bytearray | memoryview, offsets: np.ndarray, lengths: np.ndarray) -> TextPart:
    present = lengths >= 0
    if not present.all():  # NULLs: the strings are factorized without them and come back as code -1
        inner = _text_part(data, offsets[present], lengths[present])
        codes = np.full(len(offsets), -1, dtype=np.int64)
        codes[present] = inner.codes
        return TextPart(codes, words=inner.words, strings=inner.strings)
    if not len(offsets):
        return TextPart(np.empty(0, dtype=np.int64), words=np.zeros((0, 1), dtype=np.uint64))
    shortest, longest = int(lengths.min()), int(lengths.max())
    n_words = max(1, -(-longest // 8))
    if n_words > MAX_WORDS:
        return _text_part_rowwise(data, offsets, lengths)
    u64 = _view(data, "<u8")
    words = []
    for k in range(n_words):
        at = offsets + 8 * k
        if shortest <= 8 * k:  # rows without a byte in this word may point past the data: read anything there
            np.minimum(at, len(u64) - 1, out=at)
        word = u64[at]
        if shortest < 8 * (k + 1):
            valid = lengths - 8 * k
            np.maximum(valid, 0, out=valid)
            np.minimum(valid, 8, out=valid)
            word &= _MASKS[valid]
        words.append(word.astype(np.uint64, copy=False))
    found = _factorize_words(words)
    if found is None:
        return _text_part_rowwise(data, offsets, lengths)  # two different strings hashed alike
    return TextPart(*found)


def _factorize_words(words: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """Codes of the rows' words (one array per word position), numbered by first appearance, and the words of each
    code; None when two different rows hashed alike."""
    codes, uniques = pd.factorize(_hash(words))
    codes = codes.astype(np.int64, copy=False)
    if len(words) == 1:  # the word is the key: exact
        return codes, np.asarray(uniques, dtype=np.uint64).reshape(-1, 1)
    distinct = []
    for word in words:
        column = np.empty(len(uniques), dtype=np.uint64)
        column[codes] = word  # any row of each code: every row of the code must then be equal to it
        if not (column[codes] == word).all():
            return None
        distinct.append(column)
    return codes, np.stack(distinct, axis=1)


def _hash(words: Sequence[np.ndarray]) -> np.ndarray:
    """One 64-bit key per row: the word itself when there is one (exact), else a hash of the words."""
    if len(words) == 1:
        return words[0]
    key = words[0] * _MIX
    for word in words[1:]:
        key = (key ^ word) * _MIX
    return key ^ (key >> np.uint64(29))


def _text_part_rowwise(data: bytes | bytearray | memoryview, offsets: np.ndarray, lengths: np.ndarray) -> TextPart:
    """The exact, slower path: one Python string per row."""
    raw = memoryview(data).cast("B")
    values = [bytes(raw[o:o + n]).decode() if n >= 0 else None
              for o, n in zip(offsets.tolist(), lengths.tolist(), strict=True)]
    codes, uniques = pd.factorize(pd.Series(values, dtype=object))
    return TextPart(codes.astype(np.int64), strings=list(uniques))


def _join_text(parts: list[TextPart]) -> pd.Categorical:
    """One categorical from the text parts of every chunk: their distinct strings are factorized together."""
    sizes = [len(part.words) if part.words is not None else len(part.strings or ()) for part in parts]
    width = max((part.words.shape[1] for part in parts if part.words is not None), default=1)
    gathered = None
    if all(part.words is not None for part in parts):
        stacked = np.zeros((width, sum(sizes)), dtype=np.uint64)  # word position x distinct string of a chunk
        row = 0
        for part, size in zip(parts, sizes, strict=True):
            stacked[: part.words.shape[1], row:row + size] = part.words.T
            row += size
        gathered = _factorize_words(list(stacked))
    if gathered is not None:
        codes, unique_words = gathered
        # Sorted as Python sorts str: by code point, which is UTF-8 byte order, which is the order of the words
        # read big-endian (zero bytes past the end put a prefix first).
        order = np.lexsort([unique_words[:, k].byteswap() for k in reversed(range(width))])
        as_bytes = np.ascontiguousarray(unique_words.astype("<u8")).view(f"S{8 * width}").ravel()
        if (unique_words & _HIGH_BITS).any():
            strings = np.array([value.decode() for value in as_bytes[order].tolist()], dtype=object)
        else:
            strings = as_bytes[order].astype(str)
    else:
        values = np.concatenate([np.asarray(_strings(part), dtype=object) for part in parts])
        codes, uniques = pd.factorize(values)
        uniques = np.asarray(uniques, dtype=object)
        order = np.argsort(uniques, kind="stable")
        strings = uniques[order]
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    local_to_sorted = rank[codes]
    row_codes = []
    offset = 0
    for part, size in zip(parts, sizes, strict=True):
        local = local_to_sorted[offset:offset + size]
        present = part.codes >= 0
        if present.all():
            row_codes.append(local[part.codes])
        else:
            mapped = np.full(len(part.codes), -1, dtype=np.int64)
            mapped[present] = local[part.codes[present]]
            row_codes.append(mapped)
        offset += size
    all_codes = np.concatenate(row_codes) if row_codes else np.empty(0, dtype=np.int64)
    return pd.Categorical.from_codes(all_codes, categories=pd.Index(strings, dtype="str"), validate=False)


def _strings(part: TextPart) -> list[str]:
    if part.strings is not None:
        return part.strings
    width = part.words.shape[1]
    return [value.decode() for value in
            np.ascontiguousarray(part.words.astype("<u8")).view(f"S{8 * width}").ravel().tolist()]


def _timestamps(data: bytes | bytearray | memoryview, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    raw = _view(data, ">i8")[offsets].astype(np.int64)
    bad = (lengths != 8) | (raw == _INT8_MAX) | (raw == _INT8_MIN)  # NULL, +-infinity
    values = (raw + PG_EPOCH_US).view("datetime64[us]")
    if bad.any():
        values[bad] = np.datetime64("NaT")
    return values


def _floats(data: bytes | bytearray | memoryview, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    values = _view(data, ">f8")[offsets].astype(np.float64)
    values[lengths != 8] = np.nan
    return values


def _integers(data: bytes | bytearray | memoryview, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    values = _view(data, ">i8")[offsets].astype(np.int64)
    if (lengths != 8).any():
        values = values.astype(np.float64)
        values[lengths != 8] = np.nan
    return values


def _view(data: bytes | bytearray | memoryview, dtype: str) -> np.ndarray:
    """A value of ``dtype`` at every byte offset of ``data`` (overlapping, unaligned, no copy)."""
    size = np.dtype(dtype).itemsize
    length = memoryview(data).nbytes - size + 1
    return np.ndarray(shape=(max(length, 0),), dtype=dtype, buffer=data, strides=(1,))
