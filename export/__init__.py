"""ONNX export (fp32/fp16/int8, parity and accuracy gates) and Triton repository publishing."""
