"""`diffseg browse` without a browser: the site's bytes, the grid's data, the pictures and the tables."""
from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import dataset_fixture
from diffseg import cli, records
from diffseg.dataset.browse import pictures, site

SD2, SDXL = [31, 119, 180], [255, 127, 14]  # tab20's first two colours, the sample figure's


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def grid_items(index: Path) -> list[dict]:
    text = index.read_text()
    return json.loads(re.search(r'<script type="application/json" id="dataset">(.*?)</script>', text, re.S)[1])


class _Tables(HTMLParser):
    """Every table of a page as rows of cell texts."""

    def __init__(self, text: str):
        super().__init__()
        self.tables, self._cell = [], None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


@pytest.fixture
def dataset(tmp_path) -> Path:
    return dataset_fixture.build_turns_dataset(tmp_path / "dataset", tmp_path / "data")


def test_same_dataset_same_bytes_wherever_it_lies(dataset, tmp_path):
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(dataset, moved)
    site.run(dataset, tmp_path / "site")
    site.run(moved, tmp_path / "other" / "site2")
    first, second = _files(tmp_path / "site"), _files(tmp_path / "other" / "site2")
    assert first == second
    assert not any(str(tmp_path).encode() in data for data in first.values())
    ids = list(dataset_fixture.TURN_PLANS)
    assert sorted(first) == sorted(["browse.css", "browse.js", "index.html"] + [f"images/{i}.html" for i in ids]
                                   + [f"thumbs/{i}.png" for i in ids]
                                   + [f"pictures/{i}/{n}.png" for i in ids for n in ("image", "outline", "label",
                                                                                      "t1", "t2")])


def test_grid_records_are_the_manifest_and_accepted_actions(dataset, tmp_path):
    site.run(dataset, tmp_path / "site")
    assert grid_items(tmp_path / "site" / "index.html") == [
        {"id": "000000000000", "split": "train", "n_edits": 2, "generators": ["sd2", "sdxl"],
         "actions": ["add", "change"]},
        {"id": "000000000001", "split": "train", "n_edits": 0, "generators": [], "actions": []},
        {"id": "000000000002", "split": "val", "n_edits": 1, "generators": ["sdxl"], "actions": ["remove"]},
        {"id": "000000000003", "split": "test", "n_edits": 1, "generators": ["sd2"], "actions": ["add"]},
        {"id": "000000000004", "split": "test", "n_edits": 0, "generators": [], "actions": []},
        {"id": "000000000005", "split": "test", "n_edits": 2, "generators": ["sd2", "sdxl"],
         "actions": ["change", "remove"]},
    ]
    index = (tmp_path / "site" / "index.html").read_text()
    options = re.findall(r'<option value="([^"]*)">[^<]*\((\d+)\)</option>', index)
    assert options == [("train", "2"), ("val", "1"), ("test", "3"), ("sd2", "3"), ("sdxl", "3"), ("0", "2"),
                       ("1", "2"), ("2", "2"), ("add", "2"), ("change", "2"), ("remove", "2")]


def test_outlines_and_label_view_pixels(dataset, tmp_path):
    assert pictures.palette(3)[1:].tolist() == [SD2, SDXL]
    site.run(dataset, tmp_path / "site")
    final = records.read_rgb(dataset / "images" / "000000000000.png")
    folder = tmp_path / "site" / "pictures" / "000000000000"
    assert (folder / "image.png").read_bytes() == (dataset / "images" / "000000000000.png").read_bytes()
    t1 = records.read_rgb(folder / "t1.png")
    # Turn 1's box is rows 2..9, columns 2..11: its border in sd2's colour, a black ring outside, inside untouched.
    assert t1[2, 5].tolist() == SD2 and t1[9, 11].tolist() == SD2 and t1[1, 5].tolist() == [0, 0, 0]
    assert t1[12, 5].tolist() == final[12, 5].tolist() and t1[4, 4].tolist() == final[4, 4].tolist()
    changed = np.argwhere((t1 != final).any(axis=2))
    # The border ring, and the halo ring without its four corners (a 4-neighbour halo).
    assert len(changed) == (8 * 10 - 6 * 8) + (10 * 12 - 8 * 10 - 4)
    label = records.read_rgb(folder / "label.png")
    assert label[3, 3].tolist() == SD2 and label[10, 10].tolist() == SDXL
    grey = int(final[0, 0].astype(int).sum()) // 3 * 2 // 5 + 24
    assert label[0, 0].tolist() == [grey] * 3


