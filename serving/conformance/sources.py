"""Where the rules come from: the r24.10 revisions read, and the source files each
`Violation.source` names."""

from __future__ import annotations

REVISIONS = {
    "onnxruntime_backend": "17e5cb23a6fbeb37282eb7079dd0b580cd79530d",
    "core": "bfec7c61dc0939433f64f14e89b1973073eac8ba",
    "backend": "ac03a5d97403dec841ad46d0439e93db12c9268f",
    "common": "578491fc3944f77d16a6a38e3d7691c485c47ba0",
    "server": "e0f0734d61c789535ac58c22b79d67eabc5d7477",
}

ORT = "onnxruntime_backend src/onnxruntime.cc"
ORT_UTILS = "onnxruntime_backend src/onnxruntime_utils.cc"
BACKEND_COMMON = "backend src/backend_common.cc"
CORE_UTILS = "core src/model_config_utils.cc"
CORE_ENSEMBLE = "core src/ensemble_scheduler/ensemble_utils.cc"
CORE_REPOSITORY = "core src/model_repository_manager/model_repository_manager.cc"
