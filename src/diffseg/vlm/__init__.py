"""The vision-language model shared by the ``vlm`` planner (``propose``) and judge (``filter``): backends
that ask it in batches (:mod:`.backends`) and the strict parser of its answers (:mod:`.answers`)."""
