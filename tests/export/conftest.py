from tests.export.fixtures import multilabel_checkpoint, sentiment_checkpoint

__all__ = ["multilabel_checkpoint", "sentiment_checkpoint"]
