"""`diffseg browse` in a real browser: headless Chromium opens the site from disk (file://), the filters change
the grid, a card leads to its image page, and that page shows its turns. Skipped, with the reason printed,
where no Chromium is installed (.ci/run installs Debian's package)."""
from __future__ import annotations

import json

import pytest
from PIL import Image

import browser
import dataset_fixture
from diffseg.dataset.browse import site

if browser.find() is None:
    pytest.skip(f"no Chromium on PATH (looked for {', '.join(browser.NAMES)}): apt-get install chromium",
                allow_module_level=True)

IDS = [f"{i:012d}" for i in range(6)]
SHOWN = "Array.from(document.querySelectorAll('#grid .card')).map(card => card.dataset.id)"


def _choose(page: browser.Browser, name: str, value: str) -> list[str]:
    """Pick ``value`` in the filter ``name`` as a user would (a change event), then read the grid."""
    page.evaluate(f"""(() => {{ const select = document.querySelector('#filters select[name={json.dumps(name)}]');
        select.value = {json.dumps(value)};
        select.dispatchEvent(new Event('change', {{bubbles: true}})); }})()""")
    return page.evaluate(SHOWN)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("browse")
    dataset = dataset_fixture.build_turns_dataset(root / "dataset", root / "data")
    site.run(dataset, root / "site", root / "data" / "turns", root / "data" / "source")
    return root / "site"


def test_filters_change_the_grid(built, tmp_path):
    index = (built / "index.html").as_uri()
    with browser.Browser(1000, 700) as page:
        page.open(index)
        assert page.evaluate(SHOWN) == IDS
        assert page.evaluate("document.getElementById('count').textContent") == "6 of 6 images"
        page.wait("Array.from(document.querySelectorAll('#grid img')).every(img => img.complete)")
        assert page.evaluate("Array.from(document.querySelectorAll('#grid img')).map(img => img.naturalWidth)") \
            == [32] * 6  # every thumbnail loaded from disk
        assert _choose(page, "split", "test") == IDS[3:]
        assert page.evaluate("document.getElementById('count').textContent") == "3 of 6 images"
        assert page.evaluate("location.hash") == "#split=test"
        assert _choose(page, "generators", "sd2") == [IDS[3], IDS[5]]
        page.screenshot(tmp_path / "grid.png")
        assert _choose(page, "split", "") == [IDS[0], IDS[3], IDS[5]]
        assert _choose(page, "generators", "") == IDS
        assert _choose(page, "actions", "remove") == [IDS[2], IDS[5]]
        assert _choose(page, "actions", "") == IDS and _choose(page, "n_edits", "0") == [IDS[1], IDS[4]]
        page.open(index + "#split=val&actions=remove")  # a bookmarked filter
        assert page.evaluate(SHOWN) == [IDS[2]]
        assert page.evaluate("document.querySelector('select[name=actions]').value") == "remove"
    with Image.open(tmp_path / "grid.png") as shot:
        assert (shot.format, shot.size) == ("PNG", (1000, 700))
        assert len(shot.getcolors(1 << 16) or []) > 50  # a rendered page (thumbnails), not a blank one


def test_an_image_page_shows_its_turns(built, tmp_path):
    with browser.Browser(1000, 1400) as page:
        page.open((built / "index.html").as_uri())
        page.evaluate(f"document.querySelector('#grid .card[data-id=\"{IDS[0]}\"]').click()")
        page.wait(f"location.href.endsWith('/images/{IDS[0]}.html') && document.readyState === 'complete'")
        strip = "Array.from(document.querySelectorAll('.strip figure'))"
        assert page.evaluate(f"{strip}.map(f => f.querySelector('figcaption').textContent)") == [
            "source (before any turn)", "t1: add 'thing0' by sd2", "t2: change 'thing0' by sdxl"]
        page.wait(f"{strip}.every(f => f.querySelector('img').complete)")
        assert page.evaluate(f"{strip}.map(f => f.querySelector('img').naturalWidth)") == [32, 32, 32]
        assert page.evaluate("Array.from(document.querySelectorAll('main .legend li')).map(li => li.textContent)") \
            == ["sd2: 6.2% of the pixels", "sdxl: 14.1% of the pixels"]
        assert page.evaluate("document.querySelectorAll('table.provenance tbody tr').length") == 2
        page.screenshot(tmp_path / "page.png")
    with Image.open(tmp_path / "page.png") as shot:
        assert shot.size == (1000, 1400)
