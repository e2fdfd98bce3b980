"""Datasets on disk (read-only, found through ``MEDAPP_DATA_DIR``): records, masks and the cached model-size squares."""
