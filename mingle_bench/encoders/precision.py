"""The encoder precisions (``--precision``), in one place; imports nothing, so the CLI and the
pipeline facade can use them without loading torch. What each one does: :mod:`mingle_bench.encoders.hf`."""

#: fp32 (default; bit-reproducible across machines), bf16 (fp32 weights under torch.autocast), or
#: auto (bf16 where the device has native bf16, else fp32)
PRECISIONS = ("fp32", "bf16", "auto")
DEFAULT_PRECISION = "fp32"
