"""Real checkpoints: timm, transformers, torchvision, OpenAI CLIP and open_clip ViT weights.

Public API (import from `vitcli.checkpoints.load`; nothing heavy is imported here):
  load_checkpoint(spec, strict=True, device="cpu", *, family=None, image_size=None, heads=None,
                  activation=None, eps=None, pooling=None) -> Loaded
      Loaded: .config (ViTConfig), .state_dict (core key names), .family, .preprocess
      (Preprocess), .ignored_keys, .notes, .origin (core key → source keys), .format, .path
  build_model_from_checkpoint(loaded_or_spec, *, strict=True, device="cpu", dtype=float32)
      -> vitcli.core.encoder.VisionTransformer in eval mode, weights loaded
  Preprocess (vitcli.checkpoints.preprocess): size, resize_to, resize_mode, crop, interpolation,
      mean, std, normalize, crop_pct, crop_rounding, source; .apply(uint8 HWC) → float32 CHW

Modules: read.py (files and their safety), hub.py (hf-hub:/timm: specs), families.py (key tables,
architecture from shapes), preprocess.py, load.py (the API above).
"""
