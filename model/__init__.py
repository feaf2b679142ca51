"""SGNS model, training entry point, evaluation, export, artifact store and pull client.

Kept free of heavy imports at package level: the Spark jobs import
``model.config``, ``model.schemas`` and ``model.storage`` and must not pull in torch.
"""
