"""Real checkpoints: timm, transformers, torchvision, OpenAI CLIP and open_clip ViT weights.

Public API (import from `vitcli.checkpoints.load`; nothing heavy is imported here):
  load_checkpoint(spec, strict=True, device="cpu", *, family=None, image_size=None, heads=None,
                  activation=None, eps=None, pooling=None, dim=None, depth=None, patch_size=None,
                  mlp_dim=None) -> Loaded
      Loaded: .config (ViTConfig), .state_dict (core key names), .family, .preprocess
      (Preprocess), .ignored_keys, .notes, .origin (core key → source keys), .format, .path,
      .native_grid ("known" | "from image"), .grid_candidates ((prefix rows, patch rows), …)
  load_state(state_dict, configs, spec="state dict", ...) -> Loaded    the same on tensors already
      read (configs: file name → parsed JSON); pure, meta tensors work with device="meta"
  fit_native_grid(loaded, (rows, cols)) -> Loaded | None    an image's grid that fits the table
  require_native_grid(loaded) -> Loaded                      or the one-line native-size error
  build_model_from_checkpoint(loaded_or_spec, *, strict=True, device="cpu", dtype=float32)
      -> vitcli.core.encoder.VisionTransformer in eval mode, weights loaded
  Preprocess (preprocess.py): size, resize_to, resize_mode, crop, interpolation, mean, std,
      normalize, crop_pct, crop_rounding, source, backend (pil | torch), rescale_first, patch_size,
      max_patches (pure data; the io layer runs it on pixels)

Modules: read.py (files and their safety), hub.py (hf-hub:/timm: specs), config.py (config files
parsed once: CheckpointConfig), families/ (one data module per library: key tables, variants,
quirks, preprocessing defaults), infer.py (architecture from shapes, pure), archs.py (what a named architecture fixes:
timm's
table data/timm_archs.json from scripts/gen_timm_archs.py, open_clip, torchvision), preprocess.py,
load.py.
"""
