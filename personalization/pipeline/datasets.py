"""Readers for public interaction datasets, returning normalised frames (pure pandas, no Django).

Every reader returns ``(catalog, events, report)``:

* ``catalog``: one row per item: ``item_id`` (str), ``title``, ``price`` (float, NaN when unknown),
  ``category`` (str), plus dataset-specific columns;
* ``events``: one row per interaction: ``user`` (str), ``item_id`` (str), ``event`` (an event type name of the
  app: ``purchase``, ``rate``, ``view``), ``timestamp`` (tz-aware UTC), ``value`` (float or NaN), plus
  dataset-specific columns (``quantity``, ``country``, ``session``);
* ``report``: a dict of counts (rows read, rows dropped per reason, users, items, time span) to print or check.

These frames are what ``personalization.importing.import_events`` and the ``personalization_import`` command
take. Files that lack expected columns raise ``ValueError`` naming the missing columns; absent files raise
``FileNotFoundError`` naming the path.

Supported datasets (see the datasets README for provenance and licences):

* UCI Online Retail (:func:`read_online_retail`): purchase lines of a UK gift-ware retailer, 2010-12 .. 2011-12;
* MovieLens 100K (:func:`read_movielens`): 100,000 ratings of 1,682 films by 943 users;
* YOOCHOOSE / RecSys Challenge 2015 clicks (:func:`read_yoochoose`): anonymous session clicks;
* DIGINETICA / CIKM Cup 2016 item views (:func:`read_diginetica`): session item views.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

CATALOG_COLUMNS = ["item_id", "title", "price", "category"]
EVENT_COLUMNS = ["user", "item_id", "event", "timestamp", "value"]

ONLINE_RETAIL_COLUMNS = ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
                         "CustomerID", "Country"]
MOVIELENS_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                    "War", "Western"]
YOOCHOOSE_COLUMNS = ["SessionId", "ItemId", "Time"]
DIGINETICA_COLUMNS = ["session_id", "user_id", "item_id", "timeframe", "eventdate"]

# Online Retail has no categories: derive one from the item description, first matching rule wins.
CATEGORY_RULES: list[tuple[str, tuple[str, ...]]] = [
    ("christmas", ("CHRISTMAS", "XMAS", "ADVENT", "SANTA", "REINDEER", "SNOWFLAKE", "SNOWMAN", "NATIVITY")),
    ("candles", ("CANDLE", "T-LIGHT", "TEA LIGHT", "TLIGHT", "INCENSE", "OIL BURNER")),
    ("lanterns", ("LANTERN", "LIGHTS", "LAMP", "NIGHT LIGHT")),
    ("mugs", ("MUG", "CUP", "BEAKER", "SAUCER")),
    ("bags", ("BAG", "TOTE", "SHOPPER", "PURSE", "BACKPACK", "RUCKSACK")),
    ("cards", ("CARD", "WRAP", "GIFT TAG", "ENVELOPE", "PAPER CHAIN", "TISSUE")),
    ("cushions", ("CUSHION", "THROW", "BLANKET", "HOT WATER BOTTLE", "DOORMAT")),
    ("kitchen", ("CAKE", "BAKING", "JAR", "TEA TOWEL", "LUNCH BOX", "PLATE", "BOWL", "NAPKIN", "CUTLERY", "SPOON",
                 "APRON", "TIN", "RECIPE", "KITCHEN", "TRAY", "BOTTLE", "GLASS", "TEAPOT", "JUG", "CHOPSTICK",
                 "OVEN GLOVE", "COASTER", "EGG", "STRAW", "PANTRY", "BREAD", "FOOD")),
    ("toys", ("TOY", "DOLL", "GAME", "PUZZLE", "SPACEBOY", "SOLDIER", "TEDDY", "PLAYHOUSE", "SKITTLES", "DOMINO",
              "BINGO", "JIGSAW", "CRAYON", "COLOURING", "SPINNING TOP", "BALLOON", "MONEY BOX", "KIT")),
    ("stationery", ("PEN", "PENCIL", "NOTEBOOK", "STICKER", "ERASER", "RULER", "CHALK", "JOURNAL", "NOTE BOOK",
                    "MEMO", "DIARY", "CALENDAR", "STATIONERY", "BOOK")),
    ("jewellery", ("NECKLACE", "EARRING", "BRACELET", "CHARM", "HAIR", "BROOCH", "DIAMANTE", "RING", "BANGLE")),
    ("garden", ("GARDEN", "PLANT", "WATERING", "FLOWER POT", "BIRD", "HERB", "GNOME", "PARASOL")),
    ("decorations", ("HEART", "BUNTING", "DECORATION", "HANGING", "GARLAND", "SIGN", "FRAME", "CLOCK", "MIRROR",
                     "ORNAMENT", "WREATH", "WALL ART", "PLAQUE", "DOORSTOP", "VASE", "BOX", "HOOK", "HOLDER")),
]
# Stock codes that are not merchandise (postage, fees, manual adjustments): category "service".
SERVICE_CODES = {"POST", "DOT", "M", "C2", "BANK CHARGES", "AMAZONFEE", "CRUK", "PADS", "D", "S", "B", "m"}


def _require(frame: pd.DataFrame, required: Iterable[str], what: str) -> None:
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{what} is missing column(s): {', '.join(missing)}. Expected columns: {', '.join(required)}; "
            f"found: {', '.join(map(str, frame.columns)) or 'none'}."
        )


def _exists(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{what} not found at {path}.")
    return path


def categorize(titles: pd.Series, codes: pd.Series | None = None) -> pd.Series:
    """Category per title by :data:`CATEGORY_RULES` (word-start, case-insensitive); ``"other"`` otherwise.

    ``codes`` (optional, aligned with ``titles``) marks :data:`SERVICE_CODES` as ``"service"``.
    """
    upper = titles.fillna("").astype(str).str.upper()
    unique = pd.Series(upper.unique())
    result = pd.Series("other", index=unique.index, dtype=object)
    done = pd.Series(False, index=unique.index)
    for category, words in CATEGORY_RULES:
        pattern = r"(?:^|[^A-Z])(?:" + "|".join(re.escape(w) for w in words) + r")"
        hit = unique.str.contains(pattern, regex=True) & ~done
        result[hit] = category
        done |= hit
    mapping = dict(zip(unique, result, strict=True))
    categories = upper.map(mapping)
    if codes is not None:
        categories = categories.where(~codes.astype(str).isin(SERVICE_CODES), "service")
    return categories


def _online_retail_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    for folder in (path, path / "by-day", path / "online-retail" / "by-day"):
        files = sorted(folder.glob("*.csv"))
        if files:
            return files
    raise FileNotFoundError(f"No Online Retail CSV files in {path} (expected YYYY-MM-DD.csv files or one CSV).")


def read_online_retail(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Read UCI Online Retail: the by-day folder of daily CSVs (concatenated in name order) or one CSV.

    Columns read: InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, CustomerID, Country.
    Rows are dropped in this order, each counted once under its first reason in ``report["dropped"]``:

    1. ``cancelled``: InvoiceNo starts with ``C`` (cancellations);
    2. ``missing_customer``: CustomerID empty (anonymous purchases cannot train personal models);
    3. ``non_positive_quantity``: Quantity <= 0;
    4. ``non_positive_price``: UnitPrice <= 0 (free samples, adjustments).

    ``events``: one ``purchase`` per kept invoice line: ``user`` = CustomerID as an integer string (``"17850"``),
    ``item_id`` = StockCode, ``timestamp`` = InvoiceDate read as UTC (the data is UK local time and gives no zone),
    ``value`` = Quantity x UnitPrice (the line total), ``quantity``, ``country``, ``session`` = InvoiceNo.
    Exact duplicate lines are kept (``report["duplicate_rows"]`` counts them).

    ``catalog``: one row per StockCode among kept rows: ``title`` = its most frequent non-empty Description,
    ``price`` = median UnitPrice, ``category`` from the title by :data:`CATEGORY_RULES` (``"service"`` for
    postage and fee codes, ``"other"`` when no rule matches), ``n_purchases``.
    """
    path = _exists(path, "Online Retail data")
    files = _online_retail_files(path)
    frames = []
    for file in files:
        frame = pd.read_csv(file, dtype={"InvoiceNo": str, "StockCode": str, "Description": str, "Country": str},
                            keep_default_na=False, na_values={"CustomerID": [""], "Quantity": [""],
                                                              "UnitPrice": [""]})
        _require(frame, ONLINE_RETAIL_COLUMNS, f"Online Retail file {file.name}")
        frames.append(frame[ONLINE_RETAIL_COLUMNS])
    raw = pd.concat(frames, ignore_index=True)
    report: dict[str, Any] = {"files": len(files), "rows": len(raw), "dropped": {}}
    report["duplicate_rows"] = int(raw.duplicated().sum())

    keep = pd.Series(True, index=raw.index)
    quantity = pd.to_numeric(raw["Quantity"], errors="coerce")
    price = pd.to_numeric(raw["UnitPrice"], errors="coerce")
    customer = pd.to_numeric(raw["CustomerID"], errors="coerce")
    reasons = [
        ("cancelled", raw["InvoiceNo"].str.startswith("C")),
        ("missing_customer", customer.isna()),
        ("non_positive_quantity", ~(quantity > 0)),
        ("non_positive_price", ~(price > 0)),
    ]
    for reason, bad in reasons:
        hit = keep & bad
        report["dropped"][reason] = int(hit.sum())
        keep &= ~bad
    kept = raw[keep]
    quantity, price, customer = quantity[keep], price[keep], customer[keep]

    events = pd.DataFrame({
        "user": customer.astype("int64").astype(str).to_numpy(),
        "item_id": kept["StockCode"].str.strip().to_numpy(),
        "event": "purchase",
        "timestamp": pd.to_datetime(kept["InvoiceDate"], format="mixed").dt.tz_localize("UTC").to_numpy(),
        "value": (quantity * price).astype(float).to_numpy(),
        "quantity": quantity.astype("int64").to_numpy(),
        "country": kept["Country"].to_numpy(),
        "session": kept["InvoiceNo"].to_numpy(),
    })
    events["timestamp"] = pd.to_datetime(events["timestamp"], utc=True)

    described = kept.assign(item_id=events["item_id"].to_numpy(), price=price.to_numpy())
    titles = (described[described["Description"].str.strip() != ""]
              .groupby(["item_id", "Description"]).size().reset_index(name="n")
              .sort_values(["item_id", "n", "Description"], ascending=[True, False, True])
              .drop_duplicates("item_id").set_index("item_id")["Description"].str.strip())
    grouped = described.groupby("item_id")
    catalog = pd.DataFrame({"price": grouped["price"].median(), "n_purchases": grouped.size()})
    catalog["title"] = titles.reindex(catalog.index).fillna(pd.Series(catalog.index, index=catalog.index))
    catalog = catalog.reset_index()
    catalog["category"] = categorize(catalog["title"], catalog["item_id"])
    catalog = catalog[["item_id", "title", "price", "category", "n_purchases"]]

    report.update(_summary(events, catalog))
    report["rows_kept"] = len(events)
    return catalog, events, report


