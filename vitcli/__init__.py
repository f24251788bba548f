"""vitcli: see what a Vision Transformer does to an image, one idea at a time.

    import vitcli
    model = vitcli.load_model("vit-s16")                      # or a checkpoint file, hf-hub:, timm:
    result = model.embed("cat.jpg", stage="pooled")           # result.array (384,), result.to_json()
    attn = model.attend(vitcli.load_images("cat.jpg", size=448), layer="all")

Names are imported on first use, so `import vitcli` (and `vitcli --help`) stays fast.
"""

__version__ = "0.1.0"
_API = ("BatchSpec", "FittedImage", "ImageSpec", "Images", "Model", "load_images", "load_model", "patchify",
        "posenc", "unpatchify")
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import vitcli.api

        return getattr(vitcli.api, name)
    raise AttributeError(f"module 'vitcli' has no attribute {name!r}")
