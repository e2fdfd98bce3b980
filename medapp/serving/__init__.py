"""Serving: image -> :class:`~medapp.serving.predict.Prediction` (the Predictor), the likelihood wording, quality
flags, and the app's per-session analysis orchestration.
"""