def read_movielens(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Read MovieLens 100K from its folder (``u.data`` ratings, ``u.item`` films; ``u.user`` when present).

    ``events``: one ``rate`` event per line of ``u.data`` (tab separated: user id, item id, rating, unix time):
    ``value`` = the rating (1-5), ``timestamp`` from the unix time (UTC); with ``u.user`` present also ``age``,
    ``gender``, ``occupation`` per event. ``catalog`` from ``u.item`` (``|`` separated, latin-1): ``title``,
    ``category`` = first genre flag set (lower case), ``genres`` = all set genres joined by ``|``,
    ``release_date``; ``price`` is NaN.
    """
    folder = _exists(folder, "MovieLens folder")
    data_file = _exists(folder / "u.data", "MovieLens ratings (u.data)")
    item_file = _exists(folder / "u.item", "MovieLens items (u.item)")
    ratings = pd.read_csv(data_file, sep="\t", header=None, dtype=str)
    if ratings.shape[1] < 4:
        names = ["user_id", "item_id", "rating", "timestamp"]
        raise ValueError(f"u.data is missing column(s): {', '.join(names[ratings.shape[1]:])} "
                         "(expected 4 tab-separated columns: user_id, item_id, rating, timestamp).")
    ratings = ratings.iloc[:, :4]
    ratings.columns = ["user", "item_id", "rating", "timestamp"]
    events = pd.DataFrame({
        "user": ratings["user"].str.strip(),
        "item_id": ratings["item_id"].str.strip(),
        "event": "rate",
        "timestamp": pd.to_datetime(pd.to_numeric(ratings["timestamp"]), unit="s", utc=True),
        "value": pd.to_numeric(ratings["rating"]).astype(float),
    })
    user_file = folder / "u.user"
    if user_file.exists():
        users = pd.read_csv(user_file, sep="|", header=None, dtype=str)
        if users.shape[1] >= 4:
            users = users.iloc[:, :4]
            users.columns = ["user", "age", "gender", "occupation"]
            events = events.merge(users, on="user", how="left")

    items = pd.read_csv(item_file, sep="|", header=None, encoding="latin-1", dtype=str, keep_default_na=False)
    if items.shape[1] < 5 + len(MOVIELENS_GENRES):
        raise ValueError(f"u.item has {items.shape[1]} columns; expected 24 (item_id, title, release_date, "
                         "video_release_date, imdb_url and 19 genre flags): the genre column(s) are missing.")
    flags = items.iloc[:, 5:5 + len(MOVIELENS_GENRES)].astype(int).to_numpy().astype(bool)
    genre_names = np.array(MOVIELENS_GENRES)
    genres = ["|".join(genre_names[row]) for row in flags]
    first = [genre_names[row][0].lower() if row.any() else "unknown" for row in flags]
    catalog = pd.DataFrame({
        "item_id": items.iloc[:, 0].str.strip(),
        "title": items.iloc[:, 1],
        "price": np.nan,
        "category": first,
        "genres": genres,
        "release_date": items.iloc[:, 2].replace("", None),
    })
    report = {"files": 2 + user_file.exists(), "rows": len(ratings), "dropped": {}, "rows_kept": len(events)}
    report.update(_summary(events, catalog))
    return catalog, events, report


def _session_files(path: Path, pattern: str) -> list[Path]:
    if path.is_file():
        return [path]
    files = sorted(path.glob(pattern))
    if not files:
        raise FileNotFoundError(f"No files matching {pattern} in {path}.")
    return files


def read_yoochoose(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Read YOOCHOOSE (RecSys Challenge 2015) clicks, pre-processed format: ``SessionId, ItemId, Time``.

    ``path`` is one tab-separated file with a header row, or a folder whose ``*.txt`` files are all read (e.g.
    the train and test parts; sessions do not overlap). Each row becomes a ``view`` event; ``user`` and
    ``session`` are the session id (the data has no user ids), ``timestamp`` = ``Time`` (unix seconds, UTC).
    ``catalog`` lists the item ids (no titles, prices or categories in the data: ``title`` = ``"Item <id>"``,
    ``category`` = ``"unknown"``).
    """
    path = _exists(path, "YOOCHOOSE data")
    files = _session_files(path, "*.txt")
    frames = []
    for file in files:
        frame = pd.read_csv(file, sep="\t", dtype={"SessionId": str, "ItemId": str})
        _require(frame, YOOCHOOSE_COLUMNS, f"YOOCHOOSE file {file.name}")
        frames.append(frame[YOOCHOOSE_COLUMNS])
    raw = pd.concat(frames, ignore_index=True)
    events = pd.DataFrame({
        "user": raw["SessionId"].str.strip(),
        "item_id": raw["ItemId"].str.strip(),
        "event": "view",
        "timestamp": pd.to_datetime(pd.to_numeric(raw["Time"]) * 1000, unit="ms", utc=True).dt.floor("ms"),
        "value": np.nan,
        "session": raw["SessionId"].str.strip(),
    })
    return _bare_catalog(events), events, _session_report(files, raw, events)


def read_diginetica(path: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Read DIGINETICA (CIKM Cup 2016) item views: ``session_id;user_id;item_id;timeframe;eventdate``.

    ``path`` is the ``;``-separated file (``NA`` = anonymous) or a folder whose ``*.csv`` files are read. Each row
    becomes a ``view`` event with ``user`` and ``session`` = the session id (most rows have no user id; the
    registered one, when present, is kept as ``account``). ``timestamp`` = ``eventdate`` (UTC midnight) plus
    ``timeframe`` read as milliseconds (the unit is not documented; it orders views within a session).
    """
    path = _exists(path, "DIGINETICA data")
    files = _session_files(path, "*.csv")
    frames = []
    for file in files:
        frame = pd.read_csv(file, sep=";", dtype=str, keep_default_na=False)
        _require(frame, DIGINETICA_COLUMNS, f"DIGINETICA file {file.name}")
        frames.append(frame[DIGINETICA_COLUMNS])
    raw = pd.concat(frames, ignore_index=True)
    day = pd.to_datetime(raw["eventdate"], format="%Y-%m-%d", utc=True)
    offset = pd.to_timedelta(pd.to_numeric(raw["timeframe"], errors="coerce").fillna(0), unit="ms")
    account = raw["user_id"].str.strip().replace({"NA": None, "": None})
    events = pd.DataFrame({
        "user": raw["session_id"].str.strip(),
        "item_id": raw["item_id"].str.strip(),
        "event": "view",
        "timestamp": day + offset,
        "value": np.nan,
        "session": raw["session_id"].str.strip(),
        "account": account,
    })
    return _bare_catalog(events), events, _session_report(files, raw, events)


def _bare_catalog(events: pd.DataFrame) -> pd.DataFrame:
    ids = pd.Series(events["item_id"].unique(), name="item_id")
    return pd.DataFrame({"item_id": ids, "title": "Item " + ids, "price": np.nan, "category": "unknown"})


def _session_report(files: list[Path], raw: pd.DataFrame, events: pd.DataFrame) -> dict[str, Any]:
    report: dict[str, Any] = {"files": len(files), "rows": len(raw), "dropped": {}, "rows_kept": len(events)}
    report.update(_summary(events, None))
    report["sessions"] = report["users"]
    return report


def _summary(events: pd.DataFrame, catalog: pd.DataFrame | None) -> dict[str, Any]:
    return {
        "events": len(events),
        "users": int(events["user"].nunique()),
        "items": int(events["item_id"].nunique()),
        "catalog_items": int(len(catalog)) if catalog is not None else int(events["item_id"].nunique()),
        "first": events["timestamp"].min(),
        "last": events["timestamp"].max(),
    }


READERS = {
    "online-retail": read_online_retail,
    "movielens": read_movielens,
    "yoochoose": read_yoochoose,
    "diginetica": read_diginetica,
}
