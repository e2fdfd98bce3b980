"""Evaluation: metric functions, scoring a model folder on a held-out split, and heatmap localisation scores.

Reading only: nothing here writes into a model folder (that is :mod:`medapp.reporting.model_folder`).
"""
