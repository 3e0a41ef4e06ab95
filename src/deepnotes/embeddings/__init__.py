"""Word embeddings: ``Word2Vec`` (skip-gram and CBOW with negative sampling) and the
``KeyedVectors`` it produces (similarity, analogies, the word2vec C tool's file formats)."""

from deepnotes.embeddings.keyed_vectors import KeyedVectors
from deepnotes.embeddings.word2vec import Word2Vec

__all__ = ["KeyedVectors", "Word2Vec"]
