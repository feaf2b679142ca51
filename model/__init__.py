"""SGNS model, training entry point, evaluation, export, artifact store and pull client.

Kept free of heavy imports at package level: the Spark jobs import
``corpus2vec.model.config``, ``corpus2vec.model.schemas`` and ``corpus2vec.model.storage`` and must not pull in torch.
"""
