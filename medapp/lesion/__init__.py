"""Lesion: an outline (the model's, or a radiologist's mask) -> what a radiologist reports about it.

Pure functions over (H, W) masks: the connected lesions of an outline, their calipers (long and short axis), depth,
and geometric proxies of the BI-RADS ultrasound lexicon's orientation, shape and margin (:mod:`.geometry`); and
millimetres only where the image states its pixel size (:mod:`.calibration`), never guessed.
"""
