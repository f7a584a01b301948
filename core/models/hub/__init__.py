"""The Hugging Face Hub: search GGUF repositories, judge each quant's fit before downloading, and download into
the shared HF cache with resume and checksum checks. ``huggingface_hub`` does every request; this package adds
what it leaves out (resume across runs, sha256 verification, a hard free-space check, short offline failures).
"""
