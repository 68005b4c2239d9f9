"""Channel dataset generation (Sionna 3GPP TR 38.901 models) into HDF5.

Install with ``pip install -e ".[datagen]"``. Commands: ``python -m datagen.uma``.
"""
