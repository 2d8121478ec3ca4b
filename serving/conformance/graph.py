"""The ONNX graph's interface as onnxruntime shows it to the backend, and the type tables
(onnxruntime_utils.cc) that map it to configuration data types. `onnx` is imported
only by `GraphIO.from_path`."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

TENSOR = "ONNX_TYPE_TENSOR"
INVALID = "TYPE_INVALID"

# ONNX element type (TensorProto.DataType) → (config data type, OnnxDataTypeName).
# ConvertFromOnnxDataType maps complex and bfloat16 (and newer types) to none.
# code, config data type ("-": none), OnnxDataTypeName. Code 15 is COMPLEX64 sic: the
# source's OnnxDataTypeName names COMPLEX128 so.
_ELEMENT_TABLE = """
1 TYPE_FP32 FLOAT
2 TYPE_UINT8 UINT8
3 TYPE_INT8 INT8
4 TYPE_UINT16 UINT16
5 TYPE_INT16 INT16
6 TYPE_INT32 INT32
7 TYPE_INT64 INT64
8 TYPE_STRING STRING
9 TYPE_BOOL BOOL
10 TYPE_FP16 FLOAT16
11 TYPE_FP64 DOUBLE
12 TYPE_UINT32 UINT32
13 TYPE_UINT64 UINT64
14 - COMPLEX64
15 - COMPLEX64
16 - BFLOAT16
"""
_ONNX_ELEMENTS = {
    int(code): (INVALID if config == "-" else config, name)
    for code, config, name in (line.split() for line in _ELEMENT_TABLE.strip().splitlines())
}
# ModelConfigDataTypeToOnnxDataType (onnxruntime_utils.cc) maps these config data types
# and no other (TYPE_BF16 is "unsupported"). TYPE_STRING maps to ONNX string tensors, which
# the backend reads and writes (SetStringInputTensor, SetStringOutputBuffer).
SUPPORTED_DATA_TYPES = frozenset(t for t, _ in _ONNX_ELEMENTS.values()) - {INVALID}
# onnxruntime's Python type strings, "tensor(<name>)", → ONNX element type.
_ORT_ELEMENTS = {e.lower(): code for code, (_, e) in _ONNX_ELEMENTS.items()} | {
    "complex64": 14,
    "complex128": 15,
}
# onnx TypeProto's `value` field → OnnxTypeName (ONNX_TYPE_OPTIONAL has no name there).
_ONNX_TYPES = {
    "tensor_type": TENSOR,
    "sequence_type": "ONNX_TYPE_SEQUENCE",
    "map_type": "ONNX_TYPE_MAP",
    "opaque_type": "ONNX_TYPE_OPAQUE",
    "sparse_tensor_type": "ONNX_TYPE_SPARSETENSOR",
}
_ORT_TYPES = {
    "seq": "ONNX_TYPE_SEQUENCE",
    "map": "ONNX_TYPE_MAP",
    "sparse_tensor": "ONNX_TYPE_SPARSETENSOR",
}


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output as onnxruntime reports it to the backend
    (InputOutputInitializerInfos): config data type ("TYPE_INVALID" where the backend
    maps none), dims with -1 for every symbolic or unknown dimension."""

    data_type: str
    dims: tuple[int, ...]
    onnx_type: str = TENSOR
    element: str = ""  # OnnxDataTypeName, for messages

    @property
    def provided(self) -> str:
        """How ValidateInputs names the graph's type: "TYPE_" + TRITONSERVER_DataTypeString."""
        if self.data_type == "TYPE_STRING":
            return "TYPE_BYTES"
        return "TYPE_<invalid>" if self.data_type == INVALID else self.data_type


@dataclass(frozen=True)
class GraphIO:
    """The ONNX graph's interface as an onnxruntime session shows it: `inputs` the graph
    inputs that are not initializers (SessionGetInputCount), `outputs`, and
    `initializers` the overridable ones (graph inputs with an initializer, IR >= 4),
    which a configuration may declare as inputs but which are not counted."""

    inputs: Mapping[str, TensorInfo]
    outputs: Mapping[str, TensorInfo]
    initializers: Mapping[str, TensorInfo] = field(default_factory=dict)

    @classmethod
    def from_model(cls, model) -> GraphIO:
        """From an `onnx.ModelProto` (its weights are not looked at)."""
        graph = model.graph
        constants = {t.name for t in graph.initializer}
        overridable = model.ir_version >= 4
        inputs = {v.name: _value_info(v) for v in graph.input if v.name not in constants}
        initializers = {
            v.name: _value_info(v) for v in graph.input if v.name in constants and overridable
        }
        outputs = {v.name: _value_info(v) for v in graph.output}
        return cls(inputs, outputs, initializers)

    @classmethod
    def from_path(cls, path: str | Path) -> GraphIO:
        import onnx

        return cls.from_model(onnx.load(str(path), load_external_data=False))

    @classmethod
    def from_session(cls, session) -> GraphIO:
        """From an `onnxruntime.InferenceSession`: onnxruntime's own view, which is the
        native backend's."""
        return cls(
            {a.name: _session_arg(a) for a in session.get_inputs()},
            {a.name: _session_arg(a) for a in session.get_outputs()},
            {a.name: _session_arg(a) for a in session.get_overridable_initializers()},
        )


def _value_info(value) -> TensorInfo:
    kind = value.type.WhichOneof("value")
    if kind != "tensor_type":
        return TensorInfo(INVALID, (), _ONNX_TYPES.get(kind, "ONNX_TYPE_UNKNOWN"))
    tensor = value.type.tensor_type
    data_type, element = _ONNX_ELEMENTS.get(tensor.elem_type, (INVALID, "UNDEFINED"))
    dims = (
        tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
        if tensor.HasField("shape")
        else ()
    )
    return TensorInfo(data_type, dims, TENSOR, element)


def _session_arg(arg) -> TensorInfo:
    match = re.fullmatch(r"(\w+)\((.*)\)", arg.type)
    outer, inner = match.groups() if match else ("", "")
    if outer != "tensor":
        return TensorInfo(INVALID, (), _ORT_TYPES.get(outer, "ONNX_TYPE_UNKNOWN"))
    data_type, element = _ONNX_ELEMENTS.get(_ORT_ELEMENTS.get(inner, 0), (INVALID, "UNDEFINED"))
    dims = tuple(d if isinstance(d, int) else -1 for d in arg.shape or ())
    return TensorInfo(data_type, dims, TENSOR, element)
