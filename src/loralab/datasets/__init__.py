"""loralab.datasets: validation, versioning (fingerprint + content-addressed store) and analysis.

Services live in :mod:`loralab.datasets.service`; the pure parts (reader, validation, versioning,
analysis) take plain arguments and can be used on their own.
"""
