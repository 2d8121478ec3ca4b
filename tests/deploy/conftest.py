from tests.client.conftest import (  # noqa: F401  (one server per session, see there)
    ensemble,
    multilabel_checkpoint,
    sentiment_checkpoint,
)
