"""The dataset readers report counts that match the raw files (counted here with the plain csv module)."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pandas as pd
import pytest

from personalization.pipeline import datasets

ROOT = Path(os.environ.get("PERSONALIZATION_DATASETS", "/work/shared/datasets"))


def folder(name: str, dataset: str) -> Path:
    path = ROOT / name
    if not path.exists():
        pytest.skip(f"{dataset} dataset not found at {path} (set PERSONALIZATION_DATASETS)")
    return path


@pytest.fixture(scope="module")
def online_retail():
    path = folder("online-retail/by-day", "UCI Online Retail")
    return path, datasets.read_online_retail(path)


def test_online_retail_counts_match_raw_csv(online_retail):
    path, (catalog, events, report) = online_retail
    rows = 0
    dropped = {"cancelled": 0, "missing_customer": 0, "non_positive_quantity": 0, "non_positive_price": 0}
    users, items, value = set(), set(), 0.0
    files = sorted(path.glob("*.csv"))
    for file in files:
        with open(file, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                rows += 1
                if row["InvoiceNo"].startswith("C"):
                    dropped["cancelled"] += 1
                elif not row["CustomerID"]:
                    dropped["missing_customer"] += 1
                elif not float(row["Quantity"]) > 0:
                    dropped["non_positive_quantity"] += 1
                elif not float(row["UnitPrice"]) > 0:
                    dropped["non_positive_price"] += 1
                else:
                    users.add(int(float(row["CustomerID"])))
                    items.add(row["StockCode"].strip())
                    value += float(row["Quantity"]) * float(row["UnitPrice"])
    assert report["files"] == len(files) == 305
    assert report["rows"] == rows == 541_909
    assert report["dropped"] == dropped
    kept = rows - sum(dropped.values())
    assert report["rows_kept"] == len(events) == kept
    assert report["users"] == len(users) and report["items"] == len(items) == len(catalog)
    assert events["value"].sum() == pytest.approx(value, rel=1e-6)
    assert set(events["user"]) == {str(u) for u in users}


def test_online_retail_frames(online_retail):
    _, (catalog, events, _) = online_retail
    assert list(catalog.columns[:4]) == datasets.CATALOG_COLUMNS
    assert set(datasets.EVENT_COLUMNS + ["quantity", "country"]) <= set(events.columns)
    assert (events["event"] == "purchase").all()
    assert str(events["timestamp"].dt.tz) == "UTC"
    assert events["timestamp"].min() == pd.Timestamp("2010-12-01 08:26:00", tz="UTC")
    assert (events["quantity"] > 0).all() and (events["value"] > 0).all()
    heart = catalog.set_index("item_id").loc["85123A"]
    assert heart["title"] == "WHITE HANGING HEART T-LIGHT HOLDER" and heart["category"] == "candles"
    assert catalog.set_index("item_id").loc["POST", "category"] == "service"
    assert catalog["category"].nunique() > 8 and catalog["price"].gt(0).all()


def test_online_retail_single_csv_and_missing_columns(tmp_path):
    good = tmp_path / "one.csv"
    good.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "1,A,RED MUG,2,2011-01-01 10:00:00,1.50,12.0,France\n"
        "C2,A,RED MUG,-2,2011-01-01 11:00:00,1.50,12.0,France\n"
    )
    catalog, events, report = datasets.read_online_retail(good)
    assert len(events) == 1 and report["dropped"]["cancelled"] == 1
    assert events.iloc[0]["user"] == "12" and events.iloc[0]["value"] == 3.0
    assert catalog.iloc[0]["category"] == "mugs"
    bad = tmp_path / "bad.csv"
    bad.write_text("InvoiceNo,StockCode,Quantity\n1,A,2\n")
    with pytest.raises(ValueError, match="Description.*InvoiceDate.*UnitPrice.*CustomerID.*Country"):
        datasets.read_online_retail(bad)
    with pytest.raises(FileNotFoundError):
        datasets.read_online_retail(tmp_path / "absent")


def test_movielens_counts_match_raw_files():
    path = folder("ml-100k", "MovieLens 100K")
    catalog, events, report = datasets.read_movielens(path)
    with open(path / "u.data", newline="") as fh:
        raw = list(csv.reader(fh, delimiter="\t"))
    with open(path / "u.item", newline="", encoding="latin-1") as fh:
        items = list(csv.reader(fh, delimiter="|"))
    assert len(events) == len(raw) == 100_000
    assert report["users"] == len({r[0] for r in raw}) == 943
    assert report["items"] == len({r[1] for r in raw}) == 1_682
    assert len(catalog) == len(items) == 1_682
    assert (events["event"] == "rate").all()
    assert events["value"].value_counts().sort_index().tolist() == [6_110, 11_370, 27_145, 34_174, 21_201]
    assert events["timestamp"].min() == pd.Timestamp("1997-09-20 03:05:10", tz="UTC")
    toy = catalog.set_index("item_id").loc["1"]
    assert toy["title"] == "Toy Story (1995)" and toy["genres"] == "Animation|Children's|Comedy"


def test_yoochoose_counts_match_raw_files():
    path = folder("yoochoose-100k", "YOOCHOOSE 100k")
    catalog, events, report = datasets.read_yoochoose(path)
    rows, sessions, items = 0, set(), set()
    for file in sorted(path.glob("*.txt")):
        with open(file, newline="") as fh:
            for row in csv.DictReader(fh, delimiter="\t"):
                rows += 1
                sessions.add(row["SessionId"])
                items.add(row["ItemId"])
    assert report["rows"] == len(events) == rows == 70_278 + 13_568
    assert report["sessions"] == len(sessions) == 17_794 + 3_416
    assert report["items"] == len(items) == len(catalog)
    assert (events["event"] == "view").all() and (events["user"] == events["session"]).all()
    train = datasets.read_yoochoose(path / "yoochoose-clicks-100k_train_full.txt")[1]
    assert len(train) == 70_278


def test_diginetica_counts_match_raw_file():
    path = folder("diginetica-sample", "DIGINETICA sample")
    catalog, events, report = datasets.read_diginetica(path)
    with open(path / "sample_train-item-views.csv", newline="") as fh:
        raw = list(csv.DictReader(fh, delimiter=";"))
    assert len(events) == len(raw) == 12_391
    assert report["sessions"] == len({r["session_id"] for r in raw}) == 2_986
    assert report["items"] == len({r["item_id"] for r in raw}) == 7_139 == len(catalog)
    assert events["account"].notna().sum() == sum(r["user_id"] != "NA" for r in raw) == 4_710
    assert str(events["timestamp"].dt.tz) == "UTC"


@pytest.mark.parametrize("reader, sep, name", [
    (datasets.read_yoochoose, "\t", "clicks.txt"),
    (datasets.read_diginetica, ";", "views.csv"),
])
def test_session_readers_name_missing_columns(tmp_path, reader, sep, name):
    file = tmp_path / name
    file.write_text(sep.join(["a", "b"]) + "\n1" + sep + "2\n")
    with pytest.raises(ValueError, match="missing column"):
        reader(file)


def test_movielens_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="u.data"):
        datasets.read_movielens(tmp_path)


def test_categorize_rules():
    titles = pd.Series(["SET OF 3 CAKE TINS", "JUMBO BAG RED RETROSPOT", "CHRISTMAS CANDLE", "ZZZ", None])
    assert datasets.categorize(titles).tolist() == ["kitchen", "bags", "christmas", "other", "other"]
