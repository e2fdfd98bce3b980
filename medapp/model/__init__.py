"""The model and its contract: the architecture registry, the model card, weights, preprocessing, inference,
calibration maths, the scope gate and class activation maps.

Everything that turns a normalised tensor into logits, a heatmap or a scope score lives here, so training,
evaluation and serving share it.
"""
