"""berth load tests: Locust suite, SLO gate, side-by-side benchmark."""
