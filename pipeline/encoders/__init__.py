"""Frozen video encoders behind one contract (design §3.4).

``registry.build_encoder(name)`` returns a ``base.LoadedEncoder``; loaders for Hugging Face
(``hf``), TorchScript (``torchscript``) and the project's own small encoder (``tiny``) are imported on
demand, so importing this package does not import transformers.
"""
