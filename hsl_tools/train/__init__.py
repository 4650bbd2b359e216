"""Training: per-action masked tokenisation, the SFT/HSL/DPO objectives, the buffer, the loop."""
