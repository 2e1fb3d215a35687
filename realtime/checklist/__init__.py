"""Checklists: the model, keys, limits and the reducer that stores them."""
