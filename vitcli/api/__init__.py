"""The public Python API: every front end (the CLI, the HTML explorer, notebooks) calls only this."""

from vitcli.api.images import FittedImage, Images, ImageSpec, load_images
from vitcli.api.models import Model, load_model
from vitcli.api.patchify import patchify, unpatchify
from vitcli.api.posenc import posenc
from vitcli.api.runs import BatchSpec

__all__ = ["BatchSpec", "FittedImage", "ImageSpec", "Images", "Model", "load_images", "load_model", "patchify",
           "posenc", "unpatchify"]
