"""``diffseg official``: a local copy of the official DiffSeg30k release as an assembled dataset.

The release (Hugging Face dataset ``Chaos2629/Diffseg30k``, Ci et al., arXiv:2511.19111) pairs each
image with a mask PNG and does not document the mask encoding (binary 0/255, or class ids 0..8?).

* :mod:`.layouts` finds the items under ``official.path``: a folder, a ``.zip`` read member by member
  (never extracted), or Parquet shards;
* :mod:`.masks` maps mask values to classes through ``official.mask_values`` and refuses unmapped ones;
* :mod:`.convert` writes the assembled-dataset format that ``train``/``evaluate`` read;
* :mod:`.inspect_masks` (``diffseg official --inspect``) counts the values of a sample of masks, so the
  mapping can be chosen from the data rather than guessed.
"""
