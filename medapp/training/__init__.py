"""Training: the config, augmentation, the loop (one process or torchrun), and the release step that calibrates a
trained model on validation and writes its card.
"""
