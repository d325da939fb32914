"""Data in: datasets (ACS, class folders), the prepared HDF5 store,
preprocessing as the 2016 code did it, the synthetic apparel set and
two-garment composites.  NumPy only.
"""
