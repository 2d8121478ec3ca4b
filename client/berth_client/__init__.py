"""berth-client: classify texts with a berth model served by Triton."""
