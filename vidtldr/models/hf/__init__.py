"""Backbone families whose modules come from Hugging Face ``transformers`` (the harness does not
re-implement them): each adapter runs transformers' own layers and calls the reducer hook through
the same contract as the UMT ViT (:mod:`vidtldr.models.attention`)."""
