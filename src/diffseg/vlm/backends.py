"""The vision-language model behind the ``vlm`` planner and judge: Qwen2.5-VL, served or not, or a transcript.

Three backends answer the same :class:`Request` (chat messages plus their images):

* ``transformers``: ``AutoModelForImageTextToText.from_pretrained(model)`` with ``AutoProcessor``, the
  lines that load ``Qwen/Qwen2.5-VL-7B-Instruct`` as well as the offline twin (``models/twins/qwen2_5_vl``).
  Loaded once per stage; prompts and their images go through ``generate`` ``batch_size`` at a time,
  greedily (no sampling: the same inputs give the same answers).
* ``replay``: the answers of a transcript (JSONL). Every stage that asks a VLM writes one
  (``transcript.jsonl`` in its output folder), so a run can be audited, and repeated or re-planned
  without the model. Each line: ``{"role", "image_id", "turn", "attempt", "answer", "error"}``.
* ``openai``: a model served by vLLM, SGLang, TGI or any server with the OpenAI chat completions API at
  ``endpoint``, ``concurrency`` requests in flight (:mod:`.served`); the server batches them continuously.

:func:`ask` asks every request once and, where the parser refuses the answer, once more with a
correction message that quotes the parser's reasons.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from PIL import Image

from diffseg import records
from diffseg.errors import UserError
from diffseg.params import VLM
from diffseg.runtime import is_local, load_hint, pick_device, pick_dtype, release_memory
from diffseg.vlm import answers, served

# One character more than the parser accepts: runaway generation is cut here and still refused as too long.
MAX_ANSWER_CHARS = answers.MAX_CHARS + 1
QUOTED_CHARS = 2_000  # how much of a refused answer the correction message repeats back to the model


@dataclass
class Request:
    """One question to the VLM about one item; ``images`` fill the ``{"type": "image"}`` slots in order."""

    role: str  # plan | judge
    image_id: str
    turn: str
    messages: list[dict]
    images: list[Image.Image]
    attempt: int = 0

    @property
    def key(self) -> tuple[str, str, str, int]:
        return self.role, self.image_id, self.turn, self.attempt

    def corrected(self, answer: str, problems: list[str]) -> "Request":
        """The same conversation, the refused answer, and what was wrong with it."""
        listed = "; ".join(problems[:6]) or "the answer was empty"
        note = (f"Your answer could not be used: {listed}. Reply again with only the JSON object described above, "
                f"no other text.")
        messages = self.messages + [
            {"role": "assistant", "content": [{"type": "text", "text": answer[:QUOTED_CHARS]}]},
            {"role": "user", "content": [{"type": "text", "text": note}]}]
        return Request(self.role, self.image_id, self.turn, messages, self.images, self.attempt + 1)


@dataclass
class Answer:
    text: str
    error: str = ""  # why there is no text (model error, nothing recorded); '' when there is

    def __post_init__(self):
        # Lone surrogates (a JSON "\ud800" escape in a transcript) cannot be written as UTF-8 anywhere.
        self.text = self.text.encode("utf-8", "replace").decode("utf-8")


@dataclass
class Exchange:
    """A request, its answers (one per attempt) and the parse of the last one."""

    request: Request
    answers: list[Answer] = field(default_factory=list)
    parsed: object = None
    problems: list[list[str]] = field(default_factory=list)  # the parser's reasons, per attempt

    @property
    def ok(self) -> bool:
        return not self.problems[-1]

    @property
    def raw(self) -> str:
        """Every attempt's answer, for the audit columns."""
        return json.dumps([a.text if not a.error else f"<{a.error}>" for a in self.answers], ensure_ascii=False)

    @property
    def reason(self) -> str:
        """Why the exchange failed, attempt by attempt ('' when the last answer parsed)."""
        if self.ok:
            return ""
        return " | ".join(f"answer {i + 1}: {'; '.join(p[:4])}" for i, p in enumerate(self.problems))


def ask(backend, requests: list[Request], parse: Callable[[Request, str], tuple[object, list[str]]]) -> list[Exchange]:
    """Ask every request; ask again, once, with a correction message where ``parse`` lists problems.

    ``parse(request, text)`` returns (parsed, problems); an empty problem list accepts the answer.
    """
    exchanges = [Exchange(r) for r in requests]
    pending = exchanges
    for _ in range(2):
        answers = backend.answer([e.request if not e.answers else e.request.corrected(e.answers[-1].text,
                                                                                      e.problems[-1])
                                  for e in pending])
        for exchange, answer in zip(pending, answers):
            exchange.answers.append(answer)
            if answer.error:
                exchange.parsed, problems = None, [answer.error]
            else:
                exchange.parsed, problems = parse(exchange.request, answer.text)
            exchange.problems.append(problems)
        pending = [e for e in pending if not e.ok]
        if not pending:
            break
    return exchanges


def transcript_lines(exchanges: list[Exchange]) -> list[dict]:
    return [{"role": e.request.role, "image_id": e.request.image_id, "turn": e.request.turn, "attempt": i,
             "answer": a.text, "error": a.error} for e in exchanges for i, a in enumerate(e.answers)]


