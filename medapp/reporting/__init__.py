"""Reporting: the PDF report, the dashboard's rows and figures, and what is written into a model folder
(metrics files, plots, the model README).
"""
