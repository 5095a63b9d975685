"""Embedders: images and text to vectors, with the model recorded beside each vector column."""
