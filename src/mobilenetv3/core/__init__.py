"""The model core: variants as data (`specs`), the layers, the one builder (`model`), slim's
variable names (`naming`) and exact cost (`complexity`).
"""
