"""``diffseg browse``: a static site (plain HTML, CSS and one small script) to look at an assembled dataset.

Modules: :mod:`site` (reading the dataset, writing the folder), :mod:`pictures` (the PNGs it shows),
:mod:`pages` (the HTML); ``static/`` holds the stylesheet and the grid's filter script.
"""
