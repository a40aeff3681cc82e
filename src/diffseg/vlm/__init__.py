"""The vision-language model shared by the ``vlm`` planner (``propose``) and judge (``filter``): backends
that ask it in batches (:mod:`.backends`; a served model through :mod:`.served`) and the strict parser of its
answers (:mod:`.answers`)."""