def test_turn_states_give_the_source_and_each_state(dataset, tmp_path):
    data = tmp_path / "data"
    counts = site.run(dataset, tmp_path / "site", data / "turns", data / "source")
    assert counts == {"images": 6, "missing_states": 0}
    folder = tmp_path / "site" / "pictures" / "000000000000"
    source = records.read_rgb(data / "source" / "images" / "000000000000.png")
    assert np.array_equal(records.read_rgb(folder / "source.png"), source)
    t1 = records.read_rgb(folder / "t1.png")
    assert t1[5, 5].tolist() == [255, 60, 0]  # inside turn 1's box: the state after turn 1, before turn 2 covered it
    assert t1[2, 5].tolist() == SD2
    t2 = records.read_rgb(folder / "t2.png")
    assert t2[6, 12].tolist() == SDXL and t2[10, 12].tolist() == [255, 120, 0]
    page = (tmp_path / "site" / "images" / "000000000000.html").read_text()
    captions = re.findall(r'<div class="strip">(.*?)</div>', page)[0]
    assert re.findall(r"<figcaption>(.*?)</figcaption>", captions) == [
        "source (before any turn)", "t1: add &#x27;thing0&#x27; by sd2", "t2: change &#x27;thing0&#x27; by sdxl"]


def test_provenance_table_holds_every_turn(dataset, tmp_path):
    site.run(dataset, tmp_path / "site")
    tables = _Tables((tmp_path / "site" / "images" / "000000000002.html").read_text()).tables
    assert tables[0] == [
        ["turn", "action", "target", "prompt", "generator", "checkpoint", "seed", "scores", "decision", "reason"],
        ["t1", "remove", "thing2", "a remove of thing2 in turn 1", "sdxl", "models/twins/sdxl @ abc123", "2001",
         "mask_area=0.1172, change_in_mask=12.5", "accepted", "passed heuristics"],
        ["t2", "add", "thing2", "a add of thing2 in turn 2", "sd2", "models/twins/sd2", "2002",
         "mask_area=0.03516, change_in_mask=25", "rejected", "change in mask too small"]]
    assert ["edited_fraction", "0.1171875"] in tables[1] and ["origin", "fixture:2"] in tables[1]
    untouched = _Tables((tmp_path / "site" / "images" / "000000000001.html").read_text()).tables[0]
    assert untouched[1] == ["t1", "none", "", "", "", "", "", "mask_area=0, change_in_mask=0", "none",
                            "no feasible plan"]


def test_a_dataset_without_turns_gets_grid_label_and_a_note(tmp_path):
    plain = dataset_fixture.build_dataset(tmp_path / "official", n=6)  # what `diffseg official` writes
    site.run(plain, tmp_path / "site")
    items = grid_items(tmp_path / "site" / "index.html")
    assert [(i["id"], i["n_edits"], i["actions"]) for i in items][:3] == [
        ("000000000000", 1, []), ("000000000001", 0, []), ("000000000002", 1, [])]
    page = (tmp_path / "site" / "images" / "000000000000.html").read_text()
    assert "This dataset records no turns (no metadata.parquet, no turn masks)." in page
    assert not (tmp_path / "site" / "pictures" / "000000000000" / "t1.png").exists()


def test_a_missing_turn_state_is_noted_on_its_page(dataset, tmp_path):
    data = tmp_path / "data"
    (data / "turns" / "t2" / "state" / "images" / "000000000003.png").unlink()
    assert site.run(dataset, tmp_path / "site", data / "turns", data / "source")["missing_states"] == 1
    page = (tmp_path / "site" / "images" / "000000000003.html").read_text()
    assert f"Missing from the turn states, so not shown: {data}/turns/t2/state/images/000000000003.png." in page
    assert not (tmp_path / "site" / "pictures" / "000000000003" / "t2.png").exists()


def test_bad_input_is_refused_naming_it(dataset, tmp_path, capsys):
    def browse(*args: str) -> tuple[int, str]:
        code = cli.main(["browse", *args])
        return code, capsys.readouterr().err

    code, err = browse("--dataset", str(tmp_path / "nothing"), "--out", str(tmp_path / "site"))
    assert code == 2 and f"{tmp_path}/nothing/manifest.parquet: missing" in err
    keep = tmp_path / "notes"
    (keep / "todo.txt").parent.mkdir()
    (keep / "todo.txt").write_text("mine")
    code, err = browse("--dataset", str(dataset), "--out", str(keep))
    assert code == 2 and "did not write; refusing to replace it" in err and (keep / "todo.txt").read_text() == "mine"
    code, err = browse("--dataset", str(dataset), "--out", str(dataset / "site"))
    assert code == 2 and "overlaps the dataset" in err
    code, err = browse("--dataset", str(dataset), "--out", str(tmp_path / "site"), "--turns", str(tmp_path / "x"),
                       "--source", str(tmp_path / "data" / "source"))
    assert code == 2 and f"{tmp_path}/x/t1/state: no images/ folder; --turns names the folder" in err
    plain = dataset_fixture.build_dataset(tmp_path / "plain", n=3)
    code, err = browse("--dataset", str(plain), "--out", str(tmp_path / "site"), "--turns", str(tmp_path / "data"))
    assert code == 2 and "--turns needs" in err and "metadata.parquet" in err
    assert not (tmp_path / "site").exists()