def write_transcript(path: Path, lines: list[dict]) -> None:
    records.write_bytes(path, "".join(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n"
                                      for line in lines).encode())


def fit_pixels(image: Image.Image, max_pixels: int) -> Image.Image:
    """``image`` downscaled (aspect kept) to at most ``max_pixels`` pixels; the model sees this size."""
    width, height = image.size
    if width * height <= max_pixels:
        return image
    scale = (max_pixels / (width * height)) ** 0.5
    return image.resize((max(1, int(width * scale)), max(1, int(height * scale))), Image.Resampling.LANCZOS)


def create(cfg: VLM, key: str):
    """The backend named by ``cfg.backend``; ``key`` (``propose.vlm``, ``filter.vlm``) names it in errors."""
    if cfg.backend == "replay":
        return Replay(Path(cfg.replay), key)
    if cfg.backend == "openai":
        return ServedVLM(cfg, key)
    return TransformersVLM(cfg, key)


class Replay:
    """Answers from a transcript; a request it holds no answer for gets an error, not a crash."""

    def __init__(self, path: Path, key: str):
        if not path.is_file():
            raise UserError(f"{key}.replay: no transcript at '{path}'")
        self.path, self.answers = path, {}
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                entry_key = (entry["role"], entry["image_id"], entry["turn"], int(entry["attempt"]))
                self.answers[entry_key] = Answer(str(entry.get("answer", "")), str(entry.get("error", "")))
            except (ValueError, KeyError, TypeError) as err:
                raise UserError(f"{key}.replay: {path}:{number}: not a transcript line ({err})") from None

    def load(self) -> None:
        """Nothing to load: the transcript was read when the backend was made."""

    def unload(self) -> None:
        """Nothing to release."""

    def answer(self, requests: list[Request]) -> list[Answer]:
        return [self.answers.get(r.key, Answer("", f"replay: no recorded answer for {r.role} of {r.image_id} "
                                                   f"in {r.turn}, attempt {r.attempt + 1}")) for r in requests]


class TransformersVLM:
    """A chat VLM through transformers, loaded once, asked in batches."""

    def __init__(self, cfg: VLM, key: str):
        self.cfg, self.key = cfg, key
        self.device = pick_device(cfg.device)
        self.dtype = pick_dtype(cfg.dtype, self.device)
        self.model = self.processor = None

    def load(self) -> None:
        import transformers
        from transformers import AutoModelForImageTextToText, AutoProcessor

        transformers.utils.logging.disable_progress_bar()
        model = self.cfg.model
        if is_local(model) and not Path(model, "config.json").is_file():
            raise UserError(f"{self.key}.model: no model folder at '{model}' (config.json missing; the offline "
                            f"twin is built by the twins stage with twins.vlm: true)")
        try:
            self.processor = AutoProcessor.from_pretrained(model, revision=self.cfg.revision)
            self.model = AutoModelForImageTextToText.from_pretrained(model, revision=self.cfg.revision,
                                                                     dtype=self.dtype)
        except (OSError, ValueError) as err:
            raise UserError(load_hint(self.key + ".model", model, err)) from None
        # Batched generation appends after the prompt: shorter prompts are padded on the left.
        self.processor.tokenizer.padding_side = "left"
        self.model.to(self.device).eval()

    def unload(self) -> None:
        self.model = self.processor = None
        release_memory()

    def answer(self, requests: list[Request]) -> list[Answer]:
        out = []
        for start in range(0, len(requests), self.cfg.batch_size):
            chunk = requests[start:start + self.cfg.batch_size]
            try:
                out.extend(Answer(text[:MAX_ANSWER_CHARS]) for text in self._generate(chunk))
            except Exception as err:  # noqa: BLE001 - one failing batch (e.g. out of memory) is recorded per item
                message = f"vlm error: {type(err).__name__}: {str(err).strip()[:300]}"
                out.extend(Answer("", message) for _ in chunk)
        return out

    def _generate(self, chunk: list[Request]) -> list[str]:
        import torch

        texts = [self.processor.apply_chat_template(r.messages, add_generation_prompt=True, tokenize=False)
                 for r in chunk]
        images = [image for r in chunk for image in r.images]
        inputs = self.processor(text=texts, images=images or None, padding=True, return_tensors="pt")
        inputs = inputs.to(self.device)
        with torch.inference_mode():
            ids = self.model.generate(**inputs, max_new_tokens=self.cfg.max_new_tokens, do_sample=False)
        return self.processor.batch_decode(ids[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)



class ServedVLM:
    """A served VLM through the OpenAI chat completions API; a failed request is its item's error."""

    def __init__(self, cfg: VLM, key: str):
        self.client = served.Client(cfg, key)

    def load(self) -> None:
        """Nothing to load here: the server holds the model. Stops now if it is not there."""
        self.client.check()

    def unload(self) -> None:
        """Nothing to release; says how many requests the stage sent."""
        client = self.client
        if client.sent:
            print(f"{client.key}: {client.sent} requests to {client.base}, {client.retried} of them retries")

    def answer(self, requests: list[Request]) -> list[Answer]:
        done = self.client.answer_all([(list(r.key), r.messages, r.images) for r in requests])
        return [Answer(text[:MAX_ANSWER_CHARS], error) for text, error in done]
