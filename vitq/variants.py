"""The evaluated variants and the artifact each comes from. Torch-free, for reports and tasks."""

REFERENCE = "fp32"
# variant -> artifact name in the manifest (None: built in memory from the fp32 weights)
VARIANT_ARTIFACT = {
    "fp32": "fp32",
    "int8_eager": None,
    "int8": "int8",
    "optimized": "optimized",
    "lite": "lite",
    "onnx_fp32": "onnx_fp32",
    "onnx_int8": "onnx_int8",
}
QUANTIZED = ("int8_eager", "int8", "optimized", "lite", "onnx_int8")
