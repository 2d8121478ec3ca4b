from tests.export.fixtures import (
    multilabel_checkpoint,
    sentiment_checkpoint,
    windowed_checkpoint,
)

__all__ = ["multilabel_checkpoint", "sentiment_checkpoint", "windowed_checkpoint"]
