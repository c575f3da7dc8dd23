"""Verification: embedding networks trained with metric-learning losses. Importing this package registers
every architecture under task "verify"."""
from ninshiki.models.verify import embedding, losses, mining  # noqa: F401
from ninshiki.models.verify.embedding import EmbeddingNet, embed
from ninshiki.models.verify.losses import contrastive_loss, pairwise_distances, triplet_loss
from ninshiki.models.verify.mining import Triplets, batch_all, batch_hard, semi_hard

__all__ = ["EmbeddingNet", "Triplets", "batch_all", "batch_hard", "contrastive_loss", "embed",
           "pairwise_distances", "semi_hard", "triplet_loss"]
