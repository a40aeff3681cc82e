"""Kandinsky 2.2: a prior turns the prompt into a CLIP image embedding, an inpainting decoder paints it.

The real model is two checkpoints (``kandinsky-community/kandinsky-2-2-prior`` and
``kandinsky-community/kandinsky-2-2-decoder-inpaint``). The generator's ``model`` names the decoder
(KandinskyV22InpaintPipeline), its ``prior`` (and ``prior_revision``) the prior
(KandinskyV22PriorPipeline); both load by ``from_pretrained``. This is what diffusers'
KandinskyV22InpaintCombinedPipeline does, without its hub look-up of the prior through the decoder's
model card, which does not work offline.
"""
from __future__ import annotations

import numpy as np

from diffseg.edit.base import Batch, DiffusersFamily, GeneratorError, seeded

# Prior sampling settings, named as in KandinskyV22InpaintCombinedPipeline; its defaults.
PRIOR_OPTIONS = {"prior_num_inference_steps": 25, "prior_guidance_scale": 4.0}


class Kandinsky22(DiffusersFamily):
    """Kandinsky 2.2 prior + inpainting decoder.

    Options ``prior_num_inference_steps`` and ``prior_guidance_scale`` set the prior's sampling; every
    other option goes to the decoder call. The decoder has no strength (it regenerates the whole mask)
    and no text input: the negative prompt reaches it as the prior's negative image embedding.
    """

    name = "kandinsky22"
    pipeline = "KandinskyV22InpaintPipeline"
    prior_pipeline = "KandinskyV22PriorPipeline"
    takes_strength = False
    takes_prior = True

    def __init__(self, *args, **kwargs):
        self.prior = None
        super().__init__(*args, **kwargs)

    def check_source(self) -> None:
        super().check_source()
        self.check_folder(self.gen.prior, "prior")

    def check_pipeline(self, pipe) -> None:
        # Inpainting decoder input: noisy latents + masked-image latents + the mask.
        expected = 2 * pipe.movq.config.latent_channels + 1
        if pipe.unet.config.in_channels != expected:
            raise self.fail(f"'{self.gen.model}' is not an inpainting decoder (its UNet takes "
                            f"{pipe.unet.config.in_channels} input channels, inpainting needs {expected})")

    def load(self) -> None:
        super().load()
        try:
            prior = self.from_pretrained(self.prior_pipeline, self.gen.prior, self.gen.prior_revision)
            self._check_pair(prior)
        except GeneratorError:
            self.unload()  # no half-loaded generator stays resident
            raise
        self.prior = self.place(prior)

    def _check_pair(self, prior) -> None:
        made = prior.image_encoder.config.projection_dim
        taken = self.pipe.unet.config.encoder_hid_dim
        if made != taken:
            raise self.fail(f"prior '{self.gen.prior}' makes {made}-dimensional image embeddings, decoder "
                            f"'{self.gen.model}' takes {taken}: they are not a Kandinsky 2.2 pair")

    @property
    def loaded(self) -> bool:
        return self.pipe is not None and self.prior is not None

    def unload(self) -> None:
        self.prior = None
        super().unload()

    def _generate(self, batch: Batch) -> np.ndarray:
        options = dict(self.gen.options)
        prior_kwargs = {"num_inference_steps": options.pop("prior_num_inference_steps",
                                                            PRIOR_OPTIONS["prior_num_inference_steps"]),
                        "guidance_scale": options.pop("prior_guidance_scale", PRIOR_OPTIONS["prior_guidance_scale"])}
        width, height = batch.size
        out = []
        # One item per call: diffusers' Kandinsky 2.2 inpainting loop re-noises the known region from the
        # batch's first image and mask only (`image[:1]`, `mask_image[:1]`), which would paint item 0's
        # background into every other item of a batch.
        for image, mask, prompt, negative, seed in zip(batch.images, batch.masks, batch.prompts,
                                                       batch.negative_prompts, batch.seeds):
            prior_gen, decoder_gen = seeded([seed, seed])
            embeds = self.prior(prompt=prompt, negative_prompt=negative, generator=prior_gen, output_type="pt",
                                **prior_kwargs)
            out.append(self.pipe(image_embeds=embeds.image_embeds, negative_image_embeds=embeds.negative_image_embeds,
                                 image=image, mask_image=mask, height=height, width=width,
                                 num_inference_steps=self.gen.steps, guidance_scale=self.gen.guidance,
                                 generator=decoder_gen, output_type="np", **options).images[0])
        return np.stack(out)
