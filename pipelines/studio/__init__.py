"""The studio: a local web page (Gradio) to generate, continue and inpaint with a trained model, through the same
render path as the single-prompt command line (``python -m pipelines.studio``; docs/studio.md)."""
